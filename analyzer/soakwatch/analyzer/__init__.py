"""The analyzer: judge a soak run's series against the soak rules.

Import as ``soakwatch.analyzer``. The Python API::

    from soakwatch.analyzer import RunDirSource, analyze
    from soakwatch.rules import load_rules

    report = analyze(RunDirSource("runs/42"), load_rules(), start, end)
    report.verdict      # "pass" | "fail" | "inconclusive"
    report.exit_code    # 0 | 1 | 3
    report.to_json()    # schema soakwatch.report/v1 (docs/analyzer.md)

The names below are loaded on first use (numpy comes with them), so importing the package, and
``soak-analyze --help`` with it, works on an install without the analyzer extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soakwatch.analyzer.analysis import analyze
    from soakwatch.analyzer.report import Evidence, Report, Result
    from soakwatch.analyzer.sources import PrometheusSource, RunDirSource, Source

__all__ = [
    "Evidence",
    "PrometheusSource",
    "Report",
    "Result",
    "RunDirSource",
    "Source",
    "analyze",
]

_MODULE_OF = {
    "analyze": "soakwatch.analyzer.analysis",
    "Evidence": "soakwatch.analyzer.report",
    "Report": "soakwatch.analyzer.report",
    "Result": "soakwatch.analyzer.report",
    "PrometheusSource": "soakwatch.analyzer.sources",
    "RunDirSource": "soakwatch.analyzer.sources",
    "Source": "soakwatch.analyzer.sources",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
