"""The memory-growth estimate: restart segments -> warm-up -> windows -> one robust slope.

1. The series is cut at restarts (:mod:`soakwatch.analyzer.segments`); each segment keeps its
   own level and only within-segment pairs enter the slope.
2. Each segment skips the configured warm-up; with automatic detection a longer warm-up ramp is
   cut too (:mod:`soakwatch.analyzer.warmup`).
3. The samples are reduced to one point per window, either the window minimum (the floor after
   each collection: a GC sawtooth then reads flat) or the window median (more efficient under
   plain noise). When the series has a sawtooth, windows are widened to 1.5 times the median
   interval between collections, so nearly every window holds a trough. Both reductions estimate the
   same slope; the one with the smaller spread of successive differences is used.
4. One level shift per segment is cut out (:func:`segments.level_shift`).
5. Blocked Theil-Sen with Sen's interval over all pieces (:func:`slopes.theil_sen`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from soakwatch.analyzer.segments import level_shift, split_at
from soakwatch.analyzer.slopes import SlopeFit, theil_sen, window_aggregate
from soakwatch.analyzer.warmup import warmup_end

__all__ = ["GrowthEstimate", "estimate_growth"]

FloatArray = npt.NDArray[np.float64]
HOUR = 3600.0


@dataclass(frozen=True)
class GrowthEstimate:
    """Slope figures are per hour in the series' unit (bytes/hour for memory); ``fit`` is in
    units per second with x relative to ``origin``. ``points_t``/``points_y`` are the window
    points the slope was taken from and ``blocks`` their pieces."""

    fit: SlopeFit | None
    origin: float
    aggregate: str
    window_seconds: float
    points_t: FloatArray
    points_y: FloatArray
    blocks: list[slice]
    segments: int
    warmup_ends: list[float]
    step_times: list[float]
    analysed_seconds: float
    segment_slopes_per_hour: list[float | None] = field(default_factory=list)

    @property
    def slope_per_hour(self) -> float:
        return self.fit.slope * HOUR if self.fit else math.nan

    @property
    def lower_per_hour(self) -> float:
        return self.fit.lower * HOUR if self.fit else math.nan

    @property
    def upper_per_hour(self) -> float:
        return self.fit.upper * HOUR if self.fit else math.nan

    @property
    def points(self) -> int:
        return int(sum(b.stop - b.start for b in self.blocks))


def _robust_scale(values: FloatArray) -> float:
    if values.size == 0:
        return math.inf
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def sawtooth_period(t: FloatArray, y: FloatArray, pieces: list[slice]) -> float | None:
    """The median interval between sudden drops (garbage collections), or None when the series
    has fewer than three such drops or they do not recur along the series. A drop is a fall of
    more than six robust standard deviations of the first differences."""
    diffs = [np.diff(y[p]) for p in pieces if p.stop - p.start > 2]
    if not diffs:
        return None
    scale = _robust_scale(np.concatenate(diffs))
    floor = 1e-9 * max(float(np.max(np.abs(y))), 1.0)
    drop_times: list[FloatArray] = []
    intervals: list[FloatArray] = []
    for piece in pieces:
        d = np.diff(y[piece])
        at = t[piece][1:][d < -max(6.0 * scale, floor)]
        drop_times.append(at)
        if at.size > 1:
            intervals.append(np.diff(at))
    drops = sum(a.size for a in drop_times)
    if drops < 3 or not intervals:
        return None
    period = float(np.median(np.concatenate(intervals)))
    covered = sum(float(t[p][-1] - t[p][0]) for p in pieces if p.stop > p.start)
    # a few noise-made "drops" far apart are not a sawtooth: a sawtooth's drops recur all along
    if drops * period < 0.8 * covered:
        return None
    return period


def estimate_growth(
    t: FloatArray,
    y: FloatArray,
    *,
    restarts: FloatArray | None = None,
    window_seconds: float = 600.0,
    confidence: float = 0.95,
    warmup_seconds: float = 0.0,
    warmup_auto: bool = True,
    max_warmup_fraction: float = 0.5,
    min_windows: int = 12,
) -> GrowthEstimate:
    """Estimate the steady growth of a (memory) series; see the module docstring."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y) & np.isfinite(t)
    t, y = t[finite], y[finite]
    origin = float(t[0]) if t.size else 0.0
    x = t - origin
    boundaries = np.asarray(restarts if restarts is not None else [], dtype=np.float64) - origin
    segments = split_at(x, boundaries)
    # fixed warm-up at the start of every segment
    pieces = []
    for seg in segments:
        keep = np.flatnonzero(x[seg] >= x[seg][0] + warmup_seconds)
        if keep.size:
            pieces.append(slice(seg.start + int(keep[0]), seg.stop))
    analysed = sum(float(x[p][-1] - x[p][0]) for p in pieces)
    interval = float(np.median(np.diff(x))) if x.size > 1 else window_seconds
    window = min(window_seconds, analysed / min_windows) if analysed > 0 else window_seconds
    period = sawtooth_period(x, y, pieces)
    if period is not None:
        window = max(window, 1.5 * period)
    window = max(window, 4.0 * interval)

    best: GrowthEstimate | None = None
    best_scale = math.inf
    for how in ("min", "median"):
        pts_t: list[FloatArray] = []
        pts_y: list[FloatArray] = []
        blocks: list[slice] = []
        warm_ends: list[float] = []
        steps: list[float] = []
        used_seconds = 0.0
        offset = 0
        for piece in pieces:
            wx, wy = window_aggregate(x[piece], y[piece], window, how)
            start = 0
            if warmup_auto:
                start = warmup_end(wx, wy, max_fraction=max_warmup_fraction)
                if start:
                    warm_ends.append(float(wx[start] - window / 2.0) + origin)
            wx, wy = wx[start:], wy[start:]
            if wx.size == 0:
                continue
            used_seconds += float(wx[-1] - wx[0]) + window
            cut = level_shift(wy)
            if cut is not None:
                steps.append(float(wx[cut] - window / 2.0) + origin)
                blocks += [slice(offset, offset + cut), slice(offset + cut, offset + wx.size)]
            else:
                blocks.append(slice(offset, offset + wx.size))
            pts_t.append(wx)
            pts_y.append(wy)
            offset += wx.size
        all_t = np.concatenate(pts_t) if pts_t else np.empty(0)
        all_y = np.concatenate(pts_y) if pts_y else np.empty(0)
        diffs = [np.diff(all_y[b]) for b in blocks if b.stop - b.start > 1]
        scale = _robust_scale(np.concatenate(diffs)) if diffs else math.inf
        try:
            fit: SlopeFit | None = theil_sen(all_t, all_y, confidence=confidence, blocks=blocks)
        except ValueError:
            fit = None
        per_segment: list[float | None] = []
        for b in blocks:
            if b.stop - b.start >= 3:
                per_segment.append(theil_sen(all_t[b], all_y[b]).slope * HOUR)
            else:
                per_segment.append(None)
        estimate = GrowthEstimate(
            fit=fit,
            origin=origin,
            aggregate=how,
            window_seconds=window,
            points_t=all_t + origin,
            points_y=all_y,
            blocks=blocks,
            segments=len(segments),
            warmup_ends=warm_ends,
            step_times=steps,
            analysed_seconds=used_seconds,
            segment_slopes_per_hour=per_segment,
        )
        if best is None or (fit is not None and (best.fit is None or scale < best_scale)):
            best, best_scale = estimate, scale
    assert best is not None
    return best
