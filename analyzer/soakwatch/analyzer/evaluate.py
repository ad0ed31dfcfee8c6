"""Judging the soak rules on fetched series (pure: no clock, network or files).

:func:`evaluate_rule` takes one rule of the model, the series of each of its metric roles and
the analysed range, and returns one :class:`Result` per subject (the distinct values of the
rule's ``group_by`` labels). docs/rules.md describes each kind's computation.

Data sufficiency: a subject with some data but less than the rule's ``min_duration`` or
``min_points`` after warm-up is *inconclusive* with the reason; a subject (or a whole rule)
without any series is *not applicable*, or *inconclusive* when the rule is ``required``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from soakwatch.analyzer.counters import counter_increase
from soakwatch.analyzer.growth import MIN_CYCLES, SETTLING_LEAD, GrowthEstimate, estimate_growth
from soakwatch.analyzer.quantiles import WindowedHistogram, median_interval
from soakwatch.analyzer.report import Evidence, Result, Status
from soakwatch.analyzer.segments import restart_times
from soakwatch.analyzer.series import Series, subject_of
from soakwatch.analyzer.slopes import median
from soakwatch.analyzer.variation import coefficient_of_variation
from soakwatch.durations import format_duration
from soakwatch.rules.model import SUSTAINED_WINDOWS, Rule

__all__ = [
    "RoleData",
    "estimate_rule_growth",
    "evaluate_rule",
    "evaluate_sliding",
    "shortest_run_seconds",
    "time_needed",
]

RoleData = Mapping[str, list[Series]]
Subject = tuple[tuple[str, str], ...]
FloatArray = npt.NDArray[np.float64]
COMPANION_ROLES = ("start_time", "restarts", "up")  # the series a slope's restarts come from


def _show(rule: Rule, base_value: float) -> float:
    """A base-unit figure in the rule's unit."""
    return base_value / rule.unit_factor


def _fmt(rule: Rule, base_value: float) -> str:
    return f"{_show(rule, base_value):.3g} {rule.unit}"


def _result(
    rule: Rule,
    subject: Mapping[str, str],
    status: Status,
    reason: str,
    figure_base: float | None = None,
    details: Mapping[str, Any] | None = None,
    evidence: Evidence | None = None,
) -> Result:
    return Result(
        rule=rule.name,
        kind=rule.kind,
        subject=dict(subject),
        status=status,
        figure=None if figure_base is None else _show(rule, figure_base),
        unit=rule.unit,
        threshold=rule.threshold,
        comparison=rule.comparison,
        reason=reason,
        details=dict(details or {}),
        evidence=evidence,
    )


def _judge(rule: Rule, figure_base: float, what: str) -> tuple[Status, str]:
    status: Status = "pass" if rule.passes(figure_base) else "fail"
    relation = rule.comparison if status == "pass" else _negate(rule.comparison)
    return status, f"{what} {_fmt(rule, figure_base)} {relation} {rule.threshold:g} {rule.unit}"


def _negate(comparison: str) -> str:
    return {"<": ">=", "<=": ">", ">=": "<", ">": "<="}[comparison]


def _group(series: Iterable[Series], group_by: tuple[str, ...]) -> dict[Subject, list[Series]]:
    groups: dict[Subject, list[Series]] = {}
    for s in series:
        groups.setdefault(subject_of(s.labels, group_by), []).append(s)
    return groups


def _split_subjects(subject: Subject, members: list[Series]) -> list[tuple[Subject, Series]]:
    """One entry per series; series sharing a subject get the labels that tell them apart
    (e.g. ``instance``) added to their subject."""
    if len(members) == 1:
        return [(subject, members[0])]
    keys = sorted({k for s in members for k in s.labels})
    differing = [k for k in keys if len({s.labels.get(k, "") for s in members}) > 1]
    return [(subject + tuple((k, s.labels.get(k, "")) for k in differing), s) for s in members]


def _sum_subjects(
    subject: Subject, members: list[Series], sum_over: tuple[str, ...]
) -> list[tuple[Subject, list[Series]]]:
    """The members of one subject by exporter: series that differ only in the ``sum_over``
    labels are summed together; those that also differ in another label (``instance``, ``job``:
    another process) make a subject of their own, with the labels that tell them apart added."""
    apart: dict[tuple[tuple[str, str], ...], list[Series]] = {}
    for s in members:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k not in sum_over))
        apart.setdefault(key, []).append(s)
    if len(apart) == 1:
        return [(subject, members)]
    keys = sorted({k for key in apart for k, _ in key})
    differing = [k for k in keys if len({dict(key).get(k, "") for key in apart}) > 1]
    return [
        (subject + tuple((k, dict(key).get(k, "")) for k in differing), group)
        for key, group in sorted(apart.items())
    ]


def _sum_members(members: list[Series]) -> tuple[Series, str | None]:
    """The sum of ``members`` at their shared sample times, and a note when the times had to be
    aligned.

    Series of one exporter share scrape timestamps exactly; a member without a sample at one of
    those times counts as 0 there (the sidecar publishes states other than ``established`` only
    while non-zero). When the members' times do not coincide (different scrapes), every sample
    is counted at the nearest sample time of the member with the most samples, if within half
    its median interval; samples farther away are left out, and the note says so."""
    if len(members) == 1:
        return members[0], None
    name = members[0].name
    common = {
        k: v for k, v in members[0].labels.items() if all(m.labels.get(k) == v for m in members)
    }
    grid = np.unique(np.concatenate([m.t for m in members]))
    reference = max(members, key=lambda m: m.t.size)
    spacing = _sample_interval(reference.t)
    gaps = np.diff(grid)
    if spacing <= 0 or gaps.size == 0 or float(np.min(gaps)) >= spacing / 2:
        total = np.zeros(grid.size)
        for m in members:
            total[np.searchsorted(grid, m.t)] += m.v
        return Series(name, common, grid, total), None
    grid = reference.t
    total = np.zeros(grid.size)
    dropped = 0
    for m in members:
        right = np.clip(np.searchsorted(grid, m.t), 1, grid.size - 1)
        left = right - 1
        nearest = np.where(np.abs(m.t - grid[left]) <= np.abs(grid[right] - m.t), left, right)
        close = np.abs(grid[nearest] - m.t) <= spacing / 2
        dropped += int(np.sum(~close))
        # one sample per member and time: the last one wins when two fall on the same time
        values = np.full(grid.size, np.nan)
        values[nearest[close]] = m.v[close]
        total += np.nan_to_num(values)
    note = (
        f"the summed series were not sampled at the same times: each sample counted at the "
        f"nearest sample time of {reference.label_text() or reference.name}"
    )
    if dropped:
        note += f" ({dropped} sample(s) farther than half an interval left out)"
    return Series(name, common, grid, total), note


