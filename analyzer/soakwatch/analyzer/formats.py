"""Text renderings of a report: terminal table, JSON (schema in docs/analyzer.md), JUnit XML
(one testcase per rule and subject) and Markdown. The HTML report is in
:mod:`soakwatch.analyzer.html`. Each renderer is ``render_x(report) -> str``."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from soakwatch.analyzer.report import Report, Result
from soakwatch.durations import format_duration

__all__ = [
    "FORMATS",
    "format_figure",
    "format_time",
    "render_json",
    "render_junit",
    "render_markdown",
    "render_table",
]


def format_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def format_figure(result: Result) -> str:
    if result.figure is None or not math.isfinite(result.figure):
        return "-"
    return f"{result.figure:.3g} {result.unit}"


def _threshold(result: Result) -> str:
    return f"{result.comparison} {result.threshold:g} {result.unit}"


def _summary(report: Report) -> str:
    counts = report.counts()
    parts = [f"{counts[s]} {s.replace('_', ' ')}" for s in counts if counts[s]]
    return f"verdict: {report.verdict} ({', '.join(parts) or 'no results'})"


def _header(report: Report) -> str:
    return (
        f"{format_time(report.start)} .. {format_time(report.end)} "
        f"({format_duration(report.end - report.start)}), {report.source}"
    )


def render_table(report: Report) -> str:
    rows = [("RULE", "SUBJECT", "STATUS", "FIGURE", "PASS WHEN", "REASON")]
    rows += [
        (r.rule, r.subject_text, r.status, format_figure(r), _threshold(r), r.reason)
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [f"soak-analyze: {report.verdict.upper()}  {_header(report)}", ""]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:5])]
        lines.append("  ".join([*cells, row[5]]).rstrip())
    lines += ["", _summary(report)]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=False, allow_nan=False)


def render_junit(report: Report) -> str:
    """JUnit XML: suite "soakwatch", testcase classname ``soakwatch.<rule>``, name the subject.
    fail -> <failure>, inconclusive -> <error type="inconclusive"> (never a pass in CI),
    not applicable -> <skipped>."""
    counts = report.counts()
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="soakwatch",
        tests=str(len(report.results)),
        failures=str(counts["fail"]),
        errors=str(counts["inconclusive"]),
        skipped=str(counts["not_applicable"]),
        timestamp=datetime.fromtimestamp(report.generated_at, tz=timezone.utc)
        .isoformat(timespec="seconds")
        .replace("+00:00", ""),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", report.verdict),
        ("source", report.source),
        ("range_start", format_time(report.start)),
        ("range_end", format_time(report.end)),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for r in report.results:
        case = ET.SubElement(
            suite, "testcase", classname=f"soakwatch.{r.rule}", name=r.subject_text, time="0"
        )
        message = f"{format_figure(r)} (pass when {_threshold(r)}): {r.reason}"
        if r.status == "fail":
            ET.SubElement(case, "failure", message=message, type="fail").text = r.reason
        elif r.status == "inconclusive":
            ET.SubElement(case, "error", message=message, type="inconclusive").text = r.reason
        elif r.status == "not_applicable":
            ET.SubElement(case, "skipped", message=r.reason)
        else:
            ET.SubElement(case, "system-out").text = message
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_STATUS_MARK = {"pass": "PASS", "fail": "**FAIL**", "inconclusive": "_inconclusive_"}


def render_markdown(report: Report) -> str:
    lines = [
        f"# Soak verdict: {report.verdict.upper()}",
        "",
        f"{_header(report)}; rules: `{report.rules_source}` (v{report.rules_version})",
        "",
        "| rule | subject | status | figure | pass when | reason |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in report.results:
        status = _STATUS_MARK.get(r.status, "n/a")
        lines.append(
            "| "
            + " | ".join(
                _md_cell(x)
                for x in (r.rule, r.subject_text, status, format_figure(r), _threshold(r), r.reason)
            )
            + " |"
        )
    lines += ["", _summary(report), ""]
    return "\n".join(lines)


FORMATS = {
    "table": render_table,
    "json": render_json,
    "junit": render_junit,
    "markdown": render_markdown,
}
