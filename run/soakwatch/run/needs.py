"""How long a run must go before each rule can decide, from the rule alone (no data): the
start warnings of ``soak run`` (and ``soak run --check``) and the time-still-needed figure of
its progress line.

A rule needs its warm-up, then the most of:

- ``min_duration``;
- ``slope``: ``min_points`` windows of ``window`` (the window points the estimate needs);
- ``quantile_change``: the first window after warm-up and a late stretch of
  ``SUSTAINED_WINDOWS`` windows (``soakwatch.rules.model``: a shorter change cannot be
  told from a burst);
- otherwise ``min_points`` samples at the run's sampling interval.

A run shorter than that by more than one sampling interval can only be inconclusive for the
rule (one interval of tolerance: a run of nominal 10 min records samples 10 min apart, give or
take the scheduling of the last scrape)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from soakwatch.durations import format_duration
from soakwatch.rules.model import SUSTAINED_WINDOWS, Rule, RuleSet

__all__ = ["SUSTAINED_WINDOWS", "RuleNeed", "rule_needs", "short_run_warnings", "still_needed"]


@dataclass(frozen=True)
class RuleNeed:
    """What one rule needs of a run: ``warmup_seconds`` skipped, then ``after_seconds``."""

    rule: str
    warmup_seconds: float
    after_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.warmup_seconds + self.after_seconds

    def warning(self, duration_seconds: float) -> str:
        """``memory_growth needs at least 1h20m after a 15m warm-up; this run is 10m: it can
        only be inconclusive``"""
        after = format_duration(self.after_seconds)
        warmup = (
            f" after a {format_duration(self.warmup_seconds)} warm-up"
            if self.warmup_seconds > 0
            else ""
        )
        return (
            f"{self.rule} needs at least {after}{warmup}; this run is "
            f"{format_duration(duration_seconds)}: it can only be inconclusive"
        )


def _need(rule: Rule, interval_seconds: float) -> RuleNeed:
    after = rule.min_duration_seconds
    if rule.kind == "slope":
        after = max(after, rule.window_seconds * rule.min_points)
    elif rule.kind == "quantile_change":
        after = max(after, (1 + SUSTAINED_WINDOWS) * rule.window_seconds)
    else:
        after = max(after, (rule.min_points - 1) * interval_seconds)
    return RuleNeed(rule.name, rule.warmup_seconds, after)


def rule_needs(ruleset: RuleSet, interval_seconds: float) -> list[RuleNeed]:
    """What each enabled rule of ``ruleset`` needs, in the rule set's order."""
    return [_need(rule, interval_seconds) for rule in ruleset.rules.values() if rule.enabled]


def short_run_warnings(
    needs: Iterable[RuleNeed], duration_seconds: float, interval_seconds: float
) -> list[str]:
    """One warning per rule that a run of ``duration_seconds`` cannot decide."""
    return [
        need.warning(duration_seconds)
        for need in needs
        if duration_seconds + interval_seconds < need.total_seconds
    ]


def still_needed(needs: Iterable[RuleNeed], elapsed_seconds: float) -> tuple[str, float] | None:
    """The rule that needs the run longest past ``elapsed_seconds``, and for how long; None
    once every rule has what it needs."""
    waiting = [(n.total_seconds - elapsed_seconds, n.rule) for n in needs]
    longest = max(waiting, default=None)
    if longest is None or longest[0] <= 0:
        return None
    return longest[1], longest[0]