class _Companions:
    """The candidate series of one role (start time, restarts, up), indexed to find the one of
    the same process as a target: all shared labels equal, most shared labels wins, the first
    candidate among equals.

    Why: scanning every candidate for every subject was O(subjects x series) per rule (a fleet
    of 1,000 services compared a million label sets). The candidates are grouped by their
    label names; within a group the shared names are the same for every target with the same
    names, so one dictionary per (group, shared names) answers each target in one look-up per
    group."""

    def __init__(self, candidates: list[Series]) -> None:
        self._groups: dict[frozenset[str], list[tuple[int, Series]]] = {}
        for index, c in enumerate(candidates):
            self._groups.setdefault(frozenset(c.labels), []).append((index, c))
        self._tables: dict[
            tuple[frozenset[str], frozenset[str]],
            tuple[tuple[str, ...], dict[tuple[str, ...], tuple[int, Series]]],
        ] = {}

    def of(self, target: Series) -> Series | None:
        names = frozenset(target.labels)
        best: tuple[int, int, Series] | None = None  # (shared names, index, series)
        for group, members in self._groups.items():
            shared = group & names
            known = self._tables.get((group, shared))
            if known is None:
                keys = tuple(sorted(shared))
                table: dict[tuple[str, ...], tuple[int, Series]] = {}
                for index, c in members:
                    table.setdefault(tuple(c.labels[k] for k in keys), (index, c))
                known = self._tables[(group, shared)] = (keys, table)
            keys, table = known
            found = table.get(tuple(target.labels[k] for k in keys))
            if found is not None and (best is None or (len(keys), -found[0]) > (best[0], -best[1])):
                best = (len(keys), found[0], found[1])
        return best[2] if best is not None else None


class _BySubject:
    """The series of each role grouped by subject on first use: one pass per role and rule
    instead of one filter over every series per subject."""

    def __init__(self, data: RoleData) -> None:
        self._data = data
        self._groups: dict[tuple[str, tuple[str, ...]], dict[Subject, list[Series]]] = {}

    def of(self, role: str, group_by: tuple[str, ...], subject: Subject) -> list[Series]:
        key = (role, group_by)
        if key not in self._groups:
            self._groups[key] = _group(self._data.get(role, []), group_by)
        return self._groups[key].get(subject, [])


def _counted(count: int, plural: str) -> str:
    """``1 sample``, ``3 samples``: a count with its noun in the right number."""
    if count == 1 and plural.endswith("s"):
        return f"1 {plural[:-1]}"
    return f"{count} {plural}"


def _sample_interval(t: FloatArray) -> float:
    """The median interval between successive samples (0 with fewer than two)."""
    # slopes.median: np.median's figure without its fixed cost (the sliding windows of a
    # counter-ratio rule ask for it once per scenario and window)
    return median(t[1:] - t[:-1]) if t.size > 1 else 0.0


def _not_enough(
    rule: Rule, have_points: int, have_seconds: float, unit: str, interval: float = 0.0
) -> str | None:
    """None when ``have_points`` over ``have_seconds`` (first to last sample) meet the rule's
    minimum, else the reason. A span short of ``min_duration`` by at most one sample
    ``interval`` counts as the whole: n samples stand for n intervals but span n - 1, so a
    10-minute run scraped every 15 s spans 9m45s."""
    enough_time = have_seconds + max(interval, 0.0) >= rule.min_duration_seconds
    if have_points >= rule.min_points and enough_time:
        return None
    slack = f" (first to last sample, {format_duration(interval)} short counts)" if interval else ""
    return (
        f"not enough data: {_counted(have_points, unit)} over "
        f"{format_duration(max(have_seconds, 0))} after warm-up, needs {rule.min_points} over "
        f"{format_duration(rule.min_duration_seconds)}{slack}"
    )


# -- kinds ------------------------------------------------------------------------------------
def estimate_rule_growth(
    rule: Rule, t: FloatArray, v: FloatArray, *, restarts: FloatArray | None = None
) -> GrowthEstimate:
    """The growth estimate of a ``slope`` rule on one series, with the rule's window,
    confidence, warm-up and ``min_points``: the one estimate behind soak-analyze's verdict and
    the pytest plugin's ``soak_monitor`` (which passes the memory rule with its own warm-up)."""
    return estimate_growth(
        t,
        v,
        restarts=restarts,
        window_seconds=rule.window_seconds,
        confidence=rule.confidence,
        warmup_seconds=rule.warmup_seconds,
        warmup_auto=rule.warmup_auto,
        max_warmup_fraction=rule.max_warmup_fraction,
        min_points=rule.min_points,
    )


def shortest_run_seconds(rule: Rule) -> float:
    """The shortest series (seconds, one process segment) on which ``rule`` can be conclusive at
    all: its ``min_duration`` after the fixed warm-up, which is capped at
    ``max_warmup_fraction`` of the segment. For a planned run shorter than this, every verdict
    of the rule will be inconclusive; ``soak run`` warns at start."""
    need = rule.min_duration_seconds
    if rule.kind == "quantile_change":
        need = max(need, 2.0 * rule.window_seconds)
    warm = rule.warmup_seconds
    if rule.kind != "slope" or not warm:
        return need + warm
    keep = 1.0 - rule.max_warmup_fraction
    return max(need + warm, need / keep if keep > 0 else math.inf) if need else 0.0


def time_needed(
    rule: Rule, t: FloatArray, v: FloatArray, *, restarts: FloatArray | None = None
) -> float | None:
    """How many more seconds of samples the ``slope`` rule needs on this series to be
    conclusive: 0 when it already passes or fails, None when it cannot be estimated (too little
    data to see the noise, or a slope right at the threshold). ``t``/``v`` are the samples
    (Unix seconds, values in the base unit: bytes), ``restarts`` the restart times if known.
    The same figure as ``details["more_seconds_needed"]`` of the rule's result on these
    samples (soak-analyze reports it; ``soak run`` shows it in its progress)."""
    estimate = estimate_rule_growth(rule, t, v, restarts=restarts)
    status, _ = _slope_verdict(rule, estimate)
    return _more_seconds(rule, estimate, status)


def _more_seconds(rule: Rule, estimate: GrowthEstimate, status: Status) -> float | None:
    """``more_seconds_needed`` for a slope verdict of ``status`` (0 once conclusive)."""
    if status in ("pass", "fail"):
        return 0.0
    short = max(rule.min_duration_seconds - estimate.covered_seconds, 0.0)
    if estimate.fit is None or estimate.points < rule.min_points:
        if estimate.mode == "troughs" or estimate.cycle is not None:
            more = estimate.seconds_needed(rule.threshold_base)
            return None if more is None else max(more, short)
        if estimate.points >= 2 and estimate.judged_seconds > 0:
            # points come at the rate seen so far
            rate = estimate.points / estimate.judged_seconds
            by_points = max(rule.min_points - estimate.points, 0) / rate
            return max(short, by_points)
        return short if short > 0 and estimate.points else None
    more = estimate.seconds_needed(rule.threshold_base)
    if more is None:
        return None
    return max(more, short)


