"""The self-contained HTML report: verdict, the load summary and the run's configuration (from
the run directory, :mod:`soakwatch.analyzer.report_sections`), the table of findings, and one
plot per finding that says something (the series, the fitted slope with its confidence band,
the warm-up and the windows compared), embedded as base64 PNG made with matplotlib's Agg
backend and reduced to a palette. No external files, scripts or fonts.

Not-applicable results, and passes whose figure is zero (no error, no restart, no failed
probe), are folded into one line each instead of a row and a flat plot. A counter ratio is
plotted as the ratio (over sliding windows, and since warm-up: the figure judged), not as
the raw counters; every plot's y axis contains the levels its text quotes. A memory_growth
finding with ``details.allocation_sites`` (issue 17) also gets a bar chart of each top site's
growth and a table naming the sites."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from soakwatch.analyzer.counters import counter_increase
from soakwatch.analyzer.formats import format_figure, format_time
from soakwatch.analyzer.report import Evidence, Report, Result
from soakwatch.durations import format_duration

__all__ = ["is_trivial", "render_html"]

MAX_PLOTTED_POINTS = 4000
# The plots' size: 11 x 3 inches at 80 dpi (880 x 240 px, the legend beside the plot), reduced
# to a palette of this many colours (lines on white: a palette PNG is a third of an RGBA one).
PLOT_INCHES = (11.0, 3.0)
PLOT_DPI = 80
PLOT_COLOURS = 64
# A counter ratio is plotted over sliding windows of this share of the range (within bounds).
RATIO_WINDOW_SHARE = 1 / 12
RATIO_WINDOW_MAX_SECONDS = 600.0
_UNIT_SCALE = {"percent": 100.0, "ratio": 1.0}
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


Series = tuple[str, np.ndarray, np.ndarray]
ToDate = Callable[[np.ndarray], np.ndarray]


def _cumulative(t: np.ndarray, v: np.ndarray, begin: float, grid: np.ndarray) -> np.ndarray:
    """A counter's increase since ``begin`` (through resets, as counter_increase counts it) at
    each time of ``grid``; 0 before its first sample at or after ``begin``."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    keep = (t >= begin) & np.isfinite(v)
    t, v = t[keep], v[keep]
    if t.size < 2:
        return np.zeros(grid.size)
    d = np.diff(v)
    rise = np.concatenate(([0.0], np.cumsum(np.where(d >= 0, d, v[1:]))))
    values: np.ndarray = np.interp(grid, t, rise, left=0.0, right=float(rise[-1]))
    return values


def _role_sum(series: Sequence[Series], begin: float, grid: np.ndarray) -> np.ndarray:
    total = np.zeros(grid.size)
    for _label, t, v in series:
        total += _cumulative(t, v, begin, grid)
    return total


def _ratio_roles(
    result: Result, evidence: Evidence, begin: float, end: float
) -> tuple[list[Series], list[Series]] | None:
    """(numerator series, denominator series) of a ratio result's evidence, or None when the
    evidence does not hold them all (it keeps at most 8 series): a ratio of some of them would
    not be the ratio judged."""
    series = [(label, np.asarray(t), np.asarray(v)) for label, t, v in evidence.series]
    details = result.details
    if result.kind == "ratio_change":
        n_num, n_den = details.get("numerator_series"), details.get("denominator_series")
        if not isinstance(n_num, int) or not isinstance(n_den, int) or not n_num or not n_den:
            return None
        if len(series) != n_num + n_den:
            return None
        return series[:n_num], series[n_num:]
    n_den = details.get("series")
    if not isinstance(n_den, int) or not 0 < n_den < len(series):
        return None
    denominators, numerators = series[:n_den], series[n_den:]
    # complete only when the series add up to the increases the rule judged
    for role, key in ((numerators, "numerator"), (denominators, "denominator")):
        judged = details.get(key)
        if not isinstance(judged, (int, float)):
            return None
        seen = sum(counter_increase(t, v, begin, end) for _label, t, v in role)
        if not np.isclose(seen, float(judged), rtol=1e-6, atol=1e-9):
            return None
    return numerators, denominators


