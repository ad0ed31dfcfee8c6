"""Where the memory grew: the allocation sites of a failing or inconclusive memory verdict.

The exporter serves ``soak_allocation_site_bytes{service, site, function}`` for the top
allocation sites of a service (sampled with tracemalloc in a Python service, read from the heap
profile of a Go one: ``soakwatch.exporter.attribution`` and ``.pprof``). For a ``memory_growth``
result that fails or is inconclusive, :func:`attach_allocation_sites` adds
``details.allocation_sites``: one entry per site of the result's subject, ``{"site", "function",
"growth_bytes_per_hour", "share"}``, in order of growth, where the growth is the Theil–Sen slope
of the site's series over the run (the same robust estimator as memory itself) and the share is
the site's part of the summed positive growth of all sites. The growth is read from the memory
rule's ``judged_start`` on, or over the whole range when no site grew there
(``details.allocation_sites_from`` says from when). The reason gains ``"; mostly at FILE:LINE"``
for the top site when it grows.

When the exporter said it could not sample (``soak_allocation_attribution_up`` 0 throughout),
the result gets ``details.allocation_sites = []`` and the note ``details.allocation_note`` (also
in the reason). A run without attribution is left as it is: attribution is opt-in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from soakwatch.analyzer.report import Result
from soakwatch.analyzer.series import Series
from soakwatch.analyzer.slopes import theil_sen
from soakwatch.analyzer.sources import Source
from soakwatch.rules.model import LabelMatcher, MetricSelector, Rule

__all__ = [
    "MAX_SITES",
    "SITE_METRIC",
    "UP_METRIC",
    "allocation_sites",
    "attach_allocation_sites",
]

SITE_METRIC = "soak_allocation_site_bytes"
UP_METRIC = "soak_allocation_attribution_up"
MAX_SITES = 10
MEMORY_RULE = "memory_growth"
# at most this many points per site go into the pairwise slopes (they grow as n squared)
MAX_POINTS = 600


def _steps(series: Series) -> tuple[np.ndarray[Any, np.dtype[np.float64]], ...]:
    """The samples where the value changed (and the last one): the exporter updates a site once
    per sampling window and is scraped more often, and the repeated values of a staircase would
    pull a pairwise-slope median towards zero."""
    t, v = series.t, series.v
    if t.size == 0:
        return t, v
    keep = np.ones(t.size, dtype=bool)
    keep[1:] = v[1:] != v[:-1]
    keep[-1] = True
    t, v = t[keep], v[keep]
    if t.size > MAX_POINTS:
        pick = np.unique(np.linspace(0, t.size - 1, MAX_POINTS).round().astype(int))
        t, v = t[pick], v[pick]
    return t, v


def _mine(series: Sequence[Series], subject: Mapping[str, str]) -> list[Series]:
    return [s for s in series if all(s.labels.get(k, "") == v for k, v in subject.items())]


def allocation_sites(
    series: Sequence[Series], *, start: float | None = None, limit: int = MAX_SITES
) -> list[dict[str, Any]]:
    """Each site's growth (bytes/h, Theil–Sen over its samples from ``start`` on) and share,
    largest growth first, at most ``limit``. Series of one site from several workers are judged
    apart and their growths added."""
    growth: dict[tuple[str, str], float] = {}
    for s in series:
        site = s.labels.get("site")
        if not site:
            continue
        t, v = _steps(s if start is None else s.between(start, float("inf")))
        if t.size < 2:
            continue
        try:
            slope = theil_sen(t, v).slope
        except ValueError:
            continue
        key = (site, s.labels.get("function", ""))
        growth[key] = growth.get(key, 0.0) + slope * 3600.0
    positive = sum(g for g in growth.values() if g > 0)
    ranked = sorted(growth.items(), key=lambda kv: kv[1], reverse=True)[:limit]
    return [
        {
            "site": site,
            "function": function,
            "growth_bytes_per_hour": round(g, 1),
            "share": round(g / positive, 4) if positive > 0 and g > 0 else 0.0,
        }
        for (site, function), g in ranked
    ]


def _analysed_start(result: Result, start: float) -> float:
    """Where the memory rule's judged range begins (after the warm-up), when it says so."""
    value = result.details.get("judged_start")
    if isinstance(value, int | float) and value > start:
        return float(value)
    return start


def attach_allocation_sites(
    rule: Rule,
    results: list[Result],
    source: Source,
    start: float,
    end: float,
    extra: tuple[LabelMatcher, ...] = (),
) -> list[Result]:
    """``results`` of ``rule`` with the allocation sites added to those of the memory rule that
    fail or are inconclusive (see the module); the others as they are. Fetches the site series
    only when there is such a result."""
    wanting = [r for r in results if r.rule == MEMORY_RULE and r.status in ("fail", "inconclusive")]
    if rule.kind != "slope" or not wanting:
        return results
    sites = [s.finite()[0] for s in source.fetch(MetricSelector(SITE_METRIC, extra), start, end)]
    states = [s.finite()[0] for s in source.fetch(MetricSelector(UP_METRIC, extra), start, end)]
    out = []
    for result in results:
        if result not in wanting:
            out.append(result)
            continue
        out.append(
            _with_sites(result, _mine(sites, result.subject), _mine(states, result.subject), start)
        )
    return out


def _grew(found: list[dict[str, Any]]) -> bool:
    return any(site["growth_bytes_per_hour"] > 0 for site in found)


def _with_sites(result: Result, sites: list[Series], states: list[Series], start: float) -> Result:
    judged = _analysed_start(result, start)
    found = allocation_sites(sites, start=judged)
    since = judged
    if judged > start and not _grew(found):
        # A judged range shorter than the sites' own sampling holds no change of any site (a
        # Go heap profile changes only at a garbage collection; a last regime of seconds may
        # see none): the sites are then read over the whole range, and the details say from
        # when.
        whole = allocation_sites(sites, start=start)
        if _grew(whole):
            found, since = whole, start
    if found:
        details = {**result.details, "allocation_sites": found, "allocation_sites_from": since}
        top = found[0]
        reason = result.reason
        if top["growth_bytes_per_hour"] > 0:
            reason = f"{reason}; mostly at {top['site']}"
            if since < judged:
                reason += " (over the whole run: no site grew in the judged range)"
        return replace(result, details=details, reason=reason)
    if states and all(s.v.size and not np.any(s.v > 0) for s in states):
        note = "allocation sites unavailable: the exporter could not sample them (see its log)"
    elif states:
        note = "no allocation site of the service's own code grew"
    else:
        return result
    return replace(
        result,
        details={**result.details, "allocation_sites": [], "allocation_note": note},
        reason=f"{result.reason}; {note}",
    )