def _slope_verdict(rule: Rule, estimate: GrowthEstimate) -> tuple[Status, str]:
    """Status and reason of a slope rule on its estimate (no notes on restarts and projection)."""
    limit = rule.threshold_base
    cycle = estimate.cycle
    fit = estimate.fit
    unit_t = f"{rule.threshold:g} {rule.unit}"
    if estimate.covered_seconds < rule.min_duration_seconds:
        return "inconclusive", (
            f"not enough data: {_counted(estimate.points, 'window points')} (from "
            f"{_counted(estimate.judged_samples, 'samples')}) over "
            f"{format_duration(max(estimate.covered_seconds, 0.0))} after warm-up, needs "
            f"{rule.min_points} over {format_duration(rule.min_duration_seconds)}"
        )
    if estimate.mode == "troughs" and cycle is not None:
        period = format_duration(cycle.period_seconds)
        within = _fmt(rule, cycle.within_slope_per_hour)
        decide = (
            f"the start-time series (restarts) or a run holding {MIN_CYCLES} cycles would decide"
        )
        if fit is None:
            return "inconclusive", (
                f"climbs {within} and fell back {_counted(cycle.drops, 'times')}: one cycle "
                "seen, a bounded cycle or a leak reset by a restart; " + decide
            )
        slope, lower, upper = (
            estimate.slope_per_hour,
            estimate.lower_per_hour,
            estimate.upper_per_hour,
        )
        troughs = (
            f"troughs {_fmt(rule, slope)} ({rule.confidence:.0%} interval "
            f"{_show(rule, lower):.3g}..{_show(rule, upper):.3g}) over "
            f"{_counted(cycle.troughs, 'cycles')} of about {period}"
        )
        if estimate.settling is not None:
            troughs += " beside a warm-up still settling under the cycle"
        if lower > limit:
            return "fail", f"{troughs}: the floor rises, lower bound above {unit_t}"
        if cycle.enough and upper < limit:
            return "pass", f"{troughs}: a sawtooth with a flat floor, upper bound below {unit_t}"
        if cycle.enough:
            return "inconclusive", f"{troughs} straddles {unit_t}: needs more cycles"
        return "inconclusive", (
            f"{troughs}; climbs {within} within each cycle and falls back: with only "
            f"{_counted(cycle.troughs, 'cycles')} a bounded cycle or a leak reset by restarts; "
            + decide
        )
    short = _not_enough(rule, estimate.points, estimate.covered_seconds, "window points")
    if short or fit is None:
        if estimate.points and estimate.points < rule.min_points:
            short = (
                f"not enough data: {_counted(estimate.points, 'window points')} (from "
                f"{_counted(estimate.judged_samples, 'samples')}) over "
                f"{format_duration(max(estimate.judged_seconds, 0.0))} after warm-up, needs "
                f"{rule.min_points}"
            )
        return "inconclusive", short or "no slope"
    slope, lower, upper = estimate.slope_per_hour, estimate.lower_per_hour, estimate.upper_per_hour
    interval = (
        f"{_fmt(rule, slope)} ({rule.confidence:.0%} interval {_show(rule, lower):.3g}"
        f"..{_show(rule, upper):.3g}) over {format_duration(estimate.judged_seconds)} "
        f"({_counted(estimate.points, 'window points')} from "
        f"{_counted(estimate.judged_samples, 'samples')})"
    )
    if upper < limit:
        status: Status = "pass"
        reason = f"slope {interval}, upper bound below {unit_t}"
    elif lower > limit:
        status = "fail"
        reason = f"slope {interval}, lower bound above {unit_t}"
    else:
        status = "inconclusive"
        reason = f"slope {interval} straddles {unit_t}"
    regimes = estimate.regimes
    if len(regimes) > 1 and estimate.segments == 1:
        judged = [r for r in regimes if r.judged]
        if judged and len(judged) < len(regimes):
            reason += (
                f"; judged on the last regime of {len(regimes)} found, from "
                f"{format_duration(judged[0].start - estimate.origin)} into the series"
            )
        earlier = [r for r in regimes if not r.judged and r.lower_per_hour > limit]
        if earlier:
            grew = earlier[-1]
            reason += (
                f"; an earlier regime grew {_fmt(rule, grew.slope_per_hour)} until "
                f"{format_duration(grew.end - estimate.origin)} into the series and stopped "
                "(reported, not judged)"
            )
        rising = [r for r in judged[1:] if r.lower_per_hour > limit]
        if status == "pass" and rising:
            status = "inconclusive"
            reason += (
                f"; but the last {format_duration(rising[-1].end - rising[-1].start)} rise "
                f"{_fmt(rule, rising[-1].slope_per_hour)}, too short to judge on its own"
            )
    falls = estimate.between_falls
    if status == "pass" and falls is not None and falls[1] > limit:
        status = "inconclusive"
        reason += (
            f"; but it falls back {_counted(falls[2], 'times')} and grows "
            f"{_fmt(rule, falls[0])} between the falls: a leak reset by restarts nobody "
            "reported? the start-time series (restarts) would decide"
        )
    settling = estimate.settling
    # a term seen only with the warm-up's last part must account for the fail: the judged
    # slope's lower bound less what the fitted tail puts on it reaches the threshold (a leak
    # whose window starts minutes after a restart has a small tail left, and the wide
    # interval beside it lost 21 of 29 fails of a 1.5x leak over 2 h; with this, 7)
    explains = (
        not estimate.settling_from_warmup
        or estimate.lower_per_hour - estimate.settling_tail_per_hour <= limit
    )
    if status == "fail" and settling is not None and settling[1] <= limit and explains:
        status = "inconclusive"
        left, low, high = settling
        seen = (
            f" (seen from the last {SETTLING_LEAD:.0%} of the warm-up on)"
            if estimate.settling_from_warmup
            else ""
        )
        reason += (
            f"; but it levels off like a warm-up still settling{seen}: the growth left once it "
            f"has settled is {_fmt(rule, left)} ({_show(rule, low):.3g}..{_show(rule, high):.3g})"
        )
    if status == "fail" and estimate.slowing is not None and estimate.slowing[1] <= limit:
        status = "inconclusive"
        early, late = estimate.slowing
        reason += (
            f"; but the growth slows from {_fmt(rule, early)} to {_fmt(rule, late)} across it: "
            "a warm-up still settling, or a leak coming to an end"
        )
    if estimate.step_times:
        reason += f"; {_counted(len(estimate.step_times), 'level steps')} cut out"
    if estimate.warmup_ends and estimate.segments == 1:
        reason += (
            f"; the first {format_duration(estimate.warmup_ends[0] - estimate.origin)} read as "
            "warm-up (not judged)"
        )
    return status, reason


