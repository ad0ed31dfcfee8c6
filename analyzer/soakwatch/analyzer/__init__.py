"""The analyzer: judge a soak run's series against the soak rules.

Import as ``soakwatch.analyzer``. The Python API::

    from soakwatch.analyzer import RunDirSource, analyze
    from soakwatch.rules import load_rules

    report = analyze(RunDirSource("runs/42"), load_rules(), start, end)
    report.verdict      # "pass" | "fail" | "inconclusive"
    report.exit_code    # 0 | 1 | 3
    report.to_json()    # schema soakwatch.report/v1 (docs/analyzer.md)
"""

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
