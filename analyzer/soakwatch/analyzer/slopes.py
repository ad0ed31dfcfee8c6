"""Slope estimators on numpy arrays (pure: no clock, network or files).

- :func:`theil_sen`: the median of pairwise slopes (Theil 1950, Sen 1968) with Sen's
  distribution-free confidence interval from Kendall's S, generalised to *blocks*: only pairs
  inside the same block are used, so each block (a restart segment, a level between two steps)
  keeps its own intercept while all share one slope. This is Sen's (1968) estimator for several
  groups, the same pairing the seasonal Kendall slope uses (Hirsch, Slack & Smith 1982).
  With one block it equals ``scipy.stats.theilslopes`` (tested).
- :func:`least_squares_slope`: ordinary least squares, which is what PromQL's ``deriv()``
  computes over its range; kept as the naive reference for the benchmark.
- :func:`window_aggregate`: reduce a series to one value per window (minimum, median).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = ["SlopeFit", "least_squares_slope", "theil_sen", "window_aggregate"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SlopeFit:
    """A slope in y-units per x-unit, its two-sided confidence interval, and the intercepts
    (one per block, at x = 0). ``pairs`` is how many pairwise slopes the median was taken of."""

    slope: float
    lower: float
    upper: float
    intercepts: tuple[float, ...]
    points: int
    pairs: int
    confidence: float


def theil_sen(
    x: FloatArray,
    y: FloatArray,
    *,
    confidence: float = 0.95,
    blocks: list[slice] | None = None,
) -> SlopeFit:
    """Median of the pairwise slopes within each block, with Sen's confidence interval.

    The interval uses Var(S) = sum over blocks of n(n-1)(2n+5)/18 (no tie correction: x values
    are distinct timestamps) and the order statistics of the pooled slopes, as in
    ``scipy.stats.theilslopes``. Raises ValueError when there is no pair to take a slope of."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if blocks is None:
        blocks = [slice(0, x.size)]
    parts: list[FloatArray] = []
    variance = 0.0
    points = 0
    for block in blocks:
        bx, by = x[block], y[block]
        n = bx.size
        if n < 2:
            continue
        i, j = np.triu_indices(n, 1)
        dx = bx[j] - bx[i]
        keep = dx != 0
        parts.append((by[j] - by[i])[keep] / dx[keep])
        variance += n * (n - 1) * (2 * n + 5) / 18.0
        points += n
    if not parts:
        raise ValueError("no pair of points to take a slope of")
    slopes = np.sort(np.concatenate(parts))
    total = slopes.size
    if total == 0:
        raise ValueError("no pair of points with distinct x")
    slope = float(np.median(slopes))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    sigma = float(np.sqrt(variance))
    upper_index = min(int(np.round((total + z * sigma) / 2.0)), total - 1)
    lower_index = max(int(np.round((total - z * sigma) / 2.0)) - 1, 0)
    intercepts = tuple(
        float(np.median(y[block] - slope * x[block])) for block in blocks if x[block].size
    )
    return SlopeFit(
        slope=slope,
        lower=float(slopes[lower_index]),
        upper=float(slopes[upper_index]),
        intercepts=intercepts,
        points=points,
        pairs=total,
        confidence=confidence,
    )


def least_squares_slope(x: FloatArray, y: FloatArray) -> float:
    """Ordinary least-squares slope: what PromQL ``deriv(v[range])`` returns (per x-unit)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        raise ValueError("need two points for a slope")
    xc = x - x.mean()
    denominator = float(np.dot(xc, xc))
    if denominator == 0:
        raise ValueError("all x values are equal")
    return float(np.dot(xc, y - y.mean()) / denominator)


def window_aggregate(
    t: FloatArray,
    y: FloatArray,
    window_seconds: float,
    how: str = "min",
    *,
    min_fraction: float = 0.5,
) -> tuple[FloatArray, FloatArray]:
    """One point per window of ``window_seconds`` starting at ``t[0]``: the window's centre time
    and its minimum (``how="min"``) or median (``how="median"``) value. Windows holding fewer
    than ``min_fraction`` of the median number of samples per window are left out."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.size == 0:
        return t, y
    index = np.floor((t - t[0]) / window_seconds).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    ends = np.r_[starts[1:], y.size]
    centres = t[0] + (index[starts] + 0.5) * window_seconds
    if how == "min":
        values = np.minimum.reduceat(y, starts)
    elif how == "median":
        # all windows at once: sort by (window, value), then take each window's middle
        order = np.lexsort((y, index))
        ranked = y[order]
        counts = ends - starts
        values = 0.5 * (ranked[starts + (counts - 1) // 2] + ranked[starts + counts // 2])
    else:
        raise ValueError(f"unknown aggregate {how!r}")
    # a window with far fewer samples than usual (the ragged last one, an outage) has a
    # differently distributed minimum: leave it out rather than bias the slope
    counts = ends - starts
    full = counts >= min_fraction * float(np.median(counts))
    return centres[full], values[full].astype(np.float64)