def _slope(
    rule: Rule,
    subject: Subject,
    value: Series,
    companions: Mapping[str, _Companions],
) -> Result:
    labels = dict(subject)

    def companion(role: str) -> tuple[FloatArray, FloatArray] | None:
        found = companions[role].of(value)
        return (found.t, found.v) if found is not None else None

    restarts = restart_times(companion("start_time"), companion("restarts"), companion("up"))
    t, v = value.t, value.v
    estimate = estimate_rule_growth(rule, t, v, restarts=restarts)
    troughs = estimate.mode == "troughs"
    details: dict[str, Any] = {
        "slope": _show(rule, estimate.slope_per_hour),
        "lower": _show(rule, estimate.lower_per_hour),
        "upper": _show(rule, estimate.upper_per_hour),
        "confidence": rule.confidence,
        "method": (
            "least squares on the troughs (one level per segment)"
            if troughs
            else "blocked Theil-Sen, Sen interval widened by the residuals' long-run variance"
        ),
        "mode": estimate.mode,
        "aggregate": estimate.aggregate,
        "window_seconds": estimate.window_seconds,
        "points": estimate.points,
        "samples": int(t.size),
        "judged_samples": estimate.judged_samples,
        "analysed_seconds": estimate.analysed_seconds,
        "covered_seconds": estimate.covered_seconds,
        "judged_start": estimate.judged_start,
        "judged_seconds": estimate.judged_seconds,
        "variance_factor": estimate.variance_factor,
        "noise_sd": estimate.noise,
        "segments": estimate.segments,
        "restarts": [float(x) for x in restarts],
        "warmup_ends": estimate.warmup_ends,
        "warmup_capped_seconds": estimate.warmup_capped,
        "warmup_shared_seconds": estimate.warmup_shared,
        "segment_settling": None
        if estimate.segment_settling is None
        else dict(
            zip(
                ("tau_seconds", "slope", "lower", "upper"),
                (
                    estimate.segment_settling[0],
                    *(_show(rule, v) for v in estimate.segment_settling[1:]),
                ),
                strict=True,
            )
        ),
        "steps": estimate.step_times,
        "drops": estimate.drop_times,
        "segment_slopes": [
            None if s is None else _show(rule, s) for s in estimate.segment_slopes_per_hour
        ],
        "segments_found": [
            {
                "start": r.start,
                "end": r.end,
                "slope_per_hour": _show(rule, r.slope_per_hour),
                "lower": _show(rule, r.lower_per_hour),
                "upper": _show(rule, r.upper_per_hour),
                "points": r.points,
                "judged": r.judged,
            }
            for r in estimate.regimes
        ],
        "cycle": None
        if estimate.cycle is None
        else {
            "period_seconds": estimate.cycle.period_seconds,
            "drops": estimate.cycle.drops,
            "troughs": estimate.cycle.troughs,
            "within_slope": _show(rule, estimate.cycle.within_slope_per_hour),
            "enough": estimate.cycle.enough,
            "min_cycles": MIN_CYCLES,
        },
        "detectable_slope": _finite_or_none(_show(rule, estimate.detectable_per_hour)),
        "between_falls": None
        if estimate.between_falls is None
        else {
            "slope": _show(rule, estimate.between_falls[0]),
            "lower": _show(rule, estimate.between_falls[1]),
            "drops": estimate.between_falls[2],
        },
        "settling": None
        if estimate.settling is None
        else [_show(rule, v) for v in estimate.settling],
        "slowing": None
        if estimate.slowing is None
        else [_show(rule, estimate.slowing[0]), _show(rule, estimate.slowing[1])],
    }
    evidence = _slope_evidence(rule, value, estimate, restarts)
    if t.size == 0:
        details["more_seconds_needed"] = None
        return _result(
            rule, labels, "inconclusive", "no samples in the range", None, details, evidence
        )
    status, reason = _slope_verdict(rule, estimate)
    more = _more_seconds(rule, estimate, status)
    details["more_seconds_needed"] = more
    if estimate.warmup_capped is not None:
        reason += (
            f"; the fixed warm-up of {format_duration(rule.warmup_seconds)} was capped at "
            f"{format_duration(estimate.warmup_capped)} ({rule.max_warmup_fraction:.0%} of "
            "a segment)"
        )
        if estimate.warmup_shared is not None:
            reason += (
                f", in segments begun by a restart at {format_duration(estimate.warmup_shared)}"
                " (where their shared shape settles)"
            )
    if estimate.segment_settling is not None:
        reason += (
            f"; each restart segment settles after its start (tau ~ "
            f"{estimate.segment_settling[0]:.0f} s); judged on the slope beside it"
        )
    if estimate.segments > 1:
        reason += f"; {_counted(estimate.segments - 1, 'restarts')}, judged within segments"
    if status == "inconclusive":
        if more is not None and more > 0:
            reason += f": needs about {format_duration(more)} more"
        if estimate.fit is not None and math.isfinite(estimate.detectable_per_hour):
            reason += f" (resolves {_fmt(rule, estimate.detectable_per_hour)} now)"
    figure = estimate.slope_per_hour if estimate.fit is not None else None
    if status == "inconclusive" and (estimate.fit is None or estimate.points < rule.min_points):
        figure = None if not troughs or estimate.fit is None else figure
    projection = _projection(rule, estimate) if estimate.fit is not None else None
    if projection:
        details.update(projection)
    if projection and status != "pass":
        reason += (
            f"; reaches the limit {projection['limit']:.4g} in about "
            f"{format_duration(projection['projected_seconds_to_limit'])} at this rate"
        )
    return _result(rule, labels, status, reason, figure, details, evidence)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _projection(rule: Rule, estimate: Any) -> dict[str, float] | None:
    """When the rule has a ``limit``: the fitted level at the last point and how long until the
    growth reaches the limit at the estimated slope (None when not growing)."""
    fit = estimate.fit
    if rule.limit is None or fit is None or not fit.slope > 0 or not estimate.blocks:
        return None
    last_block = len(estimate.blocks) - 1
    last = estimate.blocks[last_block]
    if last.stop - last.start < 1 or last_block >= len(fit.intercepts):
        return None
    x_last = float(estimate.points_t[last.stop - 1] - estimate.origin)
    level = fit.slope * x_last + fit.intercepts[last_block]
    return {
        "limit": rule.limit,
        "level": level,
        "projected_seconds_to_limit": max((rule.limit - level) / fit.slope, 0.0),
    }


