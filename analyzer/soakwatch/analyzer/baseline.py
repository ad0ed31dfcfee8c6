"""Rules relative to earlier runs (pure): "no more than 10 % worse than the median of the last
3 passing runs", as Keptn's quality gates allow with ``compare_with: several_results``.

The compared figure is the result's ``figure``, except for ``quantile_change`` rules where it is
the quantile itself in the last window (``details.last``, seconds): a p95 that was already slow
in the baseline runs should not pass just because it did not get slower within this run."""

from __future__ import annotations

import math
import statistics
from typing import Any

from soakwatch.analyzer.report import Result, Status
from soakwatch.rules.model import Rule

__all__ = ["baseline_results", "compared_value"]


def compared_value(kind: str, figure: Any, details: Any) -> float | None:
    """The number a baseline rule compares, from a Result or a result of a JSON report."""
    value = details.get("last") if kind == "quantile_change" and details else figure
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def baseline_results(
    rule: Rule, results: list[Result], baselines: list[dict[str, Any]]
) -> list[Result]:
    """One ``<rule>~baseline`` result per result of ``rule`` (baselines: earlier JSON reports,
    oldest first). Not applicable when no earlier passing run has the figure."""
    if rule.baseline is None:
        return []
    out = []
    for result in results:
        if result.rule != rule.name:
            continue
        key = sorted(result.subject.items())
        history: list[float] = []
        for report in baselines:
            for item in report.get("results", []):
                if (
                    item.get("rule") == rule.name
                    and sorted(item.get("subject", {}).items()) == key
                    and item.get("status") == "pass"
                ):
                    value = compared_value(
                        item.get("kind", ""), item.get("figure"), item.get("details")
                    )
                    if value is not None:
                        history.append(value)
        history = history[-rule.baseline.runs :]
        now = compared_value(result.kind, result.figure, result.details)
        what = "last-window quantile" if rule.kind == "quantile_change" else "figure"
        details: dict[str, Any] = {
            "history": history,
            "value": now,
            "max_change": rule.baseline.max_change,
        }
        status: Status
        if not history:
            status, reason = "not_applicable", "no earlier passing run to compare with"
            figure = None
        elif now is None:
            status, reason, figure = "inconclusive", f"no {what} in this run", None
        else:
            median = statistics.median(history)
            allowed_change = rule.baseline.max_change * abs(median)
            allowed = median + allowed_change if rule.lower_is_better else median - allowed_change
            ok = now <= allowed if rule.lower_is_better else now >= allowed
            status = "pass" if ok else "fail"
            worse = "above" if rule.lower_is_better else "below"
            change = (now - median) / abs(median) if median else math.inf
            figure = change * 100.0 if math.isfinite(change) else None
            details.update(median=median, allowed=allowed)
            reason = (
                f"{what} {now:.4g} is {abs(change):.0%} {'above' if change > 0 else 'below'} the "
                f"median {median:.4g} of {len(history)} passing run(s); allowed at most "
                f"{rule.baseline.max_change:.0%} {worse}"
            )
        out.append(
            Result(
                rule=f"{rule.name}~baseline",
                kind="baseline",
                subject=dict(result.subject),
                status=status,
                figure=figure,
                unit="percent",
                threshold=rule.baseline.max_change * 100.0,
                comparison="<=" if rule.lower_is_better else ">=",
                reason=reason,
                details=details,
            )
        )
    return out
