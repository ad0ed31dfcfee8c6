"""Baselines: how each figure moved since one or several earlier runs (their JSON reports)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from soakwatch.analyzer.report import Report

__all__ = ["compare_reports", "render_comparison"]


def _key(rule: str, subject: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return rule, tuple(sorted(subject.items()))


def compare_reports(report: Report, baselines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per result of ``report``: its figure, the same figure in each baseline (oldest
    first, None where absent), the change against the latest baseline and against the median
    of the passing baselines."""
    indexed = []
    for data in baselines:
        by_key: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Any, Any]] = {}
        for item in data.get("results", []):
            by_key[_key(item["rule"], item.get("subject", {}))] = (
                item.get("figure"),
                item.get("status"),
            )
        indexed.append(by_key)
    rows = []
    for r in report.results:
        key = _key(r.rule, dict(r.subject))
        previous = [index.get(key, (None, None)) for index in indexed]
        figures = [f for f, _ in previous]
        passing = [f for f, status in previous if f is not None and status == "pass"]
        latest = next((f for f in reversed(figures) if f is not None), None)
        median = statistics.median(passing) if passing else None
        current = r.figure if r.figure is not None and math.isfinite(r.figure) else None

        def change(ref: float | None, now: float | None = current) -> float | None:
            if ref is None or now is None or ref == 0:
                return None
            return (now - ref) / abs(ref)

        rows.append(
            {
                "rule": r.rule,
                "subject": dict(r.subject),
                "unit": r.unit,
                "figure": current,
                "previous": figures,
                "change_vs_latest": change(latest),
                "median_of_passing": median,
                "change_vs_passing_median": change(median),
            }
        )
    return rows


def _fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.0%}" if percent else f"{value:.3g}"


def render_comparison(rows: list[dict[str, Any]], *, markdown: bool = False) -> str:
    header = ("rule", "subject", "now", "earlier (oldest first)", "vs latest", "vs passing median")
    lines = []
    for row in rows:
        subject = ",".join(f"{k}={v}" for k, v in row["subject"].items()) or "-"
        lines.append(
            (
                row["rule"],
                subject,
                f"{_fmt(row['figure'])} {row['unit']}",
                " ".join(_fmt(f) for f in row["previous"]),
                _fmt(row["change_vs_latest"], True),
                _fmt(row["change_vs_passing_median"], True),
            )
        )
    if markdown:
        out = ["## Compared with earlier runs", "", "| " + " | ".join(header) + " |"]
        out.append("|" + " --- |" * len(header))
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(str(c[i])) for c in [header, *lines]) for i in range(len(header))]
    out = ["Compared with earlier runs:"]
    out += [
        "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(cells)).rstrip()
        for cells in [header, *lines]
    ]
    return "\n".join(out)