def _slope_evidence(
    rule: Rule, value: Series, estimate: GrowthEstimate, restarts: FloatArray
) -> Evidence:
    evidence = Evidence(
        series=[(value.label_text() or value.name, value.t, value.v)],
        points=(estimate.points_t, estimate.points_y),
        y_label=value.name,
        marks=[("restart", float(x)) for x in restarts]
        + [("step", float(x)) for x in estimate.step_times]
        + [("regime", r.start) for r in estimate.regimes[1:]]
        + ([("drop", x) for x in estimate.drop_times] if len(estimate.drop_times) <= 20 else []),
    )
    # every regime found, with its own slope, beside the judged fit
    for regime in estimate.regimes:
        if regime.judged or not np.isfinite(regime.slope_per_hour):
            continue
        inside = (value.t >= regime.start) & (value.t <= regime.end)
        if np.count_nonzero(inside) < 2:
            continue
        rt, rv = value.t[inside], value.v[inside]
        level = float(np.median(rv - regime.slope_per_hour / 3600.0 * (rt - rt[0])))
        ends = np.array([regime.start, regime.end])
        evidence.lines.append(
            (
                f"earlier regime {_fmt(rule, regime.slope_per_hour)}",
                ends,
                level + regime.slope_per_hour / 3600.0 * (ends - rt[0]),
            )
        )
    fit = estimate.fit
    if fit is None:
        return evidence
    blocks = estimate.blocks
    intercepts = list(fit.intercepts)
    for index, block in enumerate(blocks):
        pt = estimate.points_t[block]
        if pt.size < 2 or index >= len(intercepts):
            continue
        x = pt - estimate.origin
        centre_x = float(np.mean(x))
        centre_y = fit.slope * centre_x + intercepts[index]
        line = fit.slope * x + intercepts[index]
        evidence.lines.append(("fitted slope" if index == 0 else "", pt, line))
        low = centre_y + fit.lower * (x - centre_x)
        high = centre_y + fit.upper * (x - centre_x)
        evidence.bands.append((pt, np.minimum(low, high), np.maximum(low, high)))
    start = float(value.t[0]) if value.t.size else 0.0
    for end in estimate.warmup_ends:
        evidence.spans.append(("warm-up", start, end))
    if rule.warmup_seconds and value.t.size:
        evidence.spans.append(("warm-up", start, start + rule.warmup_seconds))
    return evidence


def _counter_ratio(
    rule: Rule,
    subject: Subject,
    start: float,
    end: float,
    by_subject: _BySubject,
) -> Result:
    labels = dict(subject)
    begin = start + rule.warmup_seconds
    denominators = by_subject.of("denominator", rule.group_by, subject)
    numerators = by_subject.of("numerator", rule.group_by, subject)
    same_metric = rule.metrics["numerator"].metric == rule.metrics["denominator"].metric
    if not numerators and not same_metric:
        return _result(rule, labels, "inconclusive", "the numerator series are missing")
    denominator = sum(counter_increase(s.t, s.v, begin, end) for s in denominators)
    numerator = sum(counter_increase(s.t, s.v, begin, end) for s in numerators)
    inside = [s.between(begin, end) for s in denominators]
    samples = max((s.t.size for s in inside), default=0)
    covered = max((float(s.t[-1] - s.t[0]) for s in inside if s.t.size), default=0.0)
    details = {
        "numerator": numerator,
        "denominator": denominator,
        "samples": samples,
        "analysed_seconds": covered,
        "series": len(denominators),
    }
    evidence = Evidence(
        # every series: the report plots the ratio judged, which needs all of them
        series=[(s.label_text() or s.name, s.t, s.v) for s in (denominators + numerators)],
        spans=[("warm-up", start, begin)] if rule.warmup_seconds else [],
        y_label="counter",
    )
    interval = max((_sample_interval(s.t) for s in inside), default=0.0)
    short = _not_enough(rule, samples, covered, "samples", interval)
    if short:
        return _result(rule, labels, "inconclusive", short, None, details, evidence)
    if denominator <= 0:
        return _result(
            rule,
            labels,
            "inconclusive",
            "the denominator did not increase",
            None,
            details,
            evidence,
        )
    ratio = numerator / denominator
    status, reason = _judge(rule, ratio, "ratio")
    return _result(
        rule,
        labels,
        status,
        f"{reason} ({numerator:.6g} / {denominator:.6g})",
        ratio,
        details,
        evidence,
    )


def _variation(
    rule: Rule, subject: Subject, members: list[Series], start: float, end: float
) -> Result:
    """The coefficient of variation of one series, or of the sum of ``members`` (the series
    that differ only in the rule's ``sum_over`` labels) at each sample time."""
    labels = dict(subject)
    begin = start + rule.warmup_seconds
    series, note = _sum_members(members)
    inside = series.between(begin, end)
    covered = float(inside.t[-1] - inside.t[0]) if inside.t.size else 0.0
    details: dict[str, Any] = {"samples": int(inside.t.size), "analysed_seconds": covered}
    plotted = [(series.label_text(), series.t, series.v)]
    if len(members) > 1:
        details["summed"] = sorted(m.label_text() for m in members)
        details["aligned_to_nearest"] = note is not None
        plotted = [(f"sum of {', '.join(rule.sum_over)}", series.t, series.v)] + [
            (m.label_text(), m.t, m.v) for m in members[:7]
        ]
    evidence = Evidence(
        series=plotted,
        spans=[("warm-up", start, begin)] if rule.warmup_seconds else [],
        y_label=series.name,
    )

    def with_note(reason: str) -> str:
        return f"{reason}; {note}" if note else reason

    short = _not_enough(rule, inside.t.size, covered, "samples", _sample_interval(inside.t))
    if short:
        return _result(rule, labels, "inconclusive", with_note(short), None, details, evidence)
    cv = coefficient_of_variation(inside.v)
    details.update(mean=float(np.mean(inside.v)), std=float(np.std(inside.v, ddof=1)))
    if math.isnan(cv):
        return _result(
            rule,
            labels,
            "inconclusive",
            with_note("mean of 0 with spread: no coefficient"),
            None,
            details,
            evidence,
        )
    what = f"coefficient of variation of the sum over {', '.join(rule.sum_over)}"
    status, reason = _judge(rule, cv, what if len(members) > 1 else "coefficient of variation")
    return _result(rule, labels, status, with_note(reason), cv, details, evidence)


# -- latency: a change that must persist ---------------------------------------------------------
# Each window of the rule is read as this many sub-windows (fewer when they would hold fewer
# than SUBWINDOW_MIN_OBSERVATIONS requests or fewer than SUBWINDOW_MIN_SAMPLES scrapes).
SUBWINDOWS_PER_WINDOW = 6
SUBWINDOW_MIN_OBSERVATIONS = 20
SUBWINDOW_MIN_SAMPLES = 4
# The late level is read over at most this many windows at the end of the range, and a change
# counts as sustained only once that stretch is at least SUSTAINED_WINDOWS windows long: a
# burst no longer than one window then covers less than half of it.
LATE_WINDOWS = 3


def _histogram(buckets: list[Series]) -> WindowedHistogram:
    return WindowedHistogram((s.labels.get("le", "nan"), s.t, s.v) for s in buckets)


def _window_quantile(buckets: list[Series], q: float, a: float, b: float) -> tuple[float, float]:
    """The q-quantile and the observation count of the histogram's increase within [a, b]."""
    histogram = _histogram(buckets)
    if not histogram:
        return math.nan, 0.0
    return histogram.quantile(q, a, b)


