"""The analyzer's run-time dependencies are its extra's: scipy (in the test extra only, as the
reference of test_slopes) is never imported by an analysis, with every output rendered."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ANALYZE_AND_RENDER = """
import pkgutil, sys, importlib
import soakwatch.analyzer as analyzer
from soakwatch.analyzer import RunDirSource, analyze
from soakwatch.analyzer.formats import FORMATS
from soakwatch.analyzer.html import render_html
from soakwatch.rules import load_rules

for module in pkgutil.iter_modules(analyzer.__path__, "soakwatch.analyzer."):
    importlib.import_module(module.name)
source = RunDirSource(sys.argv[1])
report = analyze(source, load_rules(), *source.time_range())
for render in FORMATS.values():
    render(report)
assert "<img" in render_html(report)
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] == "scipy")))
"""


def test_an_analysis_with_every_output_imports_no_scipy(leaky_run: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(ANALYZE_AND_RENDER), str(leaky_run)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
