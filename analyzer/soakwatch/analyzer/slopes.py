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

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

__all__ = [
    "LineFit",
    "SlopeFit",
    "least_squares_slope",
    "line_fit",
    "long_run_factor",
    "median",
    "theil_sen",
    "window_aggregate",
    "window_points",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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
    pair to take a slope of.

    All blocks' pairs are built at once and only the four order statistics needed are placed
    (``np.partition``, linear time) instead of sorting every slope: a window holds up to 64k
    pairs and the memory rule takes several such fits per series."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    index, lengths = _gather(blocks, x.size)
    paired = lengths >= 2
    sizes = lengths[paired].tolist()
    if not sizes:
        raise ValueError("no pair of points to take a slope of")
    variance = 0.0
    for n in sizes:  # in block order, as Sen's sum is written
        variance += n * (n - 1) * (2 * n + 5) / 18.0
    inside = index if len(sizes) == lengths.size else index[np.repeat(paired, lengths)]
    bx, by = x[inside], y[inside]
    signs = (
        _cached_sign_counts(bx.tobytes(), by.tobytes(), tuple(sizes))
        if sum(n * (n - 1) // 2 for n in sizes) >= _COUNTED_PAIRS
        else None
    )
    slopes = None
    if signs is None:
        slopes = _pair_slopes(bx, by, tuple(sizes))
        total = slopes.size
    else:
        total = signs[0]
    if total == 0:
        raise ValueError("no pair of points with distinct x")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    sigma = math.sqrt(variance * max(variance_factor, 1.0))
    upper_index = min(round((total + z * sigma) / 2.0), total - 1)
    lower_index = max(round((total - z * sigma) / 2.0) - 1, 0)
    ranks = (lower_index, (total - 1) // 2, total // 2, upper_index)
    if signs is not None and signs[1] <= min(ranks) and max(ranks) < signs[1] + signs[2]:
        # every rank asked for falls among the zero slopes (0.0 / dx > 0 is +0.0)
        (lower, low_middle, high_middle, upper), nan = [0.0, 0.0, 0.0, 0.0], False
    else:
        if slopes is None:
            slopes = _pair_slopes(bx, by, tuple(sizes))
        (lower, low_middle, high_middle, upper), nan = _ranked(slopes, ranks)
    slope = math.nan if nan else (low_middle + high_middle) / 2.0  # np.median's figure
    intercepts = _block_medians(y[index] - slope * x[index], lengths[lengths > 0])
    return SlopeFit(
        slope=slope,
        lower=lower,
        upper=upper,
        intercepts=tuple(intercepts.tolist()),
        points=sum(sizes),
        pairs=total,
        confidence=confidence,
    )


_FEW_LEVELS = 16  # distinct values up to which pairs are counted by level, not built
_COUNTED_PAIRS = 1 << 11  # fewer pairs are built: counting them would cost more


@lru_cache(maxsize=8)
def _cached_sign_counts(
    bx: bytes, by: bytes, sizes: tuple[int, ...]
) -> tuple[int, int, int] | None:
    """:func:`_sign_counts` of the last few point sets, keyed by their exact bytes: a flat
    count's points are fitted several times over (the fit, its regime, its block's slope)."""
    return _sign_counts(np.frombuffer(bx), np.frombuffer(by), sizes)


def _sign_counts(
    bx: FloatArray, by: FloatArray, sizes: tuple[int, ...]
) -> tuple[int, int, int] | None:
    """How many pairs inside the blocks of ``sizes`` there are, how many have a negative and
    how many a zero slope, counted by level without building a slope; None unless the values
    are finite and take at most :data:`_FEW_LEVELS` levels and x rises strictly (then no pair
    is left out and a slope's sign is that of its dy).

    Why: thread, fd, handle and pool counts sit on a level or two for hours; their pair slopes
    are mostly zero, and when the ranks Sen's interval needs all fall among the zeros every
    figure is 0 without building and partitioning 64k slopes."""
    if by.size < 2 or not (bx[1:] > bx[:-1]).all():
        return None
    # a noisy series shows many levels in its first few values: no full np.unique for it
    if by.size > 4 * _FEW_LEVELS and np.unique(by[: 4 * _FEW_LEVELS]).size > _FEW_LEVELS:
        return None
    levels, codes = np.unique(by, return_inverse=True)
    if levels.size > _FEW_LEVELS or not np.isfinite(levels).all():
        return None
    lengths = np.asarray(sizes, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    onehot = (codes[:, None] == np.arange(levels.size)).astype(np.int64)
    # earlier[j, l]: the samples before j in j's block at level l
    earlier = np.cumsum(onehot, axis=0) - onehot
    earlier -= np.repeat(earlier[starts], lengths, axis=0)
    rows = np.arange(by.size)
    tied = int(earlier[rows, codes].sum())
    at_or_above = np.cumsum(earlier[:, ::-1], axis=1)[:, ::-1]
    negative = int(at_or_above[rows, codes].sum()) - tied  # an earlier sample is higher
    total = int((lengths * (lengths - 1) // 2).sum())
    return total, negative, tied


def _pair_slopes(bx: FloatArray, by: FloatArray, sizes: tuple[int, ...]) -> FloatArray:
    """The slopes of every pair inside each block of consecutive points of ``sizes`` (pairs
    with the same x left out), read-only when they come from :func:`_cached_slopes`."""
    if sum(n * (n - 1) // 2 for n in sizes) <= _CACHED_PAIRS:
        return _cached_slopes(bx.tobytes(), by.tobytes(), sizes)
    return _slopes_of(bx, by, sizes)


@lru_cache(maxsize=8)
def _cached_slopes(bx: bytes, by: bytes, sizes: tuple[int, ...]) -> FloatArray:
    """The memory rule fits the same points several times over (the fit, its refit with the
    variance factor, the regime that is the whole series, its slope per block): the slopes
    of the last few point sets are kept, keyed by their exact bytes, for the next fit."""
    slopes = _slopes_of(np.frombuffer(bx), np.frombuffer(by), sizes)
    slopes.setflags(write=False)
    return slopes


def _slopes_of(bx: FloatArray, by: FloatArray, sizes: tuple[int, ...]) -> FloatArray:
    partners, j = _pairs(sizes)
    # pair (i, j) for i < j inside a block, i repeated once per partner (np.triu_indices order)
    dx = bx[j] - bx.repeat(partners)
    dy = by[j] - by.repeat(partners)
    if (bx[1:] > bx[:-1]).all():  # rising inside every block: no pair shares an x
        return np.asarray(dy / dx, dtype=np.float64)
    keep = dx != 0
    return np.asarray(dy[keep] / dx[keep], dtype=np.float64)


_BRACKETED = 1 << 13  # fewer slopes are partitioned whole: a bracket would not pay


def _ranked(values: FloatArray, ranks: tuple[int, ...]) -> tuple[list[float], bool]:
    """The values at ``ranks`` of sorted ``values`` (which it may reorder, unless they are
    read-only; NaN sorts last), and whether any value is NaN.

    Only a band of ranks is needed (Sen's interval spans a few percent of the slopes), so a
    sorted strided sample brackets the band and only the slopes inside the bracket are
    partitioned: every slope below the bracket ranks below every slope in it. When the
    sample misses (the bracket does not hold the ranks), all slopes are partitioned instead;
    either way the figures are the exact order statistics."""
    total = values.size
    low, high = min(ranks), max(ranks)
    if total > _BRACKETED and np.isfinite(values).all():
        step = total // 1024
        sample = np.sort(values[::step])
        margin = 48  # about three standard errors of a quantile of a sample of 1,024
        first, last = low // step - margin, -(-high // step) + margin
        keep = np.ones(total, dtype=bool)
        skipped = 0
        if first > 0:
            np.greater_equal(values, sample[first], out=keep)
            skipped = total - int(np.count_nonzero(keep))
        if last < sample.size:
            keep &= values <= sample[last]
        band = values[keep]
        if skipped <= low and high < skipped + band.size:
            band.partition(sorted({r - skipped for r in ranks}))
            return [float(band[r - skipped]) for r in ranks], False
    if not values.flags.writeable:
        values = values.copy()  # slopes kept for the next call stay as they are
    values.partition(sorted({*ranks, total - 1}))
    return [float(values[r]) for r in ranks], bool(np.isnan(values[-1]))


def _gather(blocks: list[slice] | None, size: int) -> tuple[IntArray, IntArray]:
    """The indices of the samples of ``blocks`` (None: all ``size`` samples as one block),
    block after block, and the length of each block."""
    positions = np.arange(size)
    if blocks is None:
        return positions, np.array([size], dtype=np.int64)
    chosen = [positions[b] for b in blocks]
    lengths = np.array([c.size for c in chosen], dtype=np.int64)
    if not chosen:
        return np.empty(0, dtype=np.int64), lengths
    return np.concatenate(chosen), lengths


_CACHED_PAIRS = 1 << 17  # 2 MiB of indices; 360 window points make 64,620 pairs


def _pairs(lengths: tuple[int, ...]) -> tuple[IntArray, IntArray]:
    """Every pair (i < j) inside each block of consecutive positions of ``lengths``, in the
    order of ``np.triu_indices`` block after block, without one call per block: how many
    partners each position has (i is repeated that often) and the j of every pair. The same
    layout recurs (the refit with the variance factor, services sampled alike), so layouts of
    up to :data:`_CACHED_PAIRS` pairs are kept (read-only) for the next call."""
    if sum(n * (n - 1) // 2 for n in lengths) <= _CACHED_PAIRS:
        return _cached_pairs(lengths)
    return _pair_indices(np.array(lengths, dtype=np.int64))


@lru_cache(maxsize=32)
def _cached_pairs(lengths: tuple[int, ...]) -> tuple[IntArray, IntArray]:
    partners, j = _pair_indices(np.array(lengths, dtype=np.int64))
    partners.setflags(write=False)
    j.setflags(write=False)
    return partners, j


def _pair_indices(lengths: IntArray) -> tuple[IntArray, IntArray]:
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    local = np.arange(total) - np.repeat(starts, lengths)
    partners = np.repeat(lengths, lengths) - 1 - local
    first = np.cumsum(partners) - partners
    j = np.repeat(np.arange(total) + 1 - first, partners) + np.arange(int(partners.sum()))
    return partners, j


def _dot(a: FloatArray, b: FloatArray) -> float:
    """The dot product, without BLAS for long vectors: OpenBLAS splits a dot of more than
    10,000 elements over threads, which costs 40x more than the sum itself on a busy two-core
    machine (einsum's own loop does not), while for short ones einsum's fixed cost is 5x
    that of ``np.dot``."""
    if a.size <= 8192:
        return float(np.dot(a, b))
    return float(np.einsum("i,i->", a, b))


def median(values: npt.ArrayLike) -> float:
    """``np.median`` of all the values (NaN when one is NaN or there are none), from one
    ``np.partition``: the same figure without np.median's fixed cost of some 15 us, which
    the memory rule pays thousands of times per series."""
    v = np.array(values, dtype=np.float64).ravel()  # a copy, partitioned in place
    n = v.size
    if n == 0:
        return math.nan
    v.partition([(n - 1) // 2, n // 2, n - 1])
    if math.isnan(v[-1]):
        return math.nan
    return float((v[(n - 1) // 2] + v[n // 2]) / 2.0)


def _block_medians(values: FloatArray, lengths: IntArray) -> FloatArray:
    """``np.median`` of each block of consecutive ``values`` (blocks of ``lengths`` >= 1), all
    from one sort: the middle one, or the mean of the two middle ones; NaN in a block with a
    NaN."""
    if lengths.size == 0:
        return np.empty(0)
    if lengths.size == 1:
        return np.array([median(values)])
    starts = np.cumsum(lengths) - lengths
    ranked = values[np.lexsort((values, np.repeat(np.arange(lengths.size), lengths)))]
    medians = (ranked[starts + (lengths - 1) // 2] + ranked[starts + lengths // 2]) / 2.0
    medians[np.add.reduceat(np.isnan(values), starts) > 0] = np.nan
    return np.asarray(medians, dtype=np.float64)


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
    change = np.ones(t.size, dtype=bool)
    np.not_equal(index[1:], index[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    counts = np.diff(starts, append=t.size)
    return index, starts, counts


def _window_medians(y: FloatArray, starts: IntArray, counts: IntArray) -> FloatArray:
    """The median of each window of consecutive samples (``np.median``'s figure; NaN sorts
    last, as in a sort by window and value). The windows are laid out as the rows of one
    array padded with NaN and sorted along the rows: short rows sort faster than one sort of
    the whole series by (window, value). A layout that padding would blow up (one window
    holding most samples) sorts by (window, value) instead."""
    width = int(counts.max())
    rows = np.arange(counts.size)
    owner = np.repeat(rows, counts)
    if width * counts.size > 4 * y.size + 4096:
        ranked = y[np.lexsort((y, owner))]
        return np.asarray(
            0.5 * (ranked[starts + (counts - 1) // 2] + ranked[starts + counts // 2]),
            dtype=np.float64,
        )
    table = np.full((counts.size, width), np.nan)
    table[owner, np.arange(y.size) - np.repeat(starts, counts)] = y
    table.sort(axis=1)
    return np.asarray(
        0.5 * (table[rows, (counts - 1) // 2] + table[rows, counts // 2]), dtype=np.float64
    )


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
        values = _window_medians(y, starts, counts)
    else:
        raise ValueError(f"unknown aggregate {how!r}")
    # a window with far fewer samples than usual (the ragged last one, an outage) has a
    # differently distributed minimum: leave it out rather than bias the slope
    full = counts >= min_fraction * median(counts)
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
        values = _window_medians(y, starts, counts)
        times = np.add.reduceat(t, starts) / counts
    else:
        raise ValueError(f"unknown aggregate {how!r}")
    full = counts >= min_fraction * median(counts)
    return times[full].astype(np.float64), values[full].astype(np.float64)


def long_run_factor(residuals: FloatArray, *, blocks: list[slice] | None = None) -> float:
    """The long-run variance of ``residuals`` over their variance (1 for independent ones):
    1 + 2 sum_k (1 - k/(L+1)) rho_k with the Bartlett kernel (Newey & West 1987) and bandwidth
    L = ceil(1.5 n^(1/3)), autocorrelations pooled within ``blocks`` (never across a restart).
    Residuals are winsorised at 3 robust standard deviations first, so single spikes do not
    decide it. Never below 1: a negative autocorrelation does not narrow the interval."""
    r = np.asarray(residuals, dtype=np.float64)
    if blocks is None:
        return _long_run_factor(r, np.array([r.size], dtype=np.int64))
    index, lengths = _gather(blocks, r.size)
    return _long_run_factor(r[index], lengths)


def _long_run_factor(values: FloatArray, lengths: IntArray) -> float:
    """:func:`long_run_factor` of blocks of consecutive ``values`` of ``lengths``.

    The parts are laid out with L zeros between them, so that one dot product per lag sums
    the lagged products of every part at once and never pairs two parts (a sawtooth cut at
    every drop has hundreds of parts)."""
    kept = lengths >= 3
    if not kept.any():
        return 1.0
    pooled = values if kept.all() else values[np.repeat(kept, lengths)]
    lengths = lengths[kept]
    centre = median(pooled)
    scale = 1.4826 * median(np.abs(pooled - centre))
    if not scale > 0:
        scale = float(np.std(pooled))
    if not scale > 0:
        return 1.0
    z = np.minimum(np.maximum(pooled - centre, -3 * scale), 3 * scale)  # np.clip, cheaper
    starts = np.cumsum(lengths) - lengths
    z -= np.repeat(np.add.reduceat(z, starts) / lengths, lengths)
    n = z.size
    variance = _dot(z, z) / n
    if not variance > 0:
        return 1.0
    bandwidth = int(np.ceil(1.5 * n ** (1.0 / 3.0)))
    if lengths.size > 1:
        spaced = np.zeros(n + bandwidth * (lengths.size - 1))
        spaced[np.arange(n) + np.repeat(np.arange(lengths.size) * bandwidth, lengths)] = z
        z = spaced
    factor = 1.0
    for k in range(1, bandwidth + 1):
        lagged = _dot(z[k:], z[:-k])
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
    Raises ValueError without two distinct x in some block.

    The block means come from one ``np.add.reduceat`` rather than a loop over blocks: the cycle
    fit of the memory rule has one block per sawtooth tooth."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if blocks is None:
        blocks = [slice(0, x.size)]
    index, lengths = _gather(blocks, x.size)
    lengths = lengths[lengths >= 1]
    if lengths.size == 0:
        raise ValueError("no two distinct x in any block")
    bx, by = x[index], y[index]
    starts = np.cumsum(lengths) - lengths
    mx = np.add.reduceat(bx, starts) / lengths
    my = np.add.reduceat(by, starts) / lengths
    xc = bx - np.repeat(mx, lengths)
    sxx = _dot(xc, xc)
    if not sxx > 0:
        raise ValueError("no two distinct x in any block")
    slope = _dot(xc, by - np.repeat(my, lengths)) / sxx
    residuals = by - np.repeat(my, lengths) - slope * xc
    dof = max(int(residuals.size) - int(lengths.size) - 1, 0)
    sd = float(np.sqrt(_dot(residuals, residuals) / dof)) if dof > 0 else 0.0
    sd = max(sd, min_sd)
    factor = _long_run_factor(residuals, lengths) if variance_factor is None else variance_factor
    factor = max(factor, 1.0)
    return LineFit(
        slope=slope,
        stderr=sd * float(np.sqrt(factor / sxx)),
        sd=sd,
        dof=dof,
        intercepts=tuple((my - slope * mx).tolist()),
        variance_factor=factor,
    )