def _subwindows(histogram: WindowedHistogram, window: float, observations: float) -> int:
    """How many sub-windows each window is read as: SUBWINDOWS_PER_WINDOW, fewer when a
    sub-window would hold too few requests (``observations`` per window) or scrapes."""
    step = histogram.sample_seconds
    for parts in (SUBWINDOWS_PER_WINDOW, 3, 2):
        enough_samples = step <= 0 or window / parts >= SUBWINDOW_MIN_SAMPLES * step
        if enough_samples and observations / parts >= SUBWINDOW_MIN_OBSERVATIONS:
            return parts
    return 1


def _quantile_change(
    rule: Rule, subject: Subject, buckets: list[Series], start: float, end: float
) -> Result:
    """p95 (the rule's quantile) sustained at the end against the first window after warm-up.

    Both levels are medians of sub-window quantiles (a window read as SUBWINDOWS_PER_WINDOW
    parts): the baseline over the first window after warm-up, the late level over the last
    LATE_WINDOWS windows (less when the range is shorter). A burst shorter than a window moves
    fewer than half of the late sub-windows and so not their median; a change that lasts moves
    it. The change fails only when the late stretch is at least SUSTAINED_WINDOWS windows long
    (else it cannot be told from a burst: inconclusive), and, with ``min_increase``, when the
    late level is also that much above the baseline. The interval is the sign test's for the
    median of the late sub-windows, against the baseline level."""
    labels = dict(subject)
    q = rule.quantile if rule.quantile is not None else 0.95
    name = f"p{q * 100:g}"
    begin = start + rule.warmup_seconds
    window = rule.window_seconds
    histogram = _histogram(buckets)
    first = (begin, begin + window)
    last = (end - window, end)
    edges = np.arange(begin, end - window + 1e-9, window)
    if histogram:
        first_q, first_n = histogram.quantile(q, *first)
        last_q, last_n = histogram.quantile(q, *last)
        trail_q, _ = histogram.quantiles(q, edges, edges + window)
    else:
        first_q, first_n, last_q, last_n = math.nan, 0.0, math.nan, 0.0
        trail_q = np.full(edges.size, math.nan)
    # the quantile over consecutive windows, for the plot and the sliding-window view
    evidence = Evidence(
        series=[(f"{name} per {format_duration(window)}", edges + window / 2, trail_q)],
        spans=[("first window", *first), ("last window", *last)],
        y_label="seconds",
    )
    details: dict[str, Any] = {
        "quantile": q,
        "first_window": list(first),
        "last_window": list(last),
        "first": first_q,
        "last": last_q,
        "first_observations": first_n,
        "last_observations": last_n,
        "windows": [float(y) for y in trail_q],
    }
    covered = end - begin
    if covered < max(2 * window, rule.min_duration_seconds):
        reason = (
            f"not enough data: {format_duration(max(covered, 0))} after warm-up, needs two "
            f"windows of {format_duration(window)} (and at least "
            f"{format_duration(rule.min_duration_seconds)})"
        )
        return _result(rule, labels, "inconclusive", reason, None, details, evidence)
    if min(first_n, last_n) < rule.min_points:
        reason = (
            f"not enough observations: {first_n:.0f} in the first and {last_n:.0f} in the last "
            f"window, needs {rule.min_points} in each"
        )
        return _result(rule, labels, "inconclusive", reason, None, details, evidence)
    parts = _subwindows(histogram, window, min(first_n, last_n))
    part = window / parts
    late_seconds = min(LATE_WINDOWS * window, end - first[1])
    late_count = max(math.floor(late_seconds / part + 1e-9), 1)
    late_ends = end - part * np.arange(late_count)[::-1]
    late_q, _ = histogram.quantiles(q, late_ends - part, late_ends)
    base_starts = begin + part * np.arange(parts)
    base_q, _ = histogram.quantiles(q, base_starts, base_starts + part)
    late_q, base_q = late_q[np.isfinite(late_q)], base_q[np.isfinite(base_q)]
    late_span = (float(late_ends[0] - part), end)
    details.update(
        method=(
            f"median {name} of {format_duration(part)} sub-windows: the last "
            f"{format_duration(late_count * part)} against the first window"
        ),
        subwindow_seconds=part,
        late_window=list(late_span),
        late_subwindows=[float(y) for y in late_q],
        baseline_subwindows=[float(y) for y in base_q],
    )
    evidence.spans.append(("late stretch", *late_span))
    baseline = float(np.median(base_q)) if base_q.size else math.nan
    late = float(np.median(late_q)) if late_q.size else math.nan
    details.update(baseline=baseline, late=late)
    if not baseline > 0 or not math.isfinite(late):
        return _result(
            rule, labels, "inconclusive", "first-window quantile is 0", None, details, evidence
        )
    change = late / baseline - 1.0
    increase = late - baseline
    low_q, high_q = median_interval(late_q, rule.confidence)
    lower, upper = low_q / baseline - 1.0, high_q / baseline - 1.0
    floor = rule.min_increase_seconds
    details.update(
        increase=increase,
        min_increase=floor,
        lower=_show(rule, lower),
        upper=_show(rule, upper),
        confidence=rule.confidence,
        sustained_seconds=late_count * part,
    )
    last_change = last_q / first_q - 1.0 if first_q > 0 else math.nan
    details["last_window_change"] = _show(rule, last_change) if math.isfinite(last_change) else None
    over = f"over the last {format_duration(late_count * part)}"
    levels = (
        f"(median {format_duration(part)} {name} {baseline:.4g}s -> {late:.4g}s {over}, "
        f"{rule.confidence:.0%} interval {_show(rule, lower):.3g}..{_show(rule, upper):.3g} "
        f"{rule.unit})"
    )
    if rule.passes(change) or (floor > 0 and rule.lower_is_better and increase < floor):
        if rule.passes(change):
            status, reason = _judge(rule, change, f"{name} change")
            reason += f" {levels}"
        else:
            # Past the relative threshold but by less than the floor: jitter or interpolation.
            reason = (
                f"{name} change {_fmt(rule, change)} but only {_milliseconds(increase)} "
                f"(< {_milliseconds(floor, signed=False)}) {levels}"
            )
        burst = (
            math.isfinite(last_change)
            and not rule.passes(last_change)
            and (floor <= 0 or last_q - first_q >= floor)
        )
        if burst:
            reason += (
                f"; the last {format_duration(window)} alone reads {_fmt(rule, last_change)}: "
                "a burst, not sustained"
            )
        return _result(rule, labels, "pass", reason, change, details, evidence)
    if late_count * part < SUSTAINED_WINDOWS * window - 1e-6:
        needed = rule.warmup_seconds + (1 + SUSTAINED_WINDOWS) * window
        reason = (
            f"{name} change {_fmt(rule, change)} {levels}, but a change over less than "
            f"{SUSTAINED_WINDOWS} windows cannot be told from a burst: needs a range of "
            f"{format_duration(needed)}"
        )
        return _result(rule, labels, "inconclusive", reason, change, details, evidence)
    status, reason = _judge(rule, change, f"{name} change")
    reason += f", sustained {levels}"
    return _result(rule, labels, status, reason, change, details, evidence)


