"""The self-contained HTML report: verdict, table, and one plot per finding (the series, the
fitted slope with its confidence band, the warm-up and the windows compared), embedded as
base64 PNG made with matplotlib's Agg backend. No external files, scripts or fonts."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np

from soakwatch.analyzer.formats import format_figure, format_time
from soakwatch.analyzer.report import Evidence, Report, Result
from soakwatch.durations import format_duration

__all__ = ["render_html"]

MAX_PLOTTED_POINTS = 4000
_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700"}


def _thin(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if t.size <= MAX_PLOTTED_POINTS:
        return t, v
    step = int(np.ceil(t.size / MAX_PLOTTED_POINTS))
    return t[::step], v[::step]


def _title(result: Result) -> str:
    """Rule, subject, status and the judged figure against its threshold."""
    title = f"{result.rule} {result.subject_text}: {result.status}"
    if result.figure is not None:
        title += (
            f"  ({result.figure:.3g} {result.unit}, passes when"
            f" {result.comparison} {result.threshold:g})"
        )
    return title


def _plot(result: Result, evidence: Evidence) -> str:
    """A PNG of the evidence, base64-encoded."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import dates
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.2), dpi=90)
    axes = figure.add_subplot()

    # matplotlib ships date2num without annotations: give it the type it documents
    date2num: Callable[[datetime], float] = dates.date2num
    epoch = float(date2num(datetime(1970, 1, 1, tzinfo=timezone.utc)))

    def when(t: np.ndarray) -> np.ndarray:
        """Unix seconds as matplotlib date numbers (days since its epoch)."""
        return np.asarray(t, dtype=np.float64) / 86400.0 + epoch

    for label, t, v in evidence.series:
        t, v = _thin(np.asarray(t), np.asarray(v))
        if t.size:
            axes.plot(when(t), v, lw=0.7, alpha=0.6, label=label[:60] or None)
    if evidence.points is not None and evidence.points[0].size:
        axes.plot(
            when(evidence.points[0]),
            evidence.points[1],
            "o",
            ms=3,
            color="black",
            label="judged points (window medians or troughs)",
        )
    for t, low, high in evidence.bands:
        axes.fill_between(when(t), low, high, color="tab:red", alpha=0.18, lw=0)
    for label, t, v in evidence.lines:
        axes.plot(when(t), v, color="tab:red", lw=1.5, label=label or None)
    for index, (label, a, b) in enumerate(evidence.spans):
        axes.axvspan(
            float(when(np.array([a]))[0]),
            float(when(np.array([b]))[0]),
            color=f"C{index + 2}",
            alpha=0.12,
            label=label,
        )
    for label, at in evidence.marks:
        axes.axvline(when(np.array([at]))[0], color="grey", ls="--", lw=0.8)
        axes.annotate(
            label,
            (when(np.array([at]))[0], 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
        )
    axes.xaxis_date(tz=timezone.utc)
    if evidence.y_label.endswith("_bytes"):
        # the rules speak MB (10^6 bytes); raw bytes with a 1e7 offset hide the scale
        from matplotlib.ticker import FuncFormatter

        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value / 1e6:,.1f}"))
        axes.set_ylabel(f"{evidence.y_label.removesuffix('_bytes')}\n(MB)", fontsize=8)
    else:
        axes.set_ylabel(evidence.y_label)
    axes.set_title(_title(result), fontsize=10)
    axes.grid(alpha=0.3)
    handles, _labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(fontsize=7, loc="best")
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(report: Report) -> str:
    e = html.escape
    colour = _COLOURS.get(report.verdict, "#57606a")
    rows = []
    sections = []
    for index, r in enumerate(report.results):
        anchor = f"finding-{index}"
        rows.append(
            f'<tr class="{e(r.status)}"><td>{e(r.rule)}</td><td>{e(r.subject_text)}</td>'
            f'<td><a href="#{anchor}">{e(r.status)}</a></td><td>{e(format_figure(r))}</td>'
            f"<td>{e(r.comparison)} {r.threshold:g} {e(r.unit)}</td><td>{e(r.reason)}</td></tr>"
        )
        if r.evidence is None or r.status == "not_applicable":
            continue
        image = _plot(r, r.evidence)
        sections.append(
            f'<section id="{anchor}"><h3>{e(r.rule)} &mdash; {e(r.subject_text)}: '
            f"{e(r.status)}</h3><p>{e(r.reason)}</p>"
            f'<img alt="{e(r.rule)} {e(r.subject_text)}" src="data:image/png;base64,{image}">'
            "</section>"
        )
    counts = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in report.counts().items() if n)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Soak verdict: {e(report.verdict)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #24292f; }}
.verdict {{ font-size: 1.6em; color: {colour}; font-weight: bold; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #d0d7de; padding: 4px 8px; }}
tr.fail td {{ background: #ffebe9; }} tr.inconclusive td {{ background: #fff8c5; }}
tr.pass td {{ background: #dafbe1; }} tr.not_applicable td {{ color: #6e7781; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Soak report</h1>
<p class="verdict">{e(report.verdict.upper())}</p>
<p>{e(format_time(report.start))} .. {e(format_time(report.end))}
({e(format_duration(report.end - report.start))}); source: {e(report.source)};
rules: {e(report.rules_source)} (v{report.rules_version}); {e(counts)}</p>
<table><tr><th>rule</th><th>subject</th><th>status</th><th>figure</th><th>pass when</th>
<th>reason</th></tr>
{"".join(rows)}
</table>
<h2>Findings</h2>
{"".join(sections)}
</body></html>
"""
