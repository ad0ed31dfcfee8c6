"""Rewrite rules/prometheus/tests/soak.rules.test.yaml, the committed promtool unit tests, from the
scenarios of tests/rules/test_prometheus_rules_promtool.py.

Run it on purpose after changing the rules (rules/soakwatch/rules/soak.yaml, then
``soak rules prometheus``) or the scenarios; the tests only compare the committed file with what
this writes and fail, naming this script, when they differ:

    .venv/bin/python tests/rules/regenerate.py
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "test_prometheus_rules_promtool.py"


def main() -> int:
    spec = importlib.util.spec_from_file_location("promtool_scenarios", SCENARIOS)
    assert spec is not None and spec.loader is not None
    scenarios = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = scenarios  # its dataclasses look their module up
    spec.loader.exec_module(scenarios)
    target: Path = scenarios.COMMITTED_TESTS
    text: str = scenarios.committed_text()
    if target.is_file() and target.read_text(encoding="utf-8") == text:
        print(f"{target.relative_to(scenarios.REPO)}: already current")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"{target.relative_to(scenarios.REPO)}: rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