def _windowed(
    grid: np.ndarray, num: np.ndarray, den: np.ndarray, window: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ratio of the increases over the ``window`` seconds before each grid time (times
    with a full window and a rising denominator only)."""
    back = np.searchsorted(grid, grid - window, side="right") - 1
    full = (back >= 0) & (grid - grid[np.maximum(back, 0)] >= window * 0.999)
    index = np.maximum(back, 0)
    d_num = num - num[index]
    d_den = den - den[index]
    ok = full & (d_den > 0)
    return grid[ok], d_num[ok] / d_den[ok]


def _ratio_window(grid: np.ndarray) -> float:
    span = float(grid[-1] - grid[0]) if grid.size > 1 else 0.0
    step = float(np.median(np.diff(grid))) if grid.size > 1 else 0.0
    window = min(max(span * RATIO_WINDOW_SHARE, 3 * step), RATIO_WINDOW_MAX_SECONDS)
    if window >= 120:  # whole minutes read better ("10m", not "9m58s")
        window = max(60.0 * round(window / 60), 3 * step)
    return window


def _draw_ratio(
    result: Result, evidence: Evidence, axes: Any, when: ToDate, start: float, end: float
) -> list[float] | None:
    """The ratio judged by a counter_ratio or ratio_change result; the levels drawn (for
    the axis), or None when the evidence cannot give the ratio."""
    from soakwatch.durations import format_duration

    warmups = [b for label, _a, b in evidence.spans if label == "warm-up"]
    begin = max([start, *warmups])
    roles = _ratio_roles(result, evidence, begin, end)
    if roles is None:
        return None
    numerators, denominators = roles
    grid = np.unique(np.concatenate([np.asarray(t) for _label, t, _v in denominators]))
    grid = grid[(grid >= begin) & (grid <= end)]
    if grid.size < 2:
        return None
    num = _role_sum(numerators, begin, grid)
    den = _role_sum(denominators, begin, grid)
    levels: list[float] = []
    if result.kind == "ratio_change":
        return _draw_ratio_change(result, axes, when, grid, num, den)
    scale = _UNIT_SCALE.get(result.unit, 1.0)
    window = _ratio_window(grid)
    t_w, r_w = _windowed(grid, num, den, window)
    if t_w.size:
        t_w, r_w = _thin(t_w, r_w)
        axes.plot(when(t_w), r_w * scale, lw=0.9, label=f"ratio over {format_duration(window)}")
    rising = den > 0
    if np.any(rising):
        t_c, r_c = _thin(grid[rising], num[rising] / den[rising])
        axes.plot(when(t_c), r_c * scale, lw=1.6, color="black", label="ratio since warm-up")
    if result.figure is not None and math.isfinite(result.figure):
        levels.append(result.figure)
    axes.axhline(result.threshold, color="tab:red", ls="--", lw=1.0, label="threshold")
    levels.append(result.threshold)
    axes.set_ylabel(f"{result.rule}\n({result.unit})", fontsize=8)
    return levels


def _draw_ratio_change(
    result: Result, axes: Any, when: ToDate, grid: np.ndarray, num: np.ndarray, den: np.ndarray
) -> list[float]:
    """CPU per request (or any ratio) over windows of the rule's, with the first window's level,
    the late level and the level that fails."""
    from soakwatch.durations import format_duration

    details = result.details
    first, late = details.get("first_window"), details.get("late_window")
    levels: list[float] = []
    window = _ratio_window(grid)
    if isinstance(first, list) and len(first) == 2:
        window = float(first[1]) - float(first[0])
    t_w, r_w = _windowed(grid, num, den, window)
    if t_w.size:
        t_w, r_w = _thin(t_w, r_w)
        axes.plot(when(t_w), r_w, lw=0.9, label=f"ratio over {format_duration(window)}")
        levels.extend(float(x) for x in r_w[np.isfinite(r_w)][:1])

    def level(key_num: str, key_den: str) -> float | None:
        a, b = details.get(key_num), details.get(key_den)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0:
            return float(a) / float(b)
        return None

    early = level("first_numerator", "first_denominator")
    for label, value, span, colour in (
        ("first window", early, first, "tab:green"),
        ("late stretch", level("late_numerator", "late_denominator"), late, "tab:purple"),
    ):
        if value is None or not (isinstance(span, list) and len(span) == 2):
            continue
        edges = when(np.array([float(span[0]), float(span[1])]))
        axes.hlines(value, edges[0], edges[1], colors=colour, lw=2.0, label=f"{label} level")
        levels.append(value)
    if early is not None and result.unit == "percent" and result.comparison in ("<", "<="):
        fails = early * (1 + result.threshold / 100)
        axes.axhline(fails, color="tab:red", ls="--", lw=1.0, label="fails above")
        levels.append(fails)
    axes.set_ylabel(f"{result.rule}\n(ratio)", fontsize=8)
    return levels


def _draw_quantile_levels(
    result: Result, evidence: Evidence, axes: Any, when: ToDate
) -> list[float]:
    """The levels a quantile_change result quotes (first/last window, the medians compared,
    the level that fails), in ms, as horizontal lines over the windows they belong to."""
    details = result.details
    spans = {label: (a, b) for label, a, b in evidence.spans}
    levels: list[float] = []

    def number(key: str) -> float | None:
        value = details.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value) * 1000
        return None

    for key, span_name, colour, label in (
        ("baseline", "first window", "tab:green", "baseline (median of sub-windows)"),
        ("late", "late stretch", "tab:purple", "late level (median of sub-windows)"),
        ("first", "first window", "tab:olive", "first window"),
        ("last", "last window", "tab:brown", "last window"),
    ):
        value = number(key)
        if value is None or span_name not in spans:
            continue
        a, b = spans[span_name]
        edges = when(np.array([a, b]))
        axes.hlines(
            value, edges[0], edges[1], colors=colour, lw=1.8, label=f"{label} {value:.3g} ms"
        )
        levels.append(value)
    baseline = number("baseline")
    if baseline is not None and result.unit == "percent" and result.comparison in ("<", "<="):
        fails = baseline * (1 + result.threshold / 100)
        floor = number("min_increase")
        if floor:
            fails = max(fails, baseline + floor)
        axes.axhline(fails, color="tab:red", ls="--", lw=1.0, label=f"fails above {fails:.3g} ms")
        levels.append(fails)
    return levels


def _include(axes: Any, levels: Sequence[float]) -> None:
    """Widen the y axis so that it contains every level quoted (with a margin past it)."""
    finite = [x for x in levels if math.isfinite(x)]
    if not finite:
        return
    low, high = axes.get_ylim()
    new_low, new_high = min(low, *finite), max(high, *finite)
    margin = (new_high - new_low) * 0.05 or 1.0
    axes.set_ylim(
        new_low - margin if new_low < low else low, new_high + margin if new_high > high else high
    )


def _png(figure: Any) -> bytes:
    """The figure as a palette PNG (a third of the RGBA bytes; the plots are lines on white)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PLOT_DPI)
    try:
        from PIL import Image
    except ImportError:  # matplotlib needs Pillow, but a PNG is a PNG
        return buffer.getvalue()
    buffer.seek(0)
    with Image.open(buffer) as image:
        reduced = image.convert("RGB").quantize(colors=PLOT_COLOURS)
        out = io.BytesIO()
        reduced.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _plot(
    result: Result, evidence: Evidence, start: float = -math.inf, end: float = math.inf
) -> str | None:
    """A PNG of the evidence, base64-encoded (None: nothing honest to plot, see _figure)."""
    figure = _figure(result, evidence, start, end)
    if figure is None:
        return None
    return base64.b64encode(_png(figure)).decode("ascii")