def _milliseconds(seconds: float, *, signed: bool = True) -> str:
    return f"{seconds * 1000:{'+' if signed else ''}.3g} ms"


def _increase(
    rule: Rule,
    subject: Subject,
    value: Series | None,
    start: float,
    end: float,
    by_subject: _BySubject,
) -> Result:
    labels = dict(subject)
    counter = 0.0
    samples = 0
    covered = 0.0
    interval = 0.0
    series_for_plot = []
    if value is not None:
        inside = value.between(start, end)
        counter = counter_increase(inside.t, inside.v, start, end)
        samples = int(inside.t.size)
        covered = float(inside.t[-1] - inside.t[0]) if inside.t.size else 0.0
        interval = _sample_interval(inside.t)
        series_for_plot.append((value.label_text(), value.t, value.v))
    starts_found = by_subject.of("start_time", rule.group_by, subject)
    start_changes = 0
    for s in starts_found:
        inside = s.between(start, end)
        start_changes += len(restart_times((inside.t, inside.v)))
        samples = max(samples, int(inside.t.size))
        if inside.t.size:
            covered = max(covered, float(inside.t[-1] - inside.t[0]))
            interval = max(interval, _sample_interval(inside.t))
    count = max(counter, float(start_changes))
    details = {
        "counter_increase": counter,
        "start_time_changes": start_changes,
        "samples": samples,
        "analysed_seconds": covered,
    }
    evidence = Evidence(series=series_for_plot, y_label="restarts")
    short = _not_enough(rule, samples, covered, "samples", interval)
    if short:
        return _result(rule, labels, "inconclusive", short, None, details, evidence)
    status, reason = _judge(rule, count, "restarts")
    return _result(rule, labels, status, reason, count, details, evidence)


def _failure_fraction(
    rule: Rule, subject: Subject, series: Series, start: float, end: float
) -> Result:
    labels = dict(subject)
    begin = start + rule.warmup_seconds
    inside = series.between(begin, end)
    covered = float(inside.t[-1] - inside.t[0]) if inside.t.size else 0.0
    failed = int(np.sum(inside.v < 0.5))
    details = {"samples": int(inside.t.size), "failed_samples": failed, "analysed_seconds": covered}
    evidence = Evidence(series=[(series.label_text(), series.t, series.v)], y_label=series.name)
    short = _not_enough(rule, inside.t.size, covered, "samples", _sample_interval(inside.t))
    if short:
        return _result(rule, labels, "inconclusive", short, None, details, evidence)
    fraction = failed / inside.t.size
    status, reason = _judge(rule, fraction, "failed share")
    return _result(
        rule,
        labels,
        status,
        f"{reason} ({failed} of {inside.t.size} samples)",
        fraction,
        details,
        evidence,
    )


# -- a ratio of counters, late against early ----------------------------------------------------
# The late level is read over at most this many windows at the end of the range.
RATIO_LATE_WINDOWS = 2


def _ratio_in(
    numerators: list[Series], denominators: list[Series], a: float, b: float
) -> tuple[float, float, int]:
    """(numerator increase, denominator increase, most numerator samples) within [a, b]."""
    num = sum(counter_increase(s.t, s.v, a, b) for s in numerators)
    den = sum(counter_increase(s.t, s.v, a, b) for s in denominators)
    samples = max((int(np.sum((s.t >= a) & (s.t <= b))) for s in numerators), default=0)
    return num, den, samples


def _ratio_change(
    rule: Rule,
    subject: Subject,
    numerators: list[Series],
    data: RoleData,
    start: float,
    end: float,
) -> Result:
    """The ratio of two counters' increases (CPU seconds per completed request) over the last
    windows of the range against the first window after warm-up; the figure is late / early - 1.

    Denominator series count for a subject when they agree with it on the labels they have:
    load requests carry no ``service`` label, so every service's CPU is divided by all of them."""
    labels = dict(subject)
    begin = start + rule.warmup_seconds
    window = rule.window_seconds
    denominators = [
        s
        for s in data.get("denominator", [])
        if all(s.labels.get(k, "") == v for k, v in subject if k in s.labels)
    ]
    covered = end - begin
    late_seconds = min(RATIO_LATE_WINDOWS * window, covered - window)
    first = (begin, begin + window)
    late = (end - late_seconds, end)
    details: dict[str, Any] = {
        "first_window": list(first),
        "late_window": list(late),
        "analysed_seconds": max(covered, 0.0),
        "numerator_series": len(numerators),
        "denominator_series": len(denominators),
    }
    evidence = Evidence(
        series=[(s.label_text() or s.name, s.t, s.v) for s in (numerators + denominators)],
        spans=[("first window", *first), ("late stretch", *late)],
        y_label="counter",
    )
    needed = rule.warmup_seconds + max(2 * window, rule.min_duration_seconds)
    if covered < max(2 * window, rule.min_duration_seconds):
        reason = (
            f"not enough data: {format_duration(max(covered, 0))} after warm-up, needs two "
            f"windows of {format_duration(window)} (and at least "
            f"{format_duration(rule.min_duration_seconds)}): a range of {format_duration(needed)}"
        )
        return _result(rule, labels, "inconclusive", reason, None, details, evidence)
    if not denominators:
        reason = f"no {rule.metrics['denominator'].promql()} series to divide by"
        return _result(rule, labels, "not_applicable", reason, None, details, evidence)
    early_num, early_den, early_n = _ratio_in(numerators, denominators, *first)
    late_num, late_den, late_n = _ratio_in(numerators, denominators, *late)
    details.update(
        first_numerator=early_num,
        first_denominator=early_den,
        late_numerator=late_num,
        late_denominator=late_den,
        samples=min(early_n, late_n),
    )
    if min(early_n, late_n) < rule.min_points:
        reason = (
            f"not enough samples: {early_n} in the first window and {late_n} in the late "
            f"stretch, needs {rule.min_points} in each"
        )
        return _result(rule, labels, "inconclusive", reason, None, details, evidence)
    if early_den <= 0 or late_den <= 0:
        which = "first window" if early_den <= 0 else "late stretch"
        reason = f"the denominator did not increase in the {which}"
        return _result(rule, labels, "inconclusive", reason, None, details, evidence)
    early_ratio, late_ratio = early_num / early_den, late_num / late_den
    details.update(first=early_ratio, late=late_ratio)
    if not early_ratio > 0:
        reason = "the numerator did not increase in the first window: no level to compare with"
        return _result(rule, labels, "inconclusive", reason, None, details, evidence)
    change = late_ratio / early_ratio - 1.0
    status, reason = _judge(rule, change, "ratio change")
    reason += (
        f" ({early_ratio:.4g} in the first {format_duration(window)} after warm-up -> "
        f"{late_ratio:.4g} over the last {format_duration(late_seconds)})"
    )
    return _result(rule, labels, status, reason, change, details, evidence)


