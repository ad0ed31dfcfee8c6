"""The run's verdict: analyze once, in-process, through the analyzer's public API
(``soakwatch.analyzer.analyze``), then render that one report three times — ``verdict.json``,
``junit.xml`` and ``report.html`` — with the scenarios the run left out added to the JUnit
report (as skipped test cases) and to the HTML report (a section before the findings).

The analyzer is an extra (numpy, matplotlib): :func:`require_analyzer` says so in one line
before a run starts anything. ``logs/analyze.log`` in the run directory gets one line per
analysis (its source, range and verdict) or the error that stopped it."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
import logging
import math
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soakwatch.errors import SoakwatchError
from soakwatch.extras import require_extra
from soakwatch.files import write_atomic

if TYPE_CHECKING:
    from soakwatch.analyzer import Report, Source
    from soakwatch.rules.model import RuleSet

__all__ = [
    "REPORTS",
    "Analysis",
    "RunFinding",
    "analyze_run",
    "early_verdict",
    "render_reports",
    "require_analyzer",
]

log = logging.getLogger(__name__)

# format -> file name in the run directory
REPORTS: Mapping[str, str] = {"json": "verdict.json", "junit": "junit.xml", "html": "report.html"}
ANALYZE_LOG = Path("logs") / "analyze.log"
# A Prometheus range shorter than this leaves the analyzer too few points to judge anything.
MIN_PROMETHEUS_RANGE_SECONDS = 60.0


@dataclass(frozen=True)
class Analysis:
    """The outcome of the run's analysis: ``status`` is the verdict or "error", ``verdict``
    the JSON form of ``report`` (both None on an error), ``reports`` the files written."""

    status: str
    report: Report | None = None
    verdict: dict[str, Any] | None = None
    reports: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFinding:
    """Something the run itself went through that keeps its verdict from being a pass (the
    load driver died, the run directory filled up, the exporter could not be kept alive): added
    to the report as an inconclusive result of kind ``run``, so a fail stays a fail and a pass
    becomes inconclusive, in verdict.json, junit.xml and report.html alike."""

    rule: str
    subject: Mapping[str, str]
    reason: str
    figure: float | None = None
    threshold: float = 0.0
    unit: str = "s"
    comparison: str = ">="


def _with_findings(report: Report, findings: Sequence[RunFinding]) -> Report:
    if not findings:
        return report
    from soakwatch.analyzer.report import Result

    extra = [
        Result(
            rule=f.rule,
            kind="run",
            subject=dict(f.subject),
            status="inconclusive",
            figure=f.figure,
            unit=f.unit,
            threshold=f.threshold,
            comparison=f.comparison,
            reason=f.reason,
        )
        for f in findings
    ]
    return dataclasses.replace(report, results=[*report.results, *extra])


def _json_with_notes(text: str, notes: Mapping[str, Any]) -> str:
    """verdict.json with the run's notes (restarts, the load's end) under ``run``."""
    if not notes:
        return text
    document = json.loads(text)
    document["run"] = dict(notes)
    return json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"


def require_analyzer() -> None:
    """MissingExtraError (exit 2, one line naming the extra) when the analyzer cannot run."""
    require_extra("analyzer")


def _source(
    run_dir: Path, prometheus_url: str | None, started: float, ended: float, step_seconds: float
) -> tuple[Source, float, float]:
    """Where the analysis reads from, and the range to judge."""
    from soakwatch.analyzer import PrometheusSource, RunDirSource

    if prometheus_url:
        span = max(MIN_PROMETHEUS_RANGE_SECONDS, math.ceil(ended - started))
        # one point per scrape: the analyzer's default step suits hours, not a short run
        source = PrometheusSource(prometheus_url, min_step_seconds=max(1.0, step_seconds))
        return source, ended - span, ended
    recording = RunDirSource(run_dir)
    first, last = recording.time_range()
    return recording, first, last


def _analyze(
    run_dir: Path,
    ruleset: RuleSet,
    prometheus_url: str | None = None,
    started: float = 0.0,
    ended: float = 0.0,
    step_seconds: float = 15.0,
) -> Report:
    from soakwatch.analyzer import analyze

    source, start, end = _source(run_dir, prometheus_url, started, ended, step_seconds)
    return analyze(source, ruleset, start, end)


def _ruleset(rules: Path | None) -> RuleSet:
    from soakwatch.rules.model import load_rules

    return load_rules(rules)


# -- rendering ---------------------------------------------------------------------------------
def _junit_with_skipped(text: str, skipped: Mapping[str, str]) -> str:
    """The analyzer's JUnit text with one skipped test case per scenario left out."""
    if not skipped:
        return text
    root = ET.fromstring(text)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return text
    for scenario, reason in skipped.items():
        case = ET.SubElement(suite, "testcase", classname="soakwatch.scenario", name=scenario)
        ET.SubElement(case, "skipped", message=f"scenario left out: {reason}")
    suite.set("tests", str(int(suite.get("tests", "0")) + len(skipped)))
    suite.set("skipped", str(int(suite.get("skipped", "0")) + len(skipped)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _html_with_skipped(text: str, skipped: Mapping[str, str]) -> str:
    """The analyzer's HTML report with a section naming the scenarios left out and why."""
    if not skipped:
        return text
    items = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(reason)}</li>"
        for name, reason in skipped.items()
    )
    note = f"<h2>Scenarios left out of this run</h2><ul>{items}</ul>\n"
    marker = "<h2>Findings</h2>"
    if marker in text:
        return text.replace(marker, note + marker, 1)
    return text.replace("</body>", note + "</body>", 1)