def _figure(result: Result, evidence: Evidence, start: float, end: float) -> Any | None:
    """The matplotlib Figure of the evidence; None for a ratio whose evidence does not hold
    every series it was judged from (raw counters are not the ratio judged)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import dates
    from matplotlib.figure import Figure

    figure = Figure(figsize=PLOT_INCHES, dpi=PLOT_DPI)
    axes = figure.add_subplot()

    # matplotlib ships date2num without annotations: give it the type it documents
    date2num: Callable[[datetime], float] = dates.date2num
    epoch = float(date2num(datetime(1970, 1, 1, tzinfo=timezone.utc)))

    def when(t: np.ndarray) -> np.ndarray:
        """Unix seconds as matplotlib date numbers (days since its epoch)."""
        return np.asarray(t, dtype=np.float64) / 86400.0 + epoch

    levels: list[float] | None = None
    if result.kind in ("counter_ratio", "ratio_change"):
        levels = _draw_ratio(result, evidence, axes, when, start, end)
        if levels is None:
            return None
    latency = result.kind == "quantile_change" and evidence.y_label == "seconds"
    scale = 1000.0 if latency else 1.0
    if levels is None:
        levels = []
        for label, t, v in evidence.series:
            t, v = _thin(np.asarray(t), np.asarray(v))
            if t.size:
                width, alpha = (1.2, 0.9) if latency else (0.7, 0.6)
                axes.plot(when(t), v * scale, lw=width, alpha=alpha, label=label[:60] or None)
    if latency:
        levels = _draw_quantile_levels(result, evidence, axes, when)
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
    if result.kind in ("counter_ratio", "ratio_change"):
        pass  # _draw_ratio labelled the axis
    elif latency:
        quantile = result.details.get("quantile", 0.95)
        name = f"p{float(quantile) * 100:g}" if isinstance(quantile, (int, float)) else "latency"
        axes.set_ylabel(f"{name}\n(ms)", fontsize=8)
    elif evidence.y_label.endswith("_bytes"):
        # the rules speak MB (10^6 bytes); raw bytes with a 1e7 offset hide the scale
        from matplotlib.ticker import FuncFormatter

        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value / 1e6:,.1f}"))
        axes.set_ylabel(f"{evidence.y_label.removesuffix('_bytes')}\n(MB)", fontsize=8)
    else:
        axes.set_ylabel(evidence.y_label, fontsize=8)
    _include(axes, levels)
    axes.set_title(_title(result), fontsize=9)
    axes.grid(alpha=0.3)
    axes.tick_params(labelsize=7)
    handles, _labels = axes.get_legend_handles_labels()
    if handles:
        # beside the plot, never over the data
        axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.autofmt_xdate()
    figure.tight_layout()
    return figure


# the allocation sites of a memory finding: at most this many bars, this wide (inches)
MAX_SITE_BARS = 10
SITES_WIDTH = 8.0


def _sites_of(result: Result) -> list[dict[str, Any]]:
    """The well-formed entries of ``details.allocation_sites`` (site text, numeric growth)."""
    found = result.details.get("allocation_sites")
    if not isinstance(found, list):
        return []
    return [
        site
        for site in found
        if isinstance(site, dict)
        and isinstance(site.get("site"), str)
        and isinstance(site.get("growth_bytes_per_hour"), (int, float))
        and math.isfinite(site["growth_bytes_per_hour"])
    ]


def _sites_figure(result: Result, sites: Sequence[dict[str, Any]]) -> Any:
    """Horizontal bars: each site's growth (MB/h, the rules' unit), the largest on top."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    shown = list(sites[:MAX_SITE_BARS])
    figure = Figure(figsize=(SITES_WIDTH, 0.8 + 0.28 * len(shown)), dpi=PLOT_DPI)
    axes = figure.add_subplot()
    labels = [
        f"{s['site']} ({s['function']})" if s.get("function") else str(s["site"]) for s in shown
    ]
    growth = [float(s["growth_bytes_per_hour"]) / 1e6 for s in shown]
    rows = np.arange(len(shown))[::-1]
    axes.barh(rows, growth, color=["tab:red" if g > 0 else "tab:grey" for g in growth])
    axes.set_yticks(rows, [label[:70] for label in labels], fontsize=7)
    axes.axvline(0.0, color="black", lw=0.6)
    axes.set_xlabel("growth (MB/h)", fontsize=8)
    axes.set_title(f"allocation sites of {result.rule} {result.subject_text}", fontsize=9)
    axes.tick_params(axis="x", labelsize=7)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def _sites_block(result: Result) -> str:
    """The chart and table of a memory finding's allocation sites ("" when it has none)."""
    e = html.escape
    sites = _sites_of(result)
    if not sites:
        return ""
    figure = _sites_figure(result, sites)
    image = base64.b64encode(_png(figure)).decode("ascii")
    width = round(SITES_WIDTH * PLOT_DPI)
    height = round(figure.get_figheight() * PLOT_DPI)
    names = ", ".join(str(s["site"]) for s in sites[:MAX_SITE_BARS])
    rows = "".join(
        f"<tr><td>{e(str(s['site']))}</td><td>{e(str(s.get('function', '')))}</td>"
        f"<td>{float(s['growth_bytes_per_hour']) / 1e6:+.3g} MB/h</td>"
        f"<td>{100 * float(s.get('share') or 0.0):.0f} %</td></tr>"
        for s in sites
    )
    return (
        f'<img class="sites" alt="allocation sites: {e(names)}" width="{width}" '
        f'height="{height}" src="data:image/png;base64,{image}">'
        '<table class="sites"><tr><th>allocation site</th><th>function</th><th>growth</th>'
        f"<th>share</th></tr>{rows}</table>"
    )


