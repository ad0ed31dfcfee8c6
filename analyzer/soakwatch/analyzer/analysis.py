"""``analyze()``: fetch what the rules need from a source, judge every rule, build the report.
The only function that touches a source; everything it calls after fetching is pure."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from soakwatch.analyzer.attribution import attach_allocation_sites
from soakwatch.analyzer.baseline import baseline_results
from soakwatch.analyzer.evaluate import evaluate_rule, evaluate_sliding
from soakwatch.analyzer.report import Report, Result
from soakwatch.analyzer.series import Series
from soakwatch.analyzer.sources import Source, sample_spacing
from soakwatch.errors import UsageError
from soakwatch.rules.model import LabelMatcher, MetricSelector, Rule, RuleSet, parse_selector

__all__ = ["analyze", "parse_label_selector"]

log = logging.getLogger(__name__)


def parse_label_selector(text: str | None) -> tuple[LabelMatcher, ...]:
    """``{service="api",env=~"st.*"}`` (braces optional) as label matchers; UsageError if bad."""
    if not text or not text.strip():
        return ()
    body = text.strip()
    if not body.startswith("{"):
        body = "{" + body + "}"
    try:
        return parse_selector("x" + body).matchers
    except ValueError as exc:
        raise UsageError(f"bad --selector {text!r}: {exc}") from None


# Only the memory series needs every sample (its GC troughs); counters, gauges judged by their
# spread and start times are read at a coarser step of the range / COARSE_POINTS.
COARSE_POINTS = 1440


def _queries(
    rule: Rule, start: float, end: float, extra: tuple[LabelMatcher, ...]
) -> dict[str, tuple[str, MetricSelector, str, float | None]]:
    """role -> (cache key, selector, suffix, step) of what ``rule`` needs."""
    coarse = (end - start) / COARSE_POINTS
    out = {}
    for role, selector in rule.metrics.items():
        suffix = "_bucket" if rule.kind == "quantile_change" else ""
        merged = MetricSelector(selector.metric, selector.matchers + extra)
        step = None if (rule.kind == "slope" and role == "value") else coarse
        key = f"{merged.promql(suffix=suffix)}@{step}"
        out[role] = (key, merged, suffix, step)
    return out


def _note_non_finite(result: Result, set_aside: list[tuple[Mapping[str, str], int]]) -> Result:
    """``result`` with ``details.non_finite_samples`` and a word in its reason when series of
    its subject had NaN or infinite samples, which the rule did not see."""
    count = sum(
        dropped
        for labels, dropped in set_aside
        if all(labels.get(key, "") == value for key, value in result.subject.items())
    )
    if not count:
        return result
    noun = "sample" if count == 1 else "samples"
    return replace(
        result,
        reason=f"{result.reason}; {count} NaN or infinite {noun} ignored",
        details={**result.details, "non_finite_samples": count},
    )


def _note_sampling(result: Result, series: list[Series]) -> Result:
    """``result`` with ``details.sample_seconds``: the sample interval of the series it judged
    (those of its subject), as fetched: the query step from Prometheus, the recorded interval
    from a run directory."""
    mine = [
        s.t
        for s in series
        if all(s.labels.get(key, "") == value for key, value in result.subject.items())
    ]
    spacing = sample_spacing(mine)
    if spacing is None or "sample_seconds" in result.details:
        return result
    return replace(result, details={**result.details, "sample_seconds": spacing})


def _primary(rule: Rule, data: Mapping[str, list[Series]]) -> list[Series]:
    # ratio_change: the numerator (CPU) carries the subject's labels, the requests may not
    primary = {"counter_ratio": "denominator", "ratio_change": "numerator"}
    role = {**primary, "quantile_change": "histogram"}.get(rule.kind, "value")
    return data.get(role, [])


def analyze(
    source: Source,
    ruleset: RuleSet,
    start: float,
    end: float,
    selector: str | None = None,
    only: list[str] | tuple[str, ...] | None = None,
    *,
    sliding_window_seconds: float | None = None,
    baselines: list[dict[str, Any]] | None = None,
    parallel: int = 4,
) -> Report:
    """Judge the rules of ``ruleset`` (or just those named in ``only``) on the series that
    ``source`` holds for [start, end] (Unix seconds), restricted by the label ``selector``
    (``'{service="api"}'``). Raises SourceError when the source cannot be read, ConfigError for
    an unknown rule name, UsageError for a bad selector or range. Up to ``parallel`` queries
    run at once.

    ``sliding_window_seconds`` judges every rule on half-overlapping windows of that length as
    well (rules may set their own ``sliding_window``); ``baselines`` (earlier JSON reports,
    oldest first) enable the rules' ``baseline`` comparisons."""
    if not end > start:
        raise UsageError(f"the range is empty: start {start:.0f} is not before end {end:.0f}")
    extra = parse_label_selector(selector)
    rules = ruleset.select(only)
    plans = {name: _queries(rule, start, end, extra) for name, rule in rules.rules.items()}
    wanted = {
        key: (sel, suffix, step)
        for plan in plans.values()
        for key, sel, suffix, step in plan.values()
    }

    def fetch(item: tuple[str, tuple[MetricSelector, str, float | None]]) -> list[Series]:
        _key, (sel, suffix, step) = item
        return source.fetch(sel, start, end, suffix=suffix, step_seconds=step)

    # queries overlap: the server works on one while this process decodes another
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        answers = dict(zip(wanted, pool.map(fetch, wanted.items()), strict=True))
    # NaN and infinities, as both sources return them, are set aside once for every rule
    cleaned = {key: [s.finite() for s in series] for key, series in answers.items()}
    fetched = {
        name: {role: [s for s, _ in cleaned[key]] for role, (key, _s, _x, _t) in plan.items()}
        for name, plan in plans.items()
    }
    set_aside = {
        name: [
            (s.labels, dropped)
            for key, _s, _x, _t in plan.values()
            for s, dropped in cleaned[key]
            if dropped
        ]
        for name, plan in plans.items()
    }
    known_services = sorted(
        {
            s.labels["service"]
            for name, data in fetched.items()
            if "service" in rules.rules[name].group_by
            for series in data.values()
            for s in series
            if s.labels.get("service")
        }
    )
    results: list[Result] = []
    for name, rule in rules.rules.items():
        primary = _primary(rule, fetched[name])
        judged = [
            _note_sampling(_note_non_finite(r, set_aside[name]), primary)
            for r in evaluate_rule(rule, fetched[name], start, end, known_services)
        ]
        judged = attach_allocation_sites(rule, judged, source, start, end, extra)
        results += judged
        window = sliding_window_seconds or rule.sliding_window_seconds
        if window:
            results += [
                _note_sampling(_note_non_finite(r, set_aside[name]), primary)
                for r in evaluate_sliding(rule, fetched[name], start, end, window, known_services)
            ]
        if baselines:
            results += baseline_results(rule, judged, baselines)
    return Report(
        start=start,
        end=end,
        source=source.description,
        rules_source=ruleset.source,
        rules_version=ruleset.version,
        results=results,
        generated_at=time.time(),
        selector=selector,
    )
