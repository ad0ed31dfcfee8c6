"""``analyze()``: fetch what the rules need from a source, judge every rule, build the report.
The only function that touches a source; everything it calls after fetching is pure."""

from __future__ import annotations

import logging
import time

from soakwatch.analyzer.evaluate import evaluate_rule
from soakwatch.analyzer.report import Report, Result
from soakwatch.analyzer.series import Series
from soakwatch.analyzer.sources import Source
from soakwatch.rules.model import LabelMatcher, MetricSelector, Rule, RuleSet, parse_selector

from soakwatch.errors import UsageError

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


def _fetch_rule(
    source: Source,
    rule: Rule,
    start: float,
    end: float,
    extra: tuple[LabelMatcher, ...],
    cache: dict[str, list[Series]],
) -> dict[str, list[Series]]:
    data: dict[str, list[Series]] = {}
    for role, selector in rule.metrics.items():
        suffix = "_bucket" if rule.kind == "quantile_change" else ""
        merged = MetricSelector(selector.metric, selector.matchers + extra)
        key = merged.promql(suffix=suffix)
        if key not in cache:
            log.debug("fetching %s", key)
            cache[key] = source.fetch(merged, start, end, suffix=suffix)
        data[role] = cache[key]
    return data


def analyze(
    source: Source,
    ruleset: RuleSet,
    start: float,
    end: float,
    selector: str | None = None,
    only: list[str] | tuple[str, ...] | None = None,
) -> Report:
    """Judge the rules of ``ruleset`` (or just those named in ``only``) on the series that
    ``source`` holds for [start, end] (Unix seconds), restricted by the label ``selector``
    (``'{service="api"}'``). Raises SourceError when the source cannot be read, ConfigError for
    an unknown rule name, UsageError for a bad selector or range."""
    if not end > start:
        raise UsageError(f"the range is empty: start {start:.0f} is not before end {end:.0f}")
    extra = parse_label_selector(selector)
    rules = ruleset.select(only)
    cache: dict[str, list[Series]] = {}
    fetched = {
        name: _fetch_rule(source, rule, start, end, extra, cache)
        for name, rule in rules.rules.items()
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
        results += evaluate_rule(rule, fetched[name], start, end, known_services)
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