RUN_DIR_SOURCE = "run directory "


def _run_dir_of(report: Report) -> Path | None:
    """The run directory a report was read from (``soak-analyze --run-dir``), from its source
    text: "run directory DIR" or "run directory DIR (what was left out)"."""
    if not report.source.startswith(RUN_DIR_SOURCE):
        return None
    rest = report.source.removeprefix(RUN_DIR_SOURCE)
    candidates = [rest]
    if rest.endswith(")") and " (" in rest:
        candidates.append(rest.rsplit(" (", 1)[0])
    for candidate in candidates:
        if Path(candidate).is_dir():
            return Path(candidate)
    return None


def is_trivial(result: Result) -> bool:
    """A pass whose figure is zero (no error, no restart, no failed probe): nothing to plot."""
    return result.status == "pass" and result.figure == 0


def _grouped(results: Sequence[Result], with_reason: bool) -> str:
    """'rule (subject, subject): reason; rule (...)', one group per rule (and reason)."""
    e = html.escape
    groups: dict[tuple[str, str], list[str]] = {}
    for r in results:
        groups.setdefault((r.rule, r.reason if with_reason else ""), []).append(r.subject_text)
    parts = []
    for (rule, reason), subjects in groups.items():
        text = f"<b>{e(rule)}</b> ({e(', '.join(subjects))})"
        if reason:
            text += f": {e(reason)}"
        parts.append(text)
    return "; ".join(parts)


