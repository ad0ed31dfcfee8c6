"""Cutting a series into pieces that may each have their own level (pure numpy).

- Restarts: a new process has a new memory level, so a memory series is judged per segment
  between restarts. A restart is seen as a change of ``process_start_time_seconds``, a counter
  increase of ``soak_process_restarts_total`` or a reset of any counter, or the end of a period
  where ``up``-style series read 0.
- A one-time level shift (a cache allocated at once, a pool grown by one connection) is found as
  one first (or lag-2) difference far outside the others whose new level persists; the slope is then
  taken within the two levels, never across the jump. Only the largest such step is cut, so a
  staircase leak (many steps) still shows its growth.
- Drops (:func:`drops`): sudden falls far outside the sample-to-sample noise that land below the
  level before them and stay there: a garbage collection, a cache flush, or a restart the
  analyzer was not told about. Values counted in pages (RSS in 4 KiB steps) have a robust
  scale of 0; a drop must then still be several quanta deep, so single-page moves are noise.
  Drops too shallow for one difference (a 20 MB GC sawtooth under 4 MB of noise) are found by
  matched windows of 4 to 32 samples each side, held to one false drop in 10,000 flat series.
- Change points (:func:`change_points`): binary segmentation of a series of points into
  straight pieces, each with its own level and slope, a cut kept only when it explains far more
  than the noise (autocorrelation included) could.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from soakwatch.analyzer.slopes import long_run_factor, median

__all__ = [
    "change_points",
    "counter_reset_times",
    "difference_noise",
    "drop_sets",
    "drops",
    "level_shift",
    "noise_sd",
    "restart_times",
    "split_at",
]

FloatArray = npt.NDArray[np.float64]
Series = tuple[FloatArray, FloatArray]


def counter_reset_times(t: FloatArray, v: FloatArray) -> FloatArray:
    """Timestamps of the samples where a counter went down (the process behind it restarted)."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    if t.size < 2:
        return np.empty(0)
    return t[1:][v[1:] < v[:-1]]


def restart_times(
    start_time: Series | None = None,
    restart_counter: Series | None = None,
    up: Series | None = None,
) -> FloatArray:
    """Sorted timestamps at which a new process segment begins.

    ``start_time``: samples of the process start time (seconds); a change of more than one second
    (clock jitter) is a restart at that sample. ``restart_counter``: any increase or reset is a
    restart. ``up``: the first sample of 1 after samples of 0 begins a new segment."""
    times: list[FloatArray] = []
    if start_time is not None and start_time[0].size > 1:
        t, v = (np.asarray(a, dtype=np.float64) for a in start_time)
        times.append(t[1:][np.abs(np.diff(v)) > 1.0])
    if restart_counter is not None and restart_counter[0].size > 1:
        t, v = (np.asarray(a, dtype=np.float64) for a in restart_counter)
        times.append(t[1:][np.diff(v) != 0])
    if up is not None and up[0].size > 1:
        t, v = (np.asarray(a, dtype=np.float64) for a in up)
        times.append(t[1:][(v[1:] > 0) & (v[:-1] <= 0)])
    times = [found for found in times if found.size]
    if not times:
        return np.empty(0)  # the usual case, without np.unique's fixed cost
    merged = np.unique(np.concatenate(times))
    return merged