def render_reports(
    report: Report, skipped: Mapping[str, str], run_dir: Path | None = None
) -> dict[str, str]:
    """The text of each report file (by format) from one report; the HTML report also shows
    the load summary and the config that ``run_dir`` holds."""
    from soakwatch.analyzer.formats import render_json, render_junit
    from soakwatch.analyzer.html import render_html

    return {
        "json": render_json(report) + "\n",
        "junit": _junit_with_skipped(render_junit(report), skipped) + "\n",
        "html": _html_with_skipped(render_html(report, run_dir=run_dir), skipped),
    }


# -- the two analyses of a run -----------------------------------------------------------------
def _log_line(run_dir: Path, text: str) -> None:
    """One line of logs/analyze.log; on a run dir that cannot be written (full), the log."""
    path = run_dir / ANALYZE_LOG
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as out:
            out.write(f"{stamp} {text.rstrip()}\n")
    except OSError as exc:
        log.warning("cannot write %s (%s): %s", path, exc.strerror, text.rstrip())


def analyze_run(
    run_dir: Path,
    rules: Path | None,
    prometheus_url: str | None = None,
    started: float = 0.0,
    ended: float = 0.0,
    step_seconds: float = 15.0,
    *,
    skipped: Mapping[str, str] | None = None,
    findings: Sequence[RunFinding] = (),
    notes: Mapping[str, Any] | None = None,
) -> Analysis:
    """Analyze the run once and write its three reports. Never raises for a run that cannot
    be judged (no samples, Prometheus unreachable, bad rules): the status is then "error" and
    ``logs/analyze.log`` says why. ``findings`` join the report's results (see RunFinding),
    ``notes`` go under ``run`` in verdict.json. A report that cannot be written (a full disk)
    is left out of ``reports`` and logged; the verdict stands."""
    try:
        report = _analyze(run_dir, _ruleset(rules), prometheus_url, started, ended, step_seconds)
        report = _with_findings(report, findings)
    except SoakwatchError as exc:
        _log_line(run_dir, f"analysis failed: {exc}")
        return Analysis("error")
    except Exception:  # an analyzer bug must not lose what the run measured
        log.exception("the analysis of %s failed", run_dir)
        _log_line(run_dir, f"analysis failed:\n{traceback.format_exc()}")
        return Analysis("error")
    reports = {}
    for fmt, text in render_reports(report, skipped or {}, run_dir).items():
        path = run_dir / REPORTS[fmt]
        if fmt == "json":
            text = _json_with_notes(text, notes or {})
        try:
            write_atomic(path, text)
        except OSError as exc:
            log.warning("cannot write %s: %s", path, exc.strerror or exc)
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        reports[fmt] = path
    _log_line(
        run_dir,
        f"analyzed {report.source} over {report.end - report.start:.0f}s: {report.verdict} "
        f"({len(report.results)} results); wrote "
        + (", ".join(path.name for path in reports.values()) or "no report file"),
    )
    verdict = report.to_json()
    if notes:
        verdict["run"] = dict(notes)
    return Analysis(report.verdict, report, verdict, reports)


def early_verdict(run_dir: Path, rules: Path | None) -> str | None:
    """The analyzer's verdict on what was recorded so far (for --fail-fast); None when there
    is nothing to judge yet."""
    try:
        return _analyze(run_dir, _ruleset(rules)).verdict
    except SoakwatchError as exc:
        log.debug("early verdict of %s: %s", run_dir, exc)
        return None