def _folded(not_applicable: Sequence[Result], trivial: Sequence[Result]) -> str:
    lines = []
    if trivial:
        lines.append(
            f'<p class="folded">{len(trivial)} {"pass" if len(trivial) == 1 else "passes"} '
            f"with a zero figure: {_grouped(trivial, False)}.</p>"
        )
    if not_applicable:
        lines.append(
            f'<p class="folded">{len(not_applicable)} '
            f"{'result' if len(not_applicable) == 1 else 'results'} not applicable: "
            f"{_grouped(not_applicable, True)}.</p>"
        )
    return "\n".join(lines)


def _section(result: Result, anchor: str, start: float, end: float) -> str:
    """The finding's section with its plot; "" when there is nothing to show beyond its row
    (no evidence, or an inconclusive ratio without a figure that cannot be plotted)."""
    e = html.escape
    sites = _sites_block(result)
    if result.evidence is None:
        if not sites:
            return ""
        return (
            f'<section id="{anchor}"><h3>{e(result.rule)} &mdash; {e(result.subject_text)}: '
            f"{e(result.status)}</h3><p>{e(result.reason)}</p>{sites}</section>"
        )
    image = _plot(result, result.evidence, start, end)
    if image is None:
        if result.status == "inconclusive" and result.figure is None:
            return ""
        picture = (
            '<p class="note">No plot: the evidence does not hold every series of the '
            "ratio, and the raw counters are not the ratio judged.</p>"
        )
    else:
        width, height = (round(x * PLOT_DPI) for x in PLOT_INCHES)
        picture = (
            f'<img alt="{e(result.rule)} {e(result.subject_text)}" width="{width}" '
            f'height="{height}" src="data:image/png;base64,{image}">'
        )
    return (
        f'<section id="{anchor}"><h3>{e(result.rule)} &mdash; {e(result.subject_text)}: '
        f"{e(result.status)}</h3><p>{e(result.reason)}</p>{picture}{sites}</section>"
    )


