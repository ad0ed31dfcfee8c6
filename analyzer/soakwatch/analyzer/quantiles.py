"""Quantiles from histogram buckets, computed the way PromQL's ``histogram_quantile`` does
(pure numpy): linear interpolation inside the bucket that holds the rank, the lowest bucket
starting at 0, and the upper bound of the highest finite bucket when the rank falls into
``+Inf``. Bucket counts that go down across ``le`` (scrape races) are raised to stay monotonic,
as Prometheus does."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["WindowedHistogram", "histogram_quantile", "median_interval"]

FloatArray = npt.NDArray[np.float64]


def histogram_quantile(q: float, upper_bounds: FloatArray, cumulative_counts: FloatArray) -> float:
    """The ``q`` quantile (0..1) of a histogram given its buckets' upper bounds (``le``, any
    order, +Inf included) and cumulative counts. NaN with no observations or no +Inf bucket."""
    bounds = np.asarray(upper_bounds, dtype=np.float64)
    counts = np.asarray(cumulative_counts, dtype=np.float64)
    if bounds.size == 0 or not 0.0 <= q <= 1.0:
        return math.nan
    order = np.argsort(bounds)
    bounds, counts = bounds[order], np.maximum.accumulate(counts[order])
    if not math.isinf(bounds[-1]) or bounds.size < 2:
        return math.nan
    total = float(counts[-1])
    if total <= 0:
        return math.nan
    rank = q * total
    b = int(np.searchsorted(counts, rank, side="left"))
    b = min(b, bounds.size - 1)
    if b == bounds.size - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    lower = 0.0 if b == 0 else float(bounds[b - 1])
    below = 0.0 if b == 0 else float(counts[b - 1])
    in_bucket = float(counts[b]) - below
    if in_bucket <= 0:
        return float(bounds[b])
    return lower + (float(bounds[b]) - lower) * (rank - below) / in_bucket


def _row_quantiles(q: float, bounds: FloatArray, counts: FloatArray) -> FloatArray:
    """:func:`histogram_quantile` of every row of ``counts`` (windows x buckets, finite) at
    once, for ascending distinct ``bounds``: the same branches as one window at a time, as
    masks, and the same arithmetic in the same order. A latency rule asks for a quantile of
    every window of every scenario."""
    windows = counts.shape[0]
    if bounds.size < 2 or not 0.0 <= q <= 1.0 or not math.isinf(bounds[-1]):
        return np.full(windows, math.nan)
    cumulative = np.maximum.accumulate(counts, axis=1)
    total = cumulative[:, -1]
    rank = q * total
    # searchsorted(side="left") in a non-decreasing row: how many counts are below the rank
    b = np.minimum(np.count_nonzero(cumulative < rank[:, None], axis=1), bounds.size - 1)
    rows = np.arange(windows)
    first = b == 0
    previous = np.maximum(b - 1, 0)
    lower = np.where(first, 0.0, bounds[previous])
    below = np.where(first, 0.0, cumulative[rows, previous])
    in_bucket = cumulative[rows, b] - below
    upper = bounds[b]
    with np.errstate(invalid="ignore", divide="ignore"):
        values = lower + (upper - lower) * (rank - below) / in_bucket
    values = np.where(in_bucket <= 0, upper, values)
    values = np.where(first & (bounds[0] <= 0), bounds[0], values)
    values = np.where(b == bounds.size - 1, bounds[-2], values)
    return np.asarray(np.where(total <= 0, math.nan, values), dtype=np.float64)


class WindowedHistogram:
    """The bucket counters of one histogram (several series of one ``le`` are summed), ready
    for the quantile of their increase over any window: the increase counts through counter
    resets and, like :func:`soakwatch.analyzer.counters.counter_increase`, covers the samples
    at or after a window's start and at or before its end (nothing extrapolated)."""

    def __init__(self, buckets: Iterable[tuple[str, FloatArray, FloatArray]]) -> None:
        """``buckets``: (``le`` label, sample times, cumulative counts) of each series."""
        self._by_le: dict[float, list[tuple[FloatArray, FloatArray]]] = {}
        spacings: list[float] = []
        for le_text, t, v in buckets:
            try:
                le = float(le_text)
            except ValueError:
                continue
            if math.isnan(le):
                continue
            t = np.asarray(t, dtype=np.float64)
            v = np.asarray(v, dtype=np.float64)
            keep = np.isfinite(v)
            t, v = t[keep], v[keep]
            if t.size == 0:
                continue
            d = np.diff(v)
            rise = np.where(d >= 0, d, v[1:])  # a drop is a reset: the new value is all rise
            self._by_le.setdefault(le, []).append((t, np.concatenate(([0.0], np.cumsum(rise)))))
            if t.size > 1:
                spacings.append(float(np.median(np.diff(t))))
        self.bounds = np.array(sorted(self._by_le), dtype=np.float64)
        self.sample_seconds = float(np.median(spacings)) if spacings else 0.0

    def __bool__(self) -> bool:
        return self.bounds.size > 0

    def counts(self, starts: npt.ArrayLike, ends: npt.ArrayLike) -> FloatArray:
        """(windows, buckets): each bucket's increase within each [start, end]."""
        starts = np.atleast_1d(np.asarray(starts, dtype=np.float64))
        ends = np.atleast_1d(np.asarray(ends, dtype=np.float64))
        out = np.zeros((starts.size, self.bounds.size))
        for column, le in enumerate(self.bounds):
            for t, rise in self._by_le[le]:
                first = np.searchsorted(t, starts, side="left")
                last = np.searchsorted(t, ends, side="right") - 1
                inside = last > first
                safe_first = np.minimum(first, t.size - 1)
                safe_last = np.clip(last, 0, t.size - 1)
                out[:, column] += np.where(inside, rise[safe_last] - rise[safe_first], 0.0)
        return out

    def quantiles(
        self, q: float, starts: npt.ArrayLike, ends: npt.ArrayLike
    ) -> tuple[FloatArray, FloatArray]:
        """The ``q`` quantile of each window's increase (NaN without observations) and the
        window's observation count (the ``+Inf`` bucket's increase)."""
        counts = self.counts(starts, ends)
        if np.isfinite(counts).all():
            values = _row_quantiles(q, self.bounds, counts)
        else:
            values = np.array([histogram_quantile(q, self.bounds, row) for row in counts])
        total = counts[:, -1] if counts.shape[1] else np.zeros(counts.shape[0])
        return values.reshape(-1), np.asarray(total, dtype=np.float64)

    def quantile(self, q: float, start: float, end: float) -> tuple[float, float]:
        """The ``q`` quantile of the increase within [start, end] and its observation count."""
        values, totals = self.quantiles(q, np.array([start]), np.array([end]))
        return float(values[0]), float(totals[0])


def median_interval(values: npt.ArrayLike, confidence: float) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values`` (the sign test's order
    statistics) at ``confidence``; the smallest and largest value when there are too few
    values for that confidence. NaN for no values."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    # leaving out k values on each side misses the median with probability 2 P(X <= k),
    # X ~ Binomial(n, 1/2) the count of values below it
    below = 0.0
    k = 0
    for i in range((n - 1) // 2 + 1):
        below += math.comb(n, i) / 2.0**n
        if below > alpha / 2:
            break
        k = i
    return float(x[k]), float(x[n - 1 - k])