# -- dispatch ---------------------------------------------------------------------------------
def _primary_role(rule: Rule) -> str:
    return {
        "counter_ratio": "denominator",
        "quantile_change": "histogram",
        "ratio_change": "numerator",
    }.get(rule.kind, "value")


def evaluate_rule(
    rule: Rule,
    data: RoleData,
    start: float,
    end: float,
    known_services: Iterable[str] = (),
) -> list[Result]:
    """Judge ``rule`` on ``data`` (role -> series) over [start, end]; one result per subject.

    Per-service overrides of the rule apply to subjects with a ``service`` label. Services in
    ``known_services`` (seen in any fetched series) without data for a rule grouped by
    ``service`` get a not-applicable (or, when required, inconclusive) result of their own."""
    primary = data.get(_primary_role(rule), [])
    groups = _group(primary, rule.group_by)
    results: list[Result] = []
    # indexed once per rule, not searched per subject
    companions = {role: _Companions(data.get(role, [])) for role in COMPANION_ROLES}
    by_subject = _BySubject(data)
    for subject, members in sorted(groups.items()):
        service = dict(subject).get("service")
        effective = rule.for_service(service)
        if not effective.enabled:
            results.append(
                _result(effective, dict(subject), "not_applicable", "disabled for this service")
            )
            continue
        if effective.kind == "slope":
            results += [
                _slope(effective, sub, s, companions)
                for sub, s in _split_subjects(subject, members)
            ]
        elif effective.kind == "counter_ratio":
            results.append(_counter_ratio(effective, subject, start, end, by_subject))
        elif effective.kind == "variation" and effective.sum_over:
            results += [
                _variation(effective, sub, group, start, end)
                for sub, group in _sum_subjects(subject, members, effective.sum_over)
            ]
        elif effective.kind == "variation":
            results += [
                _variation(effective, sub, [s], start, end)
                for sub, s in _split_subjects(subject, members)
            ]
        elif effective.kind == "quantile_change":
            results.append(_quantile_change(effective, subject, members, start, end))
        elif effective.kind == "increase":
            results += [
                _increase(effective, sub, s, start, end, by_subject)
                for sub, s in _split_subjects(subject, members)
            ]
        elif effective.kind == "failure_fraction":
            results += [
                _failure_fraction(effective, sub, s, start, end)
                for sub, s in _split_subjects(subject, members)
            ]
        elif effective.kind == "ratio_change":
            results.append(_ratio_change(effective, subject, members, data, start, end))
    # subjects without the primary metric
    seen_services = {dict(subject).get("service") for subject in groups}
    if rule.kind == "increase":
        # restarts can also be seen from the start time alone
        for subject, _members in sorted(_group(data.get("start_time", []), rule.group_by).items()):
            if subject not in groups:
                seen_services.add(dict(subject).get("service"))
                results.append(
                    _increase(
                        rule.for_service(dict(subject).get("service")),
                        subject,
                        None,
                        start,
                        end,
                        by_subject,
                    )
                )
    missing_services = (
        sorted(set(known_services) - seen_services) if "service" in rule.group_by else []
    )
    metric_names = ", ".join(sorted({sel.metric for sel in rule.metrics.values()}))
    for service in missing_services:
        effective = rule.for_service(service)
        if not effective.enabled:
            continue
        if effective.required:
            results.append(
                _result(
                    effective,
                    {"service": service},
                    "inconclusive",
                    f"required metric {rule.metrics[_primary_role(rule)].metric} "
                    "has no series for this service",
                )
            )
        else:
            results.append(
                _result(
                    effective,
                    {"service": service},
                    "not_applicable",
                    f"no {metric_names} series for this service",
                )
            )
    if not results:
        status: Status = "inconclusive" if rule.required else "not_applicable"
        what = "required metric" if rule.required else "no"
        results.append(
            _result(
                rule,
                {},
                status,
                f"{what} {rule.metrics[_primary_role(rule)].promql()} has no series in the range",
            )
        )
    return results


def _slice(data: RoleData, start: float, end: float) -> dict[str, list[Series]]:
    return {
        role: [part for part in (s.between(start, end) for s in series) if part.t.size]
        for role, series in data.items()
    }


def evaluate_sliding(
    rule: Rule,
    data: RoleData,
    start: float,
    end: float,
    window_seconds: float,
    known_services: Iterable[str] = (),
) -> list[Result]:
    """Judge ``rule`` on every window of ``window_seconds`` (half-overlapping, the last one
    ending at ``end``) as well: one result per subject named ``<rule>@<window>``. It fails when
    any window fails (the reason names the first such window), passes when some window passed
    and none failed, and is inconclusive otherwise. Windows after the first skip no warm-up."""
    if end - start < window_seconds:
        return []
    stride = window_seconds / 2.0
    starts = list(np.arange(end - window_seconds, start - 1e-9, -stride))[::-1]
    name = f"{rule.name}@{format_duration(window_seconds)}"
    per_subject: dict[tuple[tuple[str, str], ...], list[tuple[float, Result]]] = {}
    for index, a in enumerate(starts):
        a = float(a)
        windowed = (
            rule
            if index == 0 and a <= start + 1e-9
            else replace(rule, warmup_seconds=0.0, warmup_auto=False)
        )
        for result in evaluate_rule(
            windowed, _slice(data, a, a + window_seconds), a, a + window_seconds, known_services
        ):
            per_subject.setdefault(tuple(result.subject.items()), []).append((a, result))
    results = []
    for subject, judged in per_subject.items():
        failed = [(a, r) for a, r in judged if r.status == "fail"]
        passed = [(a, r) for a, r in judged if r.status == "pass"]
        figures = [r.figure for _, r in judged if r.figure is not None and math.isfinite(r.figure)]
        worst = None
        if figures:
            worst = max(figures) if rule.lower_is_better else min(figures)
        details = {
            "window_seconds": window_seconds,
            "windows": [
                {"start": a, "end": a + window_seconds, "status": r.status, "figure": r.figure}
                for a, r in judged
            ],
        }
        sample = judged[0][1]
        if failed:
            a, first = failed[0]
            status: Status = "fail"
            reason = (
                f"{len(failed)} of {len(judged)} windows fail; first from "
                f"{format_duration(a - start)} into the range: {first.reason}"
            )
        elif passed:
            status = "pass"
            reason = f"{len(passed)} of {len(judged)} windows pass, none fails"
        else:
            status = "inconclusive" if sample.status != "not_applicable" else "not_applicable"
            reason = f"no window is conclusive: {sample.reason}"
        results.append(
            Result(
                rule=name,
                kind=rule.kind,
                subject=dict(subject),
                status=status,
                figure=worst,
                unit=rule.unit,
                threshold=sample.threshold,
                comparison=rule.comparison,
                reason=reason,
                details=details,
            )
        )
    return results