def split_at(t: FloatArray, boundaries: FloatArray) -> list[slice]:
    """Index slices of sorted ``t`` cut before each boundary time (empty pieces dropped)."""
    t = np.asarray(t, dtype=np.float64)
    cuts = np.searchsorted(t, np.asarray(boundaries, dtype=np.float64), side="left")
    edges = [0, *sorted({int(c) for c in cuts if 0 < c < t.size}), t.size]
    return [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _robust_scale(values: FloatArray) -> float:
    """1.4826 x median absolute deviation: the standard deviation for normal data."""
    if values.size == 0:
        return 0.0
    return 1.4826 * median(np.abs(values - median(values)))


def level_shift(y: FloatArray, *, ratio: float = 6.0, min_run: int = 3) -> int | None:
    """Index ``k`` such that ``y[:k]`` and ``y[k:]`` sit on two levels separated by a one-time
    jump, or None.

    For each candidate k the statistic is the median of the ``m`` points after k minus the
    median of the ``m`` points before it, less the trend over that distance (``m`` times the
    median first difference, which one jump cannot move); ``m`` is a twelfth of the points, at
    least ``min_run``. The largest statistic counts as a jump when it exceeds ``ratio`` robust
    standard deviations of the statistic and the single difference at k carries at least a
    quarter of it (a jump, not a bend). Cutting at a false jump only costs the pairs across it,
    never biases the slope, so the test leans towards cutting."""
    y = np.asarray(y, dtype=np.float64)
    n = y.size
    m = max(min_run, n // 12)
    if n < 2 * m + 2:
        return None
    d = np.diff(y)
    per_point = median(d)
    # medians[i] = np.median(y[i:i+m]), every window from one sort along its rows
    ranked = np.sort(y[np.arange(n - m + 1)[:, None] + np.arange(m)], axis=1)
    medians = (ranked[:, (m - 1) // 2] + ranked[:, m // 2]) / 2.0
    medians[np.isnan(ranked[:, -1])] = np.nan
    candidates = np.arange(m, n - m + 1)
    statistic = medians[candidates] - medians[candidates - m] - per_point * m
    # A jump must also stand out from the trend itself: on a steady leak with almost no noise
    # (page-sized steps of an allocator) the spread is tiny and the memory rule would otherwise
    # report "steps" along a straight line. One point's worth of trend is the smallest jump
    # that is told apart from the slope.
    floor = max(1e-9 * max(float(np.abs(y).max()), 1.0), abs(per_point))
    # the spread of the statistic without a jump: from the statistics themselves, or from the
    # first differences (one jump moves one of them) through the spread of a median of m
    # points, 1.2533 sigma / sqrt(m); the smaller wins (a false cut costs power, not bias)
    from_differences = _robust_scale(d) * 1.2533 / np.sqrt(m)
    scale = max(min(_robust_scale(statistic), from_differences), floor)
    best = int(np.argmax(np.abs(statistic)))
    if abs(float(statistic[best])) <= ratio * scale:
        return None
    k = int(candidates[best])
    # the jump itself: the biggest single step near k, in the statistic's direction
    sign = np.sign(statistic[best])
    near = np.arange(max(k - 2, 1), min(k + 2, n - 1) + 1)
    steps = sign * (d[near - 1] - per_point)
    k = int(near[int(np.argmax(steps))])
    if float(np.max(steps)) < 0.25 * abs(float(statistic[best])):
        return None
    return k


def quantum(values: FloatArray) -> float:
    """The smallest non-zero step between successive values (a page, for RSS), 0 for none."""
    d = np.abs(np.diff(np.asarray(values, dtype=np.float64)))
    d = d[d > 0]
    return float(np.min(d)) if d.size else 0.0


def noise_sd(
    y: FloatArray, pieces: list[slice] | None = None, *, noise: tuple[float, float] | None = None
) -> float:
    """The sample-to-sample noise: 1.4826 x MAD of the first differences over sqrt 2, within
    ``pieces``; at least the rounding noise of quantised values (quantum / sqrt 12).

    ``noise``: :func:`difference_noise` of the same ``y`` and ``pieces``, used when it reads
    the same differences (no piece of exactly two samples, which it leaves out): the median
    of the differences is then taken once for the noise and the drops."""
    y = np.asarray(y, dtype=np.float64)
    if pieces is None:
        pieces = [slice(0, y.size)]
    diffs = [np.diff(y[p]) for p in pieces if y[p].size > 1]
    if not diffs:
        return 0.0
    if noise is not None and all(y[p].size != 2 for p in pieces):
        scale, step = noise
    else:
        scale = _robust_scale(np.concatenate(diffs))
        step = quantum(np.concatenate([y[p] for p in pieces]))
    return float(max(scale / np.sqrt(2.0), step / np.sqrt(12.0)))


def drops(
    y: FloatArray, pieces: list[slice], *, ratio: float = 6.0, windows: bool = True
) -> list[int]:
    """Indices (into ``y``) of the first sample after each sudden drop within ``pieces``.

    A drop is a fall of more than ``ratio`` robust standard deviations of the first differences
    and more than 8 quanta of the values, that lands at least half as deep below the median of
    the three samples before it and whose next three samples stay there: the fall back from a
    single-sample spike, or a single low sample, is not a drop. With ``windows``, drops too
    shallow for one difference that matched windows of 4 to 32 samples each side see are
    added (:func:`_window_drops`).

    ``pieces`` are slices with a start and a stop. Every candidate of every piece is judged at
    once (the medians of up to three samples before and after it from one sort of a
    candidates x 3 array); only the rule that one fall spread over two scrapes counts once
    looks at the drops in order."""
    clear, seen = drop_sets(y, pieces, ratio=ratio, windows=windows)
    return seen if windows else clear


def difference_noise(y: FloatArray, pieces: list[slice]) -> tuple[float, float]:
    """The robust scale (1.4826 x MAD) of the first differences within the pieces of more
    than two samples, and the quantum of the values of all ``pieces``: what
    :func:`drop_sets` reads its limits from, and (over the same pieces) :func:`noise_sd`.

    Why its own function: the memory rule needs the noise and the drops of the same pieces,
    and the median of a 48-hour series' differences is the dearest part of each; computed
    once and handed to both, the figures are the same to the bit."""
    y = np.asarray(y, dtype=np.float64)
    diffs = [np.diff(y[p]) for p in pieces if y[p].size > 2]
    if not diffs:
        return 0.0, 0.0
    return _robust_scale(np.concatenate(diffs)), quantum(np.concatenate([y[p] for p in pieces]))


def drop_sets(
    y: FloatArray,
    pieces: list[slice],
    *,
    ratio: float = 6.0,
    windows: bool = True,
    noise: tuple[float, float] | None = None,
) -> tuple[list[int], list[int]]:
    """The drops of :func:`drops` twice: those one difference sees (``windows=False``), and
    those with the matched windows' added (the first list again without ``windows``).

    Why both at once: the memory rule judges a series by both sets, and the second is the
    first with more added; one call reads the one-difference drops once instead of twice.
    ``noise``: :func:`difference_noise` of the same ``y`` and ``pieces``, when the caller has
    it already."""
    y = np.asarray(y, dtype=np.float64)
    if not any(y[p].size > 2 for p in pieces):
        return [], []
    scale, step = difference_noise(y, pieces) if noise is None else noise
    floor = 1e-9 * max(float(np.abs(y).max()), 1.0)
    limit = max(ratio * scale, 8.0 * step, floor)
    starts = np.array([p.start for p in pieces], dtype=np.int64)
    stops = np.array([p.stop for p in pieces], dtype=np.int64)
    long_enough = stops - starts >= 3
    starts, stops = starts[long_enough], stops[long_enough]
    # every sample after the first of each piece, piece after piece: a candidate's fall is
    # y[k] - y[k - 1] inside its piece; read piece by piece on slices (a series has a few
    # pieces and thousands of samples: no index arrays over every sample)
    falls = [
        np.flatnonzero(y[a + 1 : b] - y[a : b - 1] < -limit) + (a + 1)
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True)
    ]
    counts = np.array([f.size for f in falls], dtype=np.int64)
    k = np.concatenate(falls) if falls else np.empty(0, dtype=np.int64)
    first, end = np.repeat(starts, counts), np.repeat(stops, counts)
    found: list[int] = []
    if k.size:  # most series have no fall that deep: no medians to take
        before = _medians_of_three(y, k - 3, np.maximum(k - 3, first), k)
        after = _medians_of_three(y, k, k, np.minimum(k + 3, end))
        # the negated tests keep a NaN median a drop, as the comparisons of one sample at a
        # time did
        deep = ~(before - after < 0.5 * limit) & ~(before - y[k] < 0.5 * limit)
        for index in k[deep].tolist():
            if found and index - found[-1] <= 2:
                continue  # one fall spread over two scrapes
            found.append(index)
    if not windows:
        return found, found
    return found, _window_drops(
        y, pieces, starts, stops, scale / np.sqrt(2.0), max(8.0 * step, floor), found
    )


WINDOWS = (4, 8, 16, 32)  # samples each side of a drop that a matched window compares
FALSE_DROPS = 1e-4  # the chance a flat series of white noise shows one window drop


def _wander(y: FloatArray, pieces: list[slice], sigma: float, near: npt.NDArray[np.int64]) -> float:
    """How much more a mean of many samples moves than white noise of the first differences'
    scale ``sigma`` would: sqrt(1 + phi) / (1 - phi) for noise with lag-1 autocorrelation phi,
    read from the lag-2 differences (their variance is 1 + phi times the first ones'), phi
    at most 0.9; both read from differences that do not reach within 2 samples of ``near``.

    Why: noise that wanders (autocorrelated) barely shows in one difference but moves a
    window's mean; taken as white, a flat series with phi = 0.6 showed window drops in 7 runs
    of 10. Away from the candidate drops: the drops of a sawtooth with 12 samples a cycle,
    in a sixth of the lag-2 differences, read as phi = 0.5 and hid all its drops."""
    clear = np.ones(y.size, dtype=bool)
    for shift in range(-2, 3):
        clear[np.clip(near + shift, 0, y.size - 1)] = False
    first: list[FloatArray] = []
    second: list[FloatArray] = []
    for p in pieces:
        part, ok = y[p], clear[p]
        if part.size > 3:
            first.append((part[1:] - part[:-1])[ok[1:] & ok[:-1]])
            second.append((part[2:] - part[:-2])[ok[2:] & ok[1:-1] & ok[:-2]])
    one = _robust_scale(np.concatenate(first)) if first else 0.0
    two = _robust_scale(np.concatenate(second)) if second else 0.0
    if not one > 0 or not sigma > 0:
        return 1.0
    # less one standard error of that ratio (about 3.3 / sqrt(n) from two MADs): white noise
    # read as phi = 0.15 over 2 hours would widen the limit by a third for nothing
    count = sum(part.size for part in second)
    phi = min(max((two / one) ** 2 - 1.0 - 3.3 / np.sqrt(max(count, 1)), 0.0), 0.9)
    return float(np.sqrt(1.0 + phi) / (1.0 - phi))


def _window_drops(
    y: FloatArray,
    pieces: list[slice],
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    sigma: float,
    floor: float,
    known: list[int],
) -> list[int]:
    """``known`` (sorted drops) and the drops that one difference cannot tell from the noise
    but ``k`` samples each side can, sorted.

    Why: a sawtooth of 20 MB under 4 MB of noise falls less than 6 standard deviations of a
    first difference (34 MB), so most of its drops went unseen and the series, judged as a
    trend, read its rising mean as growth. At sample i two lines with one slope (each window's
    own level) go through the ``k`` samples before i and the ``k`` from i; the statistic is
    the gap between them at i: the mean after less the mean before less ``k`` times the
    slope. On a sawtooth whose cycle holds ``k`` samples each side it is the full depth of the
    drop, whatever the climb rate there (a slope taken over the whole series read false drops
    all along a cycle whose amplitude fell by three quarters), and its noise is sigma
    sqrt(2 / k + 6 k / (k^2 - 1)). A drop is where the statistic is the lowest within ``k``
    samples and below ``-z`` times its noise, ``z`` from a Bonferroni bound over every sample
    and window (:data:`FALSE_DROPS`): a flat noisy series shows no drop, since false drops
    turn noise into a sawtooth. ``sigma`` is the first differences' scale, widened by
    :func:`_wander` for autocorrelated noise (two selections over every difference, so only
    once a window sees a drop by the white-noise limit). The medians of the two windows must
    show half the limit too: a single spike moves a mean, not a median. ``floor`` (the
    quantum and float floors of :func:`drops`) bounds the limit from below.
    A drop found within ``k`` samples of one already known (from one difference or a shorter
    window, which place it better) is that drop: near the end of a piece the longest windows
    see a drop whose own position they cannot reach a few samples early."""
    lengths = stops - starts
    candidates = int(np.maximum(lengths - 2 * WINDOWS[0] + 1, 0).sum()) * len(WINDOWS)
    if candidates == 0 or not sigma > 0:
        return known
    z = NormalDist().inv_cdf(1.0 - FALSE_DROPS / candidates)
    # cumulative sums of y and j y, less a level of the series so that 48 hours of bytes keep
    # their precision
    level = float(y[starts[0]])
    centred = y - (level if math.isfinite(level) else 0.0)
    index = np.arange(y.size, dtype=np.float64)
    zero = np.zeros(1)
    total = np.concatenate((zero, np.cumsum(centred)))
    moment = np.concatenate((zero, np.cumsum(index * centred)))
    known_at = np.asarray(known, dtype=np.int64)
    # candidates by the white-noise limit: (k, position, statistic in units of its noise)
    seen: list[tuple[int, npt.NDArray[np.int64], FloatArray]] = []
    for k in WINDOWS:
        spread = sigma * np.sqrt(2.0 / k + 6.0 * k / (k * k - 1.0))
        limit = max(z * spread, floor)
        sxx = k * (k * k - 1.0) / 12.0  # of the indices within one window
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            if b - a < 2 * k:
                continue
            # windows ending at, starting at i, for i = a + k .. b - k (slices, no gathers)
            mid, lo, hi = slice(a + k, b - k + 1), slice(a, b - 2 * k + 1), slice(a + 2 * k, b + 1)
            before = total[mid] - total[lo]
            after = total[hi] - total[mid]
            # sum of (j - window mean index) y_j within each window
            sxy = (
                (moment[hi] - moment[lo])
                - index[mid] * (before + after)
                + ((k + 1) / 2.0) * before
                - ((k - 1) / 2.0) * after
            )
            slope = sxy / (2.0 * sxx)
            stat = (after - before) / k - k * slope
            low = np.flatnonzero(stat < -limit)
            if not low.size:
                continue
            # the lowest within k samples: one drop, not every window that straddles it
            padded = np.concatenate((np.full(k, np.inf), stat, np.full(k, np.inf)))
            lowest = low[_sliding_min(padded, 2 * k + 1)[low] >= stat[low]]
            at = lowest + (a + k)
            # a drop one difference found is placed already: no window test for it
            fresh = _farther_than(at, known_at, k)
            if not fresh.any():
                continue  # every one placed already: no medians to take
            at, lowest = at[fresh], lowest[fresh]
            rows = at[:, None] + np.arange(k)
            gap = np.median(y[rows], axis=1) - np.median(y[rows - k], axis=1)
            depth = np.minimum(-stat[lowest], -(gap - k * slope[lowest]) * 2.0)
            # each window's own slope: a step up at the end of the window before reads as a
            # steep shared slope and so as a drop; a drop keeps the climb rate on both sides,
            # and the samples after it sit lower than the ones before (less than a cycle each)
            own_before = (
                moment[lowest + a + k]
                - moment[lowest + a]
                - (at - (k + 1) / 2.0) * (before[lowest])
            )
            own_after = (
                moment[lowest + a + 2 * k]
                - moment[lowest + a + k]
                - (at + (k - 1) / 2.0) * after[lowest]
            )
            bend = np.abs(own_after - own_before) / sxx
            keep = (
                (depth > limit)
                & (after[lowest] < before[lowest])
                & (bend < z * sigma * np.sqrt(2.0 / sxx))
            )
            seen.append((k, at[keep], depth[keep] / spread))
    if not any(at.size for _, at, _ in seen):
        return known
    # autocorrelated noise, read away from the candidates (a sawtooth's own drops would read
    # as wandering noise and hide the drops found): they must clear z times the wider noise
    # ... and away from every fall of 3 sd of a difference (a drop too shallow to be a
    # candidate still moves the lag-2 scale; white noise falls that far once in 700)
    falls = np.flatnonzero(np.diff(y) < -3.0 * np.sqrt(2.0) * sigma) + 1
    near = np.concatenate([known_at, falls, *(at for _, at, _ in seen)])
    wander = _wander(y, pieces, sigma, near)
    found = known_at
    for k, at, units in seen:
        at = at[units > z * wander]
        found = np.sort(np.concatenate((found, at[_farther_than(at, found, k)])))
    return [int(i) for i in found]


def _medians_of_three(
    y: FloatArray,
    base: npt.NDArray[np.int64],
    lo: npt.NDArray[np.int64],
    hi: npt.NDArray[np.int64],
) -> FloatArray:
    """``np.median(y[lo:hi])`` for each row, where ``base <= lo < hi <= base + 3``."""
    columns = base[:, None] + np.arange(3)
    inside = (columns >= lo[:, None]) & (columns < hi[:, None])
    values = np.where(inside, y[np.clip(columns, 0, y.size - 1)], np.inf)
    values.sort(axis=1)
    count = inside.sum(axis=1)
    rows = np.arange(values.shape[0])
    medians = (values[rows, (count - 1) // 2] + values[rows, count // 2]) / 2.0
    medians[np.isnan(values).any(axis=1)] = np.nan
    return np.asarray(medians, dtype=np.float64)


def _line_sse(
    cx: FloatArray,
    cy: FloatArray,
    cxx: FloatArray,
    cxy: FloatArray,
    cyy: FloatArray,
    a: npt.NDArray[np.int64] | int,
    b: npt.NDArray[np.int64] | int,
) -> FloatArray:
    """SSE of the least-squares line through points a..b-1 from cumulative sums."""
    n = np.asarray(b - a, dtype=np.float64)
    sx, sy = cx[b] - cx[a], cy[b] - cy[a]
    sxx = cxx[b] - cxx[a] - sx * sx / n
    sxy = cxy[b] - cxy[a] - sx * sy / n
    syy = cyy[b] - cyy[a] - sy * sy / n
    with np.errstate(divide="ignore", invalid="ignore"):
        sse = syy - np.where(sxx > 0, sxy * sxy / np.where(sxx > 0, sxx, 1.0), 0.0)
    return np.asarray(np.maximum(sse, 0.0), dtype=np.float64)


def change_points(
    x: FloatArray,
    y: FloatArray,
    *,
    min_size: int = 8,
    penalty: float = 4.0,
    max_segments: int = 8,
) -> list[int]:
    """Indices where a new straight piece begins (sorted, without 0), by binary segmentation.

    Each candidate range is split where two free lines (own level, own slope) leave the least
    squared error; the split is kept when the reduction exceeds ``penalty`` x ln(n) x s^2 x f,
    with s the robust residual sd of the two lines and f their long-run variance factor
    (:func:`soakwatch.analyzer.slopes.long_run_factor`): under a single line the reduction is
    about chi-square with 2 degrees of freedom in units of s^2 f, so noise, autocorrelated or
    not, rarely passes. Pieces hold at least ``min_size`` points."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 2 * min_size:
        return []
    xc = (x - x.mean()) / max(float(np.ptp(x)), 1e-12)
    yc = y - median(y)
    # cumulative sums with a leading 0 (np.concatenate: np.r_ costs 15 us a call)
    zero = np.zeros(1)
    cx = np.concatenate((zero, np.cumsum(xc)))
    cy = np.concatenate((zero, np.cumsum(yc)))
    cxx = np.concatenate((zero, np.cumsum(xc * xc)))
    cxy = np.concatenate((zero, np.cumsum(xc * yc)))
    cyy = np.concatenate((zero, np.cumsum(yc * yc)))
    cuts: list[int] = []
    pending = [(0, n)]
    while pending and len(cuts) + 1 < max_segments:
        a, b = pending.pop()
        if b - a < 2 * min_size:
            continue
        ks = np.arange(a + min_size, b - min_size + 1, dtype=np.int64)
        left = _line_sse(cx, cy, cxx, cxy, cyy, a, ks)
        split: FloatArray = left + _line_sse(cx, cy, cxx, cxy, cyy, ks, b)
        best = int(np.argmin(split))
        k = int(ks[best])
        whole = float(_line_sse(cx, cy, cxx, cxy, cyy, a, b))
        floor = 1e-18 * max(float(np.max(np.abs(yc[a:b]))), 1.0) ** 2 * (b - a)
        if not whole - float(split[best]) > floor:
            continue  # below the floor whatever the noise: no need to fit the two lines
        residuals = []
        for lo, hi in ((a, k), (k, b)):
            px, py = xc[lo:hi], yc[lo:hi]
            slope, intercept = np.polyfit(px, py, 1)
            residuals.append(py - (slope * px + intercept))
        r = np.concatenate(residuals)
        s2 = _robust_scale(r) ** 2
        s2 = max(s2, float(np.mean(r * r)) * 0.25)  # quantised values: MAD may be 0
        f = long_run_factor(r, blocks=[slice(0, k - a), slice(k - a, b - a)])
        if whole - float(split[best]) > max(penalty * np.log(b - a) * s2 * f, floor):
            cuts.append(k)
            pending += [(a, k), (k, b)]
    return sorted(cuts)


def _farther_than(
    at: npt.NDArray[np.int64], found: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.bool_]:
    """Which of ``at`` lie more than ``k`` samples from every one of sorted ``found``."""
    if not found.size:
        return np.ones(at.size, dtype=bool)
    place = np.searchsorted(found, at)
    left = found[np.maximum(place - 1, 0)]
    right = found[np.minimum(place, found.size - 1)]
    return np.asarray(np.minimum(np.abs(at - left), np.abs(at - right)) > k)


def _sliding_min(a: FloatArray, width: int) -> FloatArray:
    """``min(a[j:j + width])`` for every j, by doubling spans: log2(width) passes over ``a``
    instead of a candidates x width array (a 48-hour GC sawtooth has thousands of them)."""
    m = a
    span = 1
    while 2 * span <= width:
        m = np.minimum(m[:-span], m[span:])
        span *= 2
    count = a.size - width + 1
    return np.asarray(
        np.minimum(m[:count], m[width - span : width - span + count]), dtype=np.float64
    )
