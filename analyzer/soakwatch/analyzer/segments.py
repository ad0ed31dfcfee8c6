"""Cutting a series into pieces that may each have their own level (pure numpy).

- Restarts: a new process has a new memory level, so a memory series is judged per segment
  between restarts. A restart is seen as a change of ``process_start_time_seconds``, a counter
  increase of ``soak_process_restarts_total`` or a reset of any counter, or the end of a period
  where ``up``-style series read 0.
- A one-time level shift (a cache allocated at once, a pool grown by one connection) is found as
  one first (or lag-2) difference far outside the others whose new level persists; the slope is then
  taken within the two levels, never across the jump. Only the largest such step is cut, so a
  staircase leak (many steps) still shows its growth.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

__all__ = [
    "counter_reset_times",
    "level_shift",
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
    if not times:
        return np.empty(0)
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
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


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
    per_point = float(np.median(d))
    windows = np.lib.stride_tricks.sliding_window_view(y, m)
    medians = np.median(windows, axis=1)  # medians[i] = median(y[i:i+m])
    candidates = np.arange(m, n - m + 1)
    statistic = medians[candidates] - medians[candidates - m] - per_point * m
    # A jump must also stand out from the trend itself: on a steady leak with almost no noise
    # (page-sized steps of an allocator) the spread is tiny and the memory rule would otherwise
    # report "steps" along a straight line. One point's worth of trend is the smallest jump
    # that is told apart from the slope.
    floor = max(1e-9 * max(float(np.max(np.abs(y))), 1.0), abs(per_point))
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
