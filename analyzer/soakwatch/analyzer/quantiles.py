"""Quantiles from histogram buckets, computed the way PromQL's ``histogram_quantile`` does
(pure numpy): linear interpolation inside the bucket that holds the rank, the lowest bucket
starting at 0, and the upper bound of the highest finite bucket when the rank falls into
``+Inf``. Bucket counts that go down across ``le`` (scrape races) are raised to stay monotonic,
as Prometheus does."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["histogram_quantile"]

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
