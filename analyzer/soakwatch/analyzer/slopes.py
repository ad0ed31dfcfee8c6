"""Slope estimators on numpy arrays (pure: no clock, network or files).

- :func:`theil_sen`: the median of pairwise slopes (Theil 1950, Sen 1968) with Sen's
  distribution-free confidence interval from Kendall's S, generalised to *blocks*: only pairs
  inside the same block are used, so each block (a restart segment, a level between two steps)
  keeps its own intercept while all share one slope. This is Sen's (1968) estimator for several
  groups, the same pairing the seasonal Kendall slope uses (Hirsch, Slack & Smith 1982).
  With one block it equals ``scipy.stats.theilslopes`` (tested).
- :func:`least_squares_slope`: ordinary least squares, which is what PromQL's ``deriv()``
  computes over its range; kept as the naive reference for the benchmark.
- :func:`window_aggregate`: reduce a series to one value per window (minimum, median) at the
  nominal window centre; :func:`window_points` does the same at the time of the samples the
  value came from (the minimum's own sample, the mean time of a median's samples).
- :func:`long_run_factor`: how much autocorrelated residuals widen a slope's interval against
  independent ones (the Bartlett-kernel long-run variance over the variance, as in Newey-West
  standard errors); :func:`theil_sen` takes it as ``variance_factor``.
- :func:`line_fit`: least squares with one intercept per block and a standard error that
  carries the same factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "LineFit",
    "SlopeFit",
    "least_squares_slope",
    "line_fit",
    "long_run_factor",
    "theil_sen",
    "window_aggregate",
    "window_points",
]

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
    variance_factor: float = 1.0,
) -> SlopeFit:
    """Median of the pairwise slopes within each block, with Sen's confidence interval.

    The interval uses Var(S) = sum over blocks of n(n-1)(2n+5)/18 (no tie correction: x values
    are distinct timestamps) and the order statistics of the pooled slopes, as in
    ``scipy.stats.theilslopes``. ``variance_factor`` (>= 1) multiplies Var(S) for serially
    correlated residuals (the correction of Hamed & Rao 1998 for the Mann-Kendall statistic, here
    with the lag-weighted factor of :func:`long_run_factor`). Raises ValueError when there is no
    pair to take a slope of."""
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
    sigma = float(np.sqrt(variance * max(variance_factor, 1.0)))
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


def _windows(t: FloatArray, window_seconds: float) -> tuple[npt.NDArray[np.int64], ...]:
    """The window number of every sample (windows of ``window_seconds`` from ``t[0]``), and
    the first sample and the sample count of each window that holds any."""
    index = np.floor((t - t[0]) / window_seconds).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
    counts = np.diff(np.r_[starts, t.size])
    return index, starts, counts


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
    index, starts, counts = _windows(t, window_seconds)
    centres = t[0] + (index[starts] + 0.5) * window_seconds
    if how == "min":
        values = np.minimum.reduceat(y, starts)
    elif how == "median":
        # all windows at once: sort by (window, value), then take each window's middle
        order = np.lexsort((y, index))
        ranked = y[order]
        values = 0.5 * (ranked[starts + (counts - 1) // 2] + ranked[starts + counts // 2])
    else:
        raise ValueError(f"unknown aggregate {how!r}")
    # a window with far fewer samples than usual (the ragged last one, an outage) has a
    # differently distributed minimum: leave it out rather than bias the slope
    full = counts >= min_fraction * float(np.median(counts))
    return centres[full], values[full].astype(np.float64)


def window_points(
    t: FloatArray,
    y: FloatArray,
    window_seconds: float,
    how: str = "median",
    *,
    min_fraction: float = 0.5,
) -> tuple[FloatArray, FloatArray]:
    """One point per window of ``window_seconds`` starting at ``t[0]``, placed at the time of
    the samples it came from: the minimum at its own sample's time (``how="min"``), the median
    at the mean time of the window's samples (``how="median"``; under a straight line the
    median of the values belongs to the mean of the times). Windows holding fewer than
    ``min_fraction`` of the median number of samples per window are left out."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.size == 0:
        return t, y
    index, starts, counts = _windows(t, window_seconds)
    if how == "min":
        order = np.lexsort((y, index))  # per window ascending value: the first is the minimum
        at = order[starts]
        times, values = t[at], y[at]
    elif how == "median":
        order = np.lexsort((y, index))
        ranked = y[order]
        values = 0.5 * (ranked[starts + (counts - 1) // 2] + ranked[starts + counts // 2])
        times = np.add.reduceat(t, starts) / counts
    else:
        raise ValueError(f"unknown aggregate {how!r}")
    full = counts >= min_fraction * float(np.median(counts))
    return times[full].astype(np.float64), values[full].astype(np.float64)


def long_run_factor(residuals: FloatArray, *, blocks: list[slice] | None = None) -> float:
    """The long-run variance of ``residuals`` over their variance (1 for independent ones):
    1 + 2 sum_k (1 - k/(L+1)) rho_k with the Bartlett kernel (Newey & West 1987) and bandwidth
    L = ceil(1.5 n^(1/3)), autocorrelations pooled within ``blocks`` (never across a restart).
    Residuals are winsorised at 3 robust standard deviations first, so single spikes do not
    decide it. Never below 1: a negative autocorrelation does not narrow the interval."""
    r = np.asarray(residuals, dtype=np.float64)
    if blocks is None:
        blocks = [slice(0, r.size)]
    parts = [r[b] for b in blocks if r[b].size >= 3]
    if not parts:
        return 1.0
    pooled = np.concatenate(parts)
    centre = float(np.median(pooled))
    scale = 1.4826 * float(np.median(np.abs(pooled - centre)))
    if not scale > 0:
        scale = float(np.std(pooled))
    if not scale > 0:
        return 1.0
    parts = [np.clip(p - centre, -3 * scale, 3 * scale) for p in parts]
    parts = [p - p.mean() for p in parts]
    n = sum(p.size for p in parts)
    variance = sum(float(np.dot(p, p)) for p in parts) / n
    if not variance > 0:
        return 1.0
    bandwidth = int(np.ceil(1.5 * n ** (1.0 / 3.0)))
    factor = 1.0
    for k in range(1, bandwidth + 1):
        lagged = sum(float(np.dot(p[k:], p[:-k])) for p in parts if p.size > k)
        factor += 2.0 * (1.0 - k / (bandwidth + 1.0)) * lagged / n / variance
    return max(factor, 1.0)


@dataclass(frozen=True)
class LineFit:
    """Least squares with one intercept per block: slope, its standard error (with the
    variance factor applied), the residual standard deviation and the degrees of freedom."""

    slope: float
    stderr: float
    sd: float
    dof: int
    intercepts: tuple[float, ...]
    variance_factor: float


def line_fit(
    x: FloatArray,
    y: FloatArray,
    *,
    blocks: list[slice] | None = None,
    variance_factor: float | None = None,
    min_sd: float = 0.0,
) -> LineFit:
    """One slope shared by all blocks, each block with its own intercept. The residual sd is
    at least ``min_sd`` (a noise level known from elsewhere, e.g. the samples behind the
    points); ``variance_factor`` None estimates it from the residuals (:func:`long_run_factor`).
    Raises ValueError without two distinct x in some block."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if blocks is None:
        blocks = [slice(0, x.size)]
    blocks = [b for b in blocks if x[b].size >= 1]
    sxx = sxy = 0.0
    means: list[tuple[float, float]] = []
    for b in blocks:
        bx, by = x[b], y[b]
        mx, my = float(bx.mean()), float(by.mean())
        means.append((mx, my))
        sxx += float(np.dot(bx - mx, bx - mx))
        sxy += float(np.dot(bx - mx, by - my))
    if not sxx > 0:
        raise ValueError("no two distinct x in any block")
    slope = sxy / sxx
    residuals = np.concatenate(
        [y[b] - my - slope * (x[b] - mx) for b, (mx, my) in zip(blocks, means, strict=True)]
    )
    dof = max(int(residuals.size) - len(blocks) - 1, 0)
    sd = float(np.sqrt(np.dot(residuals, residuals) / dof)) if dof > 0 else 0.0
    sd = max(sd, min_sd)
    offsets, edges = 0, []
    for b in blocks:
        size = x[b].size
        edges.append(slice(offsets, offsets + size))
        offsets += size
    factor = (
        long_run_factor(residuals, blocks=edges) if variance_factor is None else variance_factor
    )
    factor = max(factor, 1.0)
    return LineFit(
        slope=slope,
        stderr=sd * float(np.sqrt(factor / sxx)),
        sd=sd,
        dof=dof,
        intercepts=tuple(my - slope * mx for mx, my in means),
        variance_factor=factor,
    )