def render_html(report: Report, *, run_dir: Path | str | None = None) -> str:
    """The report as one HTML page. ``run_dir`` (default: the directory the report was read
    from, if any) adds the load summary and the run's configuration when it holds them."""
    from soakwatch.analyzer.report_sections import config_section, load_section, read_run_files

    e = html.escape
    colour = _COLOURS.get(report.verdict, "#57606a")
    files = read_run_files(run_dir if run_dir is not None else _run_dir_of(report))
    rows = []
    sections = []
    not_applicable = [r for r in report.results if r.status == "not_applicable"]
    trivial = [r for r in report.results if is_trivial(r)]
    # results that say the same thing (same rule, status and reason, no figure: "not enough
    # data ...") share one row
    groups: dict[tuple[object, ...], list[tuple[int, Result]]] = {}
    for index, r in enumerate(report.results):
        if r.status == "not_applicable" or is_trivial(r):
            continue
        key: tuple[object, ...] = (r.rule, r.status, r.reason) if r.figure is None else (index,)
        groups.setdefault(key, []).append((index, r))
    for members in groups.values():
        anchors = []
        for index, r in members:
            section = _section(r, f"finding-{index}", report.start, report.end)
            if section:
                anchors.append(f"finding-{index}")
                sections.append(section)
        r = members[0][1]
        link = e(r.status)
        if anchors:
            link = f'<a href="#{anchors[0]}">{link}</a>'
        subjects = e(r.subject_text)
        if len(members) > 1:
            subjects = f"{len(members)} subjects: " + e(
                ", ".join(m.subject_text for _, m in members)
            )
        rows.append(
            f'<tr class="{e(r.status)}"><td>{e(r.rule)}</td><td>{subjects}</td>'
            f"<td>{link}</td><td>{e(format_figure(r))}</td>"
            f"<td>{e(r.comparison)} {r.threshold:g} {e(r.unit)}</td><td>{e(r.reason)}</td></tr>"
        )
    load = load_section(files.load_summary) if files.load_summary is not None else ""
    config = config_section(files.config) if files.config is not None else ""
    problems = "".join(
        f'<p class="warning">not shown: {e(problem)}</p>' for problem in files.problems
    )
    table = ""
    if rows:
        table = (
            "<table><tr><th>rule</th><th>subject</th><th>status</th><th>figure</th>"
            "<th>pass when</th><th>reason</th></tr>\n" + "".join(rows) + "\n</table>"
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
table.load td {{ font-variant-numeric: tabular-nums; }}
tr.failing td {{ background: #ffebe9; }} tr.short td {{ background: #fff8c5; }}
tr.skipped td, tr.step td, .note, .folded {{ color: #57606a; }}
.warning, .breached {{ color: #9a6700; font-weight: bold; }}
pre {{ background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 0.85em; }}
img {{ max-width: 100%; height: auto; }}
</style></head><body>
<h1>Soak report</h1>
<p class="verdict">{e(report.verdict.upper())}</p>
<p>{e(format_time(report.start))} .. {e(format_time(report.end))}
({e(format_duration(report.end - report.start))}); source: {e(report.source)};
rules: {e(report.rules_source)} (v{report.rules_version}); {e(counts)}</p>
{problems}
<h2>Results</h2>
{table}
{_folded(not_applicable, trivial)}
{load}
{config}
<h2>Findings</h2>
{"".join(sections) or "<p>No finding to plot.</p>"}
</body></html>
"""
