"""The memory-growth estimate: restart segments -> warm-up -> drops -> regimes -> one slope.

1. The series is cut at restarts (:mod:`soakwatch.analyzer.segments`); each segment keeps its
   own level and only within-segment pairs enter the slope.
2. Each segment skips the configured warm-up, capped at ``max_warmup_fraction`` of the
   segment (a fixed warm-up never eats a whole segment or window; the estimate says when it was
   capped); with automatic detection a longer warm-up ramp is cut too
   (:mod:`soakwatch.analyzer.warmup`).
3. Sudden drops (:func:`segments.drops`) are looked for. When the series climbs back between
   drops by at least half of what each drop gave back, it is a *cycle* (a GC or cache sawtooth
   of any period, or a leak reset by restarts nobody reported; a drop must also give back at
   least a quarter of what a cycle climbs): the estimate then follows the troughs, the level at
   each drop from the line through the next period, and its slope is the slope of the
   troughs (``mode="troughs"``). Cycles that share one within-cycle slope (no spread, no drift
   in time) read their troughs with it; troughs that level off are judged beside a settling
   term, and troughs that themselves fall back and climb are a slower cycle whose floor is
   judged. Drops after which the series stays flat are one-off falls:
   they only cut the series into pieces with their own level, like restarts. Drops only
   matched windows see may establish a cycle (more than :data:`MAX_FALLS` of them), never a
   cut: without a cycle the drops one difference sees decide.
4. Otherwise (``mode="trend"``) each piece is reduced to window medians placed at the mean time
   of their samples; windows are as short as the data allows (at most :data:`POINT_BUDGET`
   points in all, at most the rule's window), so short runs keep their samples. A single piece
   is cut into straight regimes (:func:`segments.change_points`); the slope is judged on the
   last *sustained* regime (:data:`SUSTAINED_SHARE` of the analysed time and ``min_points``
   points) and whatever follows it. Several pieces are judged together, one level each (and one
   level shift per piece, :func:`segments.level_shift`).
5. Blocked Theil-Sen with Sen's interval, widened by the long-run variance factor of the
   residuals (:func:`slopes.long_run_factor`): autocorrelation widens the interval instead of
   coarse windows doing it.

:meth:`GrowthEstimate.seconds_needed` says how much longer a run must go for the interval to
clear a threshold; :attr:`GrowthEstimate.detectable_per_hour` the smallest growth this data could
tell from zero.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from soakwatch.analyzer.segments import (
    change_points,
    difference_noise,
    drop_sets,
    drops,
    level_shift,
    noise_sd,
    split_at,
)
from soakwatch.analyzer.slopes import (
    LineFit,
    SlopeFit,
    line_fit,
    long_run_factor,
    median,
    theil_sen,
    window_points,
)
from soakwatch.analyzer.warmup import warmup_end

__all__ = [
    "MIN_CYCLES",
    "POINT_BUDGET",
    "SETTLING_LEAD",
    "SUSTAINED_SHARE",
    "Cycle",
    "GrowthEstimate",
    "Regime",
    "estimate_growth",
    "sawtooth_period",
]

FloatArray = npt.NDArray[np.float64]
HOUR = 3600.0
POINT_BUDGET = 360  # window points over all pieces (Theil-Sen pairs grow with their square)
SUSTAINED_SHARE = 0.2  # a regime judged on its own spans at least this share of the analysed time
MIN_CYCLES = 10  # troughs a cycle needs before flat troughs pass
SLOWING_Z = 3.09  # one-sided 0.1 %: a straight leak reads as slowing down once in a thousand
SETTLING_Z = 3.0  # a settling term this many standard errors deep marks a warm-up tail
SETTLING_LEAD = 0.5  # a settling term may also be read from this last share of the warm-up
SETTLING_TAUS = 48  # time constants tried for it, geometric from 2 windows to half the span
SETTLING_BLOCK_VALUES = 1 << 18  # design values per block of taus fitted together
TROUGH_SHARE = 1.0  # a trough is read from the samples in this share of a period after a drop
KINK_Z = 3.0  # a trough read over a whole cycle this far from its first half's read is bent
POOL_LEVEL = 0.999  # cycles' slopes spread less than this chi-square quantile: one slope for all
POOL_DRIFT_Z = 1.5  # ... and drift in time by less than this many standard errors
SHIFT_MIN_POINTS = 24  # a restart segment with fewer points is never cut at a level shift
SHARED_Z = 2.0  # a shared warm-up ends where keeping more moves the slope by this many errors
SHARED_MARGIN = 1.5  # a shared warm-up found by that test is kept this much longer
MIN_SHARED = 6  # restart segments whose mean profile may judge their shared warm-up
MAX_FALLS = 3  # at most this many drops without a climb back cut the series like restarts


@dataclass(frozen=True)
class Regime:
    """One straight piece of the trend: times (Unix seconds), slope and interval per hour,
    its window points, and whether the verdict was taken on it."""

    start: float
    end: float
    slope_per_hour: float
    lower_per_hour: float
    upper_per_hour: float
    points: int
    judged: bool


@dataclass(frozen=True)
class Cycle:
    """A series that falls back and climbs again: the median period between drops, how many
    drops and troughs, and the slope within cycles (per hour)."""

    period_seconds: float
    drops: int
    troughs: int
    within_slope_per_hour: float

    @property
    def enough(self) -> bool:
        return self.troughs >= MIN_CYCLES


@dataclass(frozen=True)
class GrowthEstimate:
    """Slope figures are per hour in the series' unit (bytes/hour for memory); ``fit`` is in
    units per second with x relative to ``origin``. ``points_t``/``points_y`` are the points the
    slope was taken from (window medians, or troughs) and ``blocks`` their pieces."""

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
    mode: str = "trend"
    regimes: list[Regime] = field(default_factory=list)
    judged_start: float | None = None
    judged_seconds: float = 0.0
    judged_samples: int = 0
    variance_factor: float = 1.0
    noise: float = 0.0
    warmup_capped: float | None = None  # the fixed warm-up actually skipped, when capped
    # the warm-up skipped instead in restart segments too short for the fixed one, read from
    # their shared shape (:func:`_shared_warmup`)
    warmup_shared: float | None = None
    drop_times: list[float] = field(default_factory=list)
    cycle: Cycle | None = None
    covered_seconds: float = 0.0  # after the fixed warm-up, before any detected one
    # (first half, second half) slopes per hour of the judged data when the growth slows down
    # significantly (the intervals of the two halves do not overlap): a warm-up still settling
    slowing: tuple[float, float] | None = None
    # (slope, lower, upper) per hour of the straight part of y = a + s x - b exp(-x / tau)
    # when the settling term is significant: the growth left once the warm-up is over
    settling: tuple[float, float, float] | None = None
    # the settling term was found only with the second half of the fixed warm-up
    # (SETTLING_LEAD), samples the slope does not judge; and then the slope its fitted tail
    # alone puts on the judged points, per hour: a fail that tail cannot account for stands
    settling_from_warmup: bool = False
    settling_tail_per_hour: float = 0.0
    # (slope, lower bound) per hour between drops, and the drops, when the series fell back
    # more than MAX_FALLS times without a clear climb and was judged as one trend
    between_falls: tuple[float, float, int] | None = None
    # (tau seconds, slope, lower, upper) per hour when every restart segment settles after
    # its start (:func:`_segment_settling`): the slope was judged beside that shape
    segment_settling: tuple[float, float, float, float] | None = None

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

    @property
    def detectable_per_hour(self) -> float:
        """The smallest growth per hour this data tells from zero at the fit's confidence: the
        half-width of the interval (NaN without a fit)."""
        if self.fit is None:
            return math.nan
        return (self.fit.upper - self.fit.lower) / 2.0 * HOUR

    def seconds_needed(self, threshold_per_hour: float) -> float | None:
        """How many more seconds of the same data the interval needs to clear
        ``threshold_per_hour`` (0 when it already does; None when it cannot be estimated: no
        fit, or a slope right at the threshold).

        The half-width of a slope's interval shrinks as T^(-3/2) with the judged time T at a
        fixed sampling rate (sd / sqrt(n) / T with n ~ T), so at the observed slope b and
        half-width h the interval clears the threshold L after T (h / |L - b|)^(2/3). A cycle
        with too few troughs also needs the missing cycles."""
        fit = self.fit
        if fit is None:
            if self.cycle is not None and not self.cycle.enough:
                return (MIN_CYCLES - self.cycle.troughs) * self.cycle.period_seconds
            return None
        slope, lower, upper = (v * HOUR for v in (fit.slope, fit.lower, fit.upper))
        more = 0.0
        if self.cycle is not None and not self.cycle.enough and not lower > threshold_per_hour:
            more = (MIN_CYCLES - self.cycle.troughs) * self.cycle.period_seconds
        if upper < threshold_per_hour or lower > threshold_per_hour:
            return more
        half = (upper - lower) / 2.0
        gap = abs(threshold_per_hour - slope)
        if not (gap > 0 and half > 0 and self.judged_seconds > 0):
            return None
        needed = self.judged_seconds * ((half / gap) ** (2.0 / 3.0)) - self.judged_seconds
        return float(max(needed, more, 0.0))


def _robust_scale(values: FloatArray) -> float:
    if values.size == 0:
        return math.inf
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def sawtooth_period(t: FloatArray, y: FloatArray, pieces: list[slice]) -> float | None:
    """The median interval between drops (:func:`segments.drops`) within ``pieces``, or None
    with fewer than two drops in a piece."""
    found = drops(y, pieces)
    intervals = []
    for piece in pieces:
        inside = [k for k in found if piece.start <= k < piece.stop]
        if len(inside) > 1:
            intervals.append(np.diff(t[inside]))
    if not intervals:
        return None
    return float(np.median(np.concatenate(intervals)))


def _depths(y: FloatArray, found: list[int]) -> FloatArray:
    """How far each drop at ``found`` fell: the median of the three samples before it less the
    median of the three from it (fewer at the ends of the series). One sliding-window median
    for all drops: a 48-hour GC sawtooth has hundreds."""
    at = np.asarray(found, dtype=np.intp)
    out = np.empty(at.size)
    inner = (at >= 3) & (at + 3 <= y.size)
    if y.size >= 3 and inner.any():
        # the medians of the three samples before and from each drop only, not of every
        # window of the series (a 48-hour series has 11,520 of them and a few drops): the
        # same np.median of the same three values
        k = at[inner]
        out[inner] = _median_of_three_rows(y[(k - 3)[:, None] + np.arange(3)]) - (
            _median_of_three_rows(y[k[:, None] + np.arange(3)])
        )
    for i in np.flatnonzero(~inner):
        edge = int(at[i])
        out[i] = float(np.median(y[max(edge - 3, 0) : edge]) - np.median(y[edge : edge + 3]))
    return out


def _median_of_three_rows(rows: FloatArray) -> FloatArray:
    """``np.median(rows, axis=1)`` of an n x 3 array: the middle of each sorted row (one
    value, as np.median gives it), NaN in a row with a NaN; without np.median's fixed cost."""
    ranked = np.sort(rows, axis=1)
    middle = ranked[:, 1].copy()
    middle[np.isnan(ranked[:, 2])] = np.nan  # NaN sorts last
    return np.asarray(middle, dtype=np.float64)


def _gaps(x: FloatArray, pieces: list[slice], found: list[int]) -> FloatArray:
    """The intervals between successive drops within each piece (none across pieces)."""
    at = np.asarray(found, dtype=np.intp)
    out = [np.diff(x[at[(at >= p.start) & (at < p.stop)]]) for p in pieces]
    return np.concatenate(out) if out else np.empty(0)


def _period(gaps: FloatArray) -> float:
    """The period of a cycle from the intervals between its drops: the median of those at
    most 1.5 times their lower quartile. Under noise some drops of a shallow sawtooth go
    unseen and their intervals are two or three periods; the plain median of a sawtooth with
    half its drops missed was twice the period, so each trough was read across a drop."""
    typical = 1.5 * float(np.quantile(gaps, 0.25))
    return float(np.median(gaps[gaps <= typical]))


def _shared_warmup(
    x: FloatArray,
    y: FloatArray,
    segments: list[slice],
    warmup_seconds: float,
    max_fraction: float,
    interval: float,
) -> float | None:
    """The warm-up of restart segments too short for the fixed one, judged by their shape:
    seconds from a segment's first sample from which on the mean profile of all such segments
    (each less its own median after the capped warm-up, sample by sample since the start)
    has the slope of its settled part (after the capped warm-up): starting one sample
    earlier would move that slope by more than :data:`SHARED_Z` standard errors of the
    difference. The slope, not each sample's distance from the line, because a tail of the
    warm-up a little under the noise on each of a few samples still tilts the line through
    them. None with fewer than :data:`MIN_SHARED` such segments.

    Why: a process restarted every 5 minutes with a fixed 15-minute warm-up capped at half a
    segment loses 150 s of each 300, though its warm-up (tau 15 s) is over in about 100 s;
    the slope's standard error grows as the kept span to the power -3/2. One segment's start
    is too noisy to judge alone; the same process restarted many times shows the same
    warm-up, and their mean has the noise divided by the root of their number. The result is
    never longer than the capped warm-up (``max_fraction`` of the longest such segment), and a
    segment skips the shorter of the two."""
    short = [
        seg
        for seg in segments
        if seg.stop - seg.start >= 4 and warmup_seconds > max_fraction * float(np.ptp(x[seg]))
    ]
    if len(short) < MIN_SHARED:
        return None
    longest = max(float(np.ptp(x[seg])) for seg in short)
    cap = max_fraction * longest
    steps = round(cap / interval)
    if steps < 2:
        return None
    size = round(longest / interval) + 1
    total, count = np.zeros(size), np.zeros(size)
    for seg in short:
        u = np.rint((x[seg] - x[seg][0]) / interval).astype(np.intp)
        inside = u < size
        u, v = u[inside], y[seg][inside]
        settled = u >= steps
        if np.count_nonzero(settled) < 2:
            continue
        np.add.at(total, u, v - median(v[settled]))  # np.median's figure, cheaper
        np.add.at(count, u, 1.0)
    seen = count >= MIN_SHARED
    k = np.flatnonzero(seen)
    tail = k[k >= steps]
    if tail.size < 3 or not seen[:steps].all():
        return None
    profile = total[seen] / count[seen]
    weight = count[seen]
    sigma = noise_sd(y, [slice(seg.start + steps, seg.stop) for seg in short])
    u = k.astype(np.float64)

    def line(c: int) -> tuple[float, float]:
        """Weighted slope of the profile from position c on, and 1 / its weighted Sxx."""
        w, a, b = weight[c:], u[c:], profile[c:]
        mean = float(np.dot(w, a) / w.sum())
        sxx = float(np.dot(w, (a - mean) ** 2))
        return float(np.dot(w, (a - mean) * b) / sxx), 1.0 / sxx

    settled_slope, settled_inverse = line(steps)
    first = 0
    for c in range(steps - 1, -1, -1):
        slope, inverse = line(c)
        # nested least squares: the difference has the variance of the smaller set less that
        # of the larger one
        spread = sigma * math.sqrt(max(settled_inverse - inverse, 0.0))
        if abs(slope - settled_slope) > SHARED_Z * spread:
            first = c + 1
            break
    # the test misses a tail that tilts the slope by less than its error; half as long again
    # leaves an exponential tail at the power 3/2 of what was missed
    return float(min(SHARED_MARGIN * first * interval, cap))


def _climb_fit(
    x: FloatArray, y: FloatArray, blocks: list[slice], depth: float, period: float
) -> LineFit:
    """:func:`line_fit` of the climbs of a cycle, for the cycle test of :func:`estimate_growth`
    (slope less 2 standard errors above 0, slope x period within 0.5 to 4 drop depths).

    Its variance factor is left at 1 (its stderr then understated) when even the largest it
    can take leaves that test passed: the factor is at most 1 + its bandwidth (every
    autocorrelation is at most 1 and the Bartlett weights sum to the bandwidth), taken twice
    here against rounding. The test's outcome is then known, and the caller, once the test
    passes, reads only the slope, which the factor does not change. Why: the factor of a
    48-hour sawtooth's thousands of residuals (some 35 lagged dot products) was the dearest
    part of the fit, and a GC sawtooth clears the test by far."""
    rough = line_fit(x, y, blocks=blocks, variance_factor=1.0)
    bandwidth = math.ceil(1.5 * x.size ** (1.0 / 3.0))
    widest = rough.stderr * math.sqrt(2.0 * (1.0 + bandwidth))
    if rough.slope - 2.0 * widest > 0 and 0.5 * depth <= rough.slope * period <= 4.0 * depth:
        return rough
    return line_fit(x, y, blocks=blocks)


def _split(pieces: list[slice], cuts: list[int]) -> list[slice]:
    """``pieces`` cut before each index of ``cuts`` inside them (in the order of ``cuts``)."""
    at = np.asarray(cuts, dtype=np.intp)
    out: list[slice] = []
    for piece in pieces:
        inner = at[(at > piece.start) & (at < piece.stop)]
        edges = np.concatenate(([piece.start], inner, [piece.stop]))
        keep = edges[1:] > edges[:-1]
        # the slices made by map, not one at a time: a 48-hour sawtooth has thousands
        out += map(slice, edges[:-1][keep].tolist(), edges[1:][keep].tolist())
    return out


def _fit(
    x: FloatArray, y: FloatArray, blocks: list[slice], confidence: float
) -> tuple[SlopeFit | None, float]:
    """Blocked Theil-Sen whose interval carries the residuals' long-run variance factor."""
    try:
        first = theil_sen(x, y, confidence=confidence, blocks=blocks)
    except ValueError:
        return None, 1.0
    used = [b for b in blocks if x[b].size]
    residuals = np.concatenate(
        [y[b] - first.slope * x[b] - c for b, c in zip(used, first.intercepts, strict=True)]
    )
    edges, offset = [], 0
    for b in used:
        edges.append(slice(offset, offset + x[b].size))
        offset += x[b].size
    factor = long_run_factor(residuals, blocks=edges)
    if factor <= 1.0:
        return first, 1.0
    return theil_sen(x, y, confidence=confidence, blocks=blocks, variance_factor=factor), factor


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
    min_points: int = 8,
) -> GrowthEstimate:
    """Estimate the steady growth of a (memory) series; see the module docstring.

    ``min_windows`` is kept for callers of the earlier signature (windows are now sized by
    :data:`POINT_BUDGET`); ``min_points`` is the fewest points a regime needs to be judged on
    its own."""
    del min_windows
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y) & np.isfinite(t)
    t, y = t[finite], y[finite]
    order = np.argsort(t, kind="stable")
    t, y = t[order], y[order]
    origin = float(t[0]) if t.size else 0.0
    x = t - origin
    boundaries = np.asarray(restarts if restarts is not None else [], dtype=np.float64) - origin
    restart_segments = split_at(x, boundaries)
    interval = median(x[1:] - x[:-1]) if x.size > 1 else window_seconds
    # fixed warm-up at the start of every segment, at most max_warmup_fraction of it; in
    # segments begun by a restart and shorter than the warm-up, the warm-up their shared
    # shape shows
    shared = (
        _shared_warmup(x, y, restart_segments[1:], warmup_seconds, max_warmup_fraction, interval)
        if warmup_seconds > 0 and len(restart_segments) > 1
        else None
    )
    pieces: list[slice] = []
    capped: float | None = None
    first_skip = 0.0
    for index, seg in enumerate(restart_segments):
        span = float(x[seg][-1] - x[seg][0])
        skip = warmup_seconds
        if skip > 0 and skip > max_warmup_fraction * span:
            skip = max_warmup_fraction * span
            capped = skip if capped is None else max(capped, skip)
            if shared is not None and index > 0:
                skip = min(shared, skip)
        if index == 0:
            first_skip = skip
        keep = np.flatnonzero(x[seg] >= x[seg][0] + skip)
        if keep.size:
            pieces.append(slice(seg.start + int(keep[0]), seg.stop))
    # the differences' median, read once for the noise and the drops (the same figures)
    noise = difference_noise(y, pieces)
    sigma = noise_sd(y, pieces, noise=noise) if pieces else 0.0
    step = interval if x.size > 1 else 0.0  # a sample stands for one interval
    covered = sum(float(x[p][-1] - x[p][0]) + step for p in pieces)

    def empty(**extra: object) -> GrowthEstimate:
        return GrowthEstimate(
            fit=None,
            origin=origin,
            aggregate="median",
            window_seconds=window_seconds,
            points_t=np.empty(0),
            points_y=np.empty(0),
            blocks=[],
            segments=len(restart_segments),
            warmup_ends=[],
            step_times=[],
            analysed_seconds=0.0,
            noise=sigma,
            warmup_capped=capped,
            warmup_shared=shared,
            covered_seconds=covered,
            **extra,  # type: ignore[arg-type]  # only the keyword fields of the dataclass
        )

    if not pieces:
        return empty()

    # -- drops: cycles (follow the troughs) or one-off falls (cut there) --------------------
    # Drops that only matched windows see (segments.drops) may establish a cycle; when they
    # do not, the series is decided by the drops one difference sees, as if the others were
    # unseen: a cycle of which windows saw 3 of 6 drops under 9.5 MB of noise, cut there as
    # one-off falls, read each ramp as growth (a false fail at 35 MB/h), and a leak reset by
    # one restart must still be cut at its fall; and they need more than MAX_FALLS drops (one
    # window drop under 38 MB of noise on a 48-hour leak read as "one cycle seen")
    clear, found = drop_sets(y, pieces, noise=noise)
    attempts = [found]
    if found:
        if len(found) <= MAX_FALLS:
            attempts = [clear]  # a cycle seen by windows alone needs more than a few drops
        elif clear != found:
            attempts.append(clear)
    split_by_drops = False
    between: tuple[float, float, int] | None = None
    for found in attempts:
        drop_times = t[np.asarray(found, dtype=np.intp)].tolist()  # one gather: thousands
        if found:
            cycle_pieces = _split(pieces, found)
            depths = _depths(y, found)
            gaps = _gaps(x, pieces, found)
            period = _period(gaps) if gaps.size else float(x[pieces[-1].stop - 1] - x[found[-1]])
            # the climb within cycles, from the pieces no longer than 1.5 periods: under noise
            # some drops of a shallow sawtooth go unseen, and a piece holding one climbs far less
            # than a cycle does (a third of the depth per period, for a sawtooth of 35 MB under
            # 4 MB noise with a third of its drops missed), which read as no cycle at all
            climbs = [p for p in cycle_pieces if p.stop - p.start > 1]
            # (without two drops in a piece there is no period to hold a piece to)
            # (the spans of all climbs in one subtraction: a 48-hour sawtooth has thousands)
            spans = x[[p.stop - 1 for p in climbs]] - x[[p.start for p in climbs]]
            whole = list(itertools.compress(climbs, (spans <= 1.5 * period).tolist()))
            whole = whole if gaps.size else climbs
            # a cycle climbs back at least half of what a drop gives back, and a drop gives back
            # at least a quarter of what a cycle climbed: a small fall in a long climb is no cycle
            # (amplitudes that change 4-fold mid-run still are one)
            depth = median(depths)
            try:
                within = _climb_fit(x, y, whole or climbs, depth, period)
            except ValueError:
                within = None
            climbing = (
                within.slope
                if within is not None
                and within.slope - 2.0 * within.stderr > 0
                and 0.5 * depth <= within.slope * period <= 4.0 * depth
                else None
            )
            if climbing is not None:
                return replace(
                    _troughs(
                        x,
                        y,
                        t,
                        origin,
                        pieces,
                        found,
                        period,
                        climbing,
                        interval,
                        sigma,
                        confidence,
                        restart_segments,
                        capped,
                    ),
                    warmup_shared=shared,
                )
            if found is not attempts[-1]:
                continue  # no cycle with the window drops: decided by those of one difference
            if len(found) <= MAX_FALLS:
                # a few falls the series does not climb back from: pieces with their own level
                pieces = cycle_pieces
                split_by_drops = True
            elif within is not None:
                # many falls without a clear climb between them: a noisy or partly seen cycle, or
                # restarts nobody reported; judged as one trend (its periodic residuals carried by
                # the variance factor), the slope between the falls kept to say so
                z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
                between = (
                    within.slope * HOUR,
                    (within.slope - z * within.stderr) * HOUR,
                    len(found),
                )

    # -- window medians, as short as the point budget allows --------------------------------
    analysed = sum(float(x[p][-1] - x[p][0]) for p in pieces)
    overall = max(interval, min(window_seconds, analysed / POINT_BUDGET))
    pts_t: list[FloatArray] = []
    pts_y: list[FloatArray] = []
    warm_ends: list[float] = []
    used_windows: list[float] = []
    for piece in pieces:
        span = float(x[piece][-1] - x[piece][0])
        window = max(interval, min(overall, span / 8.0)) if span > 0 else interval
        wx, wy = window_points(x[piece], y[piece], window, "median")
        uncut = (wx, wy)
        start = 0
        if warmup_auto:
            start = warmup_end(wx, wy, max_fraction=max_warmup_fraction)
            if start:
                warm_ends.append(float(wx[start]) + origin)
        wx, wy = wx[start:], wy[start:]
        if wx.size:
            pts_t.append(wx)
            pts_y.append(wy)
            used_windows.append(window)
    if not pts_t:
        return empty(drop_times=drop_times)
    window = median(used_windows)

    regimes_bounds: list[tuple[int, int]] = []  # (start, stop) into the concatenated points
    steps: list[float] = []
    all_t = np.concatenate(pts_t)
    all_y = np.concatenate(pts_y)
    offsets = np.cumsum([0] + [a.size for a in pts_t])
    judged: list[slice]
    if len(pts_t) == 1:
        cuts = change_points(all_t, all_y, min_size=max(min_points, all_t.size // 20))
        edges = [0, *cuts, all_t.size]
        regimes_bounds = list(itertools.pairwise(edges))
        total = covered  # the share is of all the data after the fixed warm-up
        last = 0
        for index, (a, b) in enumerate(regimes_bounds):
            span = float(all_t[b - 1] - all_t[a])
            if span >= SUSTAINED_SHARE * total and b - a >= min_points:
                last = index
        judged = [slice(a, b) for a, b in regimes_bounds[last:]]
        # a cut where the level jumps (not only the slope bends) is a step
        for a, b in itertools.pairwise(edges):
            if a == 0:
                continue
            left = slice(max(edges[edges.index(a) - 1], a - 8), a)
            right = slice(a, min(b, a + 8))
            jump = float(np.median(all_y[right]) - np.median(all_y[left]))
            trend = float(np.median(np.diff(all_y))) * 8
            if abs(jump - trend) > 6.0 * max(sigma, 1e-9):
                steps.append(float(all_t[a]) + origin)
    else:
        judged = []
        for i in range(len(pts_t)):
            a, b = int(offsets[i]), int(offsets[i + 1])
            regimes_bounds.append((a, b))
            # one level shift per restart segment; pieces cut at drops keep theirs whole (a
            # shift there is more likely an unseen drop of a noisy cycle than a step), and so
            # do short segments: with a handful of points on each side noise reads as a jump,
            # and a false cut halves what a 5-minute segment gives the slope
            cut = (
                level_shift(all_y[a:b])
                if b - a >= SHIFT_MIN_POINTS and not split_by_drops
                else None
            )
            if cut is not None:
                steps.append(float(all_t[a + cut]) + origin)
                judged += [slice(a, a + cut), slice(a + cut, b)]
            else:
                judged.append(slice(a, b))
        last = 0
    fit, factor = _fit(all_t, all_y, judged, confidence)
    # only where the fixed warm-up was capped: a segment long enough skips its warm-up whole
    short = [
        seg
        for seg in restart_segments[1:]
        if warmup_seconds > max_warmup_fraction * float(x[seg][-1] - x[seg][0])
    ]
    segment_settling = (
        _segment_settling(x, y, short, confidence, interval)
        if fit is not None and len(pts_t) > 1 and not split_by_drops
        else None
    )
    if fit is not None and segment_settling is not None:
        # the slope beside the shape every segment shares; its interval is the union over the
        # plausible time constants, so a leak under the warm-ups still fails
        _, s_hour, low_hour, high_hour = segment_settling
        fit = replace(fit, slope=s_hour / HOUR, lower=low_hour / HOUR, upper=high_hour / HOUR)
    judged_from = judged[0].start
    slowing = (
        _slowing(all_t, all_y, judged, confidence) if fit is not None and len(pts_t) == 1 else None
    )
    settling = (
        _settling(uncut[0], uncut[1], confidence, window)
        if fit is not None and len(pts_t) == 1
        else None
    )
    settling_lead = False
    tail_slope = 0.0
    if (
        settling is None
        and fit is not None
        and fit.lower > 0  # only where a fail could stand
        and len(restart_segments) == 1
        and len(pieces) == 1
        and first_skip > 0
    ):
        # The settling term read from the last SETTLING_LEAD of the fixed warm-up on: a
        # warm-up's tail decays with the time constant it had in the warm-up, where it is
        # deeper. From the judged data alone, a creep of 20-60 MB with tau 10-20 minutes left
        # 5-28 MB after a 15-minute warm-up, 1.5-3 standard errors deep under 10 MB of noise,
        # and failed 10 of 200 leak-free 2-hour runs; from half the warm-up on, 3 of 800 (four
        # seeds). The slope judged still starts after the whole warm-up. (The first half of a
        # warm-up is often another, faster shape: JIT, pools opening.)
        begin = int(np.searchsorted(x, (1.0 - SETTLING_LEAD) * first_skip))
        lead_x, lead_y = window_points(
            x[begin : pieces[0].stop], y[begin : pieces[0].stop], window, "median"
        )
        tail_found = _settling_tail(lead_x, lead_y, confidence, window, all_t[judged_from:])
        if tail_found is not None:
            settling, tail_slope = tail_found
            settling_lead = True
    regimes: list[Regime] = []
    for index, (a, b) in enumerate(regimes_bounds):
        part, _ = _fit(all_t[a:b], all_y[a:b], [slice(0, b - a)], confidence)
        regimes.append(
            Regime(
                start=float(all_t[a]) + origin,
                end=float(all_t[b - 1]) + origin,
                slope_per_hour=part.slope * HOUR if part else math.nan,
                lower_per_hour=part.lower * HOUR if part else math.nan,
                upper_per_hour=part.upper * HOUR if part else math.nan,
                points=b - a,
                judged=index >= last or len(pts_t) > 1,
            )
        )
    per_block: list[float | None] = []
    for blk in judged:
        if blk.stop - blk.start >= 3:
            per_block.append(theil_sen(all_t[blk], all_y[blk]).slope * HOUR)
        else:
            per_block.append(None)
    start_x = float(all_t[judged_from]) - window / 2.0
    judged_seconds = sum(
        float(all_t[b][-1] - all_t[b][0]) + window for b in judged if b.stop > b.start
    )
    in_pieces = np.zeros(x.size, dtype=bool)
    for p in pieces:
        in_pieces[p] = True
    judged_samples = int(np.count_nonzero(in_pieces & (x >= start_x)))
    return GrowthEstimate(
        fit=fit,
        origin=origin,
        aggregate="median",
        window_seconds=window,
        points_t=all_t[judged_from:] + origin,
        points_y=all_y[judged_from:],
        blocks=[slice(b.start - judged_from, b.stop - judged_from) for b in judged],
        segments=len(restart_segments),
        warmup_ends=warm_ends,
        step_times=steps,
        analysed_seconds=sum(float(a[-1] - a[0]) + window for a in pts_t),
        segment_slopes_per_hour=per_block,
        mode="trend",
        regimes=regimes,
        judged_start=float(all_t[judged_from]) + origin,
        judged_seconds=judged_seconds,
        judged_samples=judged_samples,
        variance_factor=factor,
        noise=sigma,
        warmup_capped=capped,
        warmup_shared=shared,
        drop_times=drop_times,
        covered_seconds=covered,
        slowing=slowing,
        settling=settling,
        settling_from_warmup=settling_lead,
        settling_tail_per_hour=tail_slope,
        between_falls=between,
        segment_settling=segment_settling,
    )


def _segment_settling(
    x: FloatArray, y: FloatArray, segments: list[slice], confidence: float, interval: float
) -> tuple[float, float, float, float] | None:
    """A warm-up every restart segment settles from: least squares of
    y = a_k + s u + b_k exp(-u / tau) (u the time since segment k's first sample; a level and
    a depth per segment, s and tau shared) over a grid of tau (one sample interval .. half the
    longest segment). When the mean depth is negative (a rise levelling off) by more than
    :data:`SETTLING_Z` standard errors (from the spread of the segments' depths) at the best
    tau: (tau, s, lower, upper) per hour, s's interval (long-run variance factor over the
    segments as blocks) the union over the plausible taus as in :func:`_settling`; None
    otherwise, or with fewer than :data:`MIN_SHARED` segments begun by a restart.

    Why: a fixed warm-up capped at a share of each short segment leaves the tail of the
    exponential in every segment, and the within-segment slope reads it as steady growth (a
    process restarted every 5 minutes with tau 40-60 s failed 30 of 30 leak-free runs over
    12 h). A leak restarted as often climbs straight within each segment: its depths are not
    significant, or its s stays above the threshold. One depth per segment, not one for all:
    the first sample falls anywhere in the first interval after the restart (up to 15 s, a
    third of a 40-second warm-up's depth), and a shared depth read that spread as slope
    (-11 MB/h on a leak-free trace). Levels and depths are projected out within segments,
    for all taus at once."""
    used = [seg for seg in segments if seg.stop - seg.start >= 4]
    if len(used) < MIN_SHARED:
        return None
    counts = np.asarray([seg.stop - seg.start for seg in used], dtype=np.intp)
    starts = np.cumsum(counts) - counts
    u = np.concatenate([x[seg] - x[seg][0] for seg in used])
    v = np.concatenate([y[seg] for seg in used])
    longest = float(np.max(u[starts + counts - 1]))
    dof = u.size - 2 * len(used) - 1
    if not longest > 4 * interval or dof < 8:
        return None

    def within(values: FloatArray) -> FloatArray:
        """Sums of ``values`` (..., samples) within each segment."""
        return np.add.reduceat(values, starts, axis=-1)

    def demean(values: FloatArray) -> FloatArray:
        return values - np.repeat(within(values) / counts, counts, axis=-1)

    yc = demean(v)
    uc = demean(u / longest)

    def fit(taus: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """Slope, squared error and Sxx of the slope per tau, and the best tau's residuals and
        depths."""
        ec = demean(np.exp(-u[None, :] / taus[:, None]))
        see = np.maximum(within(ec * ec), 1e-300)
        seu, sey = within(ec * uc), within(ec * yc)
        ur = uc - np.repeat(seu / see, counts, axis=-1) * ec
        yr = yc - np.repeat(sey / see, counts, axis=-1) * ec
        suu = np.einsum("tn,tn->t", ur, ur)
        slopes = np.einsum("tn,tn->t", ur, yr) / suu
        residuals = yr - slopes[:, None] * ur
        sses = np.einsum("tn,tn->t", residuals, residuals)
        best = int(np.argmin(sses))
        depths = (sey[best] - slopes[best] * seu[best]) / see[best]
        return slopes, sses, suu, residuals[best], depths

    # s leans hard on tau when the warm-up is deep against the noise (80 MB under 1 MB: 5 %
    # in tau moved s by 12 MB/h), so the grid is refined twice around the best tau; every
    # tau tried enters the plausible set
    taus = np.geomspace(interval, longest / 2, SETTLING_TAUS)
    tried: list[FloatArray] = []
    slopes: list[FloatArray] = []
    sses: list[FloatArray] = []
    suu: list[FloatArray] = []
    for _ in range(3):
        slope_t, sse_t, suu_t, residuals_t, depths_t = fit(taus)
        if not sses or float(np.min(sse_t)) <= float(np.min(np.concatenate(sses))):
            residuals, depths = residuals_t, depths_t
        tried.append(taus)
        slopes.append(slope_t)
        sses.append(sse_t)
        suu.append(suu_t)
        at = int(np.argmin(sse_t))
        taus = np.geomspace(taus[max(at - 1, 0)], taus[min(at + 1, taus.size - 1)], SETTLING_TAUS)
    all_taus, all_slopes = np.concatenate(tried), np.concatenate(slopes)
    all_sses, all_suu = np.concatenate(sses), np.concatenate(suu)
    best = int(np.argmin(all_sses))
    spread = float(np.std(depths, ddof=1)) / math.sqrt(depths.size)
    if not (spread > 0 and float(np.mean(depths)) < -SETTLING_Z * spread):
        return None
    edges = [slice(int(a), int(a + n)) for a, n in zip(starts, counts, strict=True)]
    variance = float(all_sses[best]) / dof * long_run_factor(residuals, blocks=edges)
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    inside = all_sses <= all_sses[best] + z * z * variance
    here = all_slopes[inside] / longest * HOUR
    halves = z * np.sqrt(variance / all_suu[inside]) / longest * HOUR
    low, high = float(np.min(here - halves)), float(np.max(here + halves))
    return float(all_taus[best]), float(all_slopes[best]) / longest * HOUR, low, high


def _slowing(
    x: FloatArray, y: FloatArray, blocks: list[slice], confidence: float
) -> tuple[float, float] | None:
    """The slopes per hour at the start and at the end of the judged points when the growth
    slows down significantly: the quadratic term of y = a_block + b x + c x^2 is negative by
    more than :data:`SLOWING_Z` of its standard error (with the residuals' long-run variance
    factor), and the slope at the start is positive. None otherwise."""
    del confidence
    used = [b for b in blocks if b.stop - b.start >= 8]
    if not used:
        return None
    scale = max(float(x[used[-1].stop - 1] - x[used[0].start]), 1e-9)
    columns, target, edges = [], [], []
    offset = 0
    for b in used:
        u = (x[b] - x[used[0].start]) / scale
        columns.append(np.column_stack((u - u.mean(), u * u - (u * u).mean())))  # np.c_, cheaper
        target.append(y[b] - y[b].mean())
        edges.append(slice(offset, offset + u.size))
        offset += u.size
    design = np.concatenate(columns)
    values = np.concatenate(target)
    if not values.any():
        return None  # flat in every block (a constant count): c is exactly 0, never negative
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    residuals = values - design @ coefficients
    dof = values.size - 2 - len(used)
    if dof < 4:
        return None
    variance = float(np.dot(residuals, residuals)) / dof
    factor = long_run_factor(residuals, blocks=edges)
    try:
        inverse = np.linalg.inv(design.T @ design)
    except np.linalg.LinAlgError:
        return None
    se_c = math.sqrt(max(variance * factor * float(inverse[1, 1]), 0.0))
    b_lin, c = float(coefficients[0]), float(coefficients[1])
    start, end = b_lin / scale * HOUR, (b_lin + 2.0 * c) / scale * HOUR
    if se_c > 0 and c < -SLOWING_Z * se_c and start > 0:
        return start, end
    return None


def _settling(
    x: FloatArray, y: FloatArray, confidence: float, window: float
) -> tuple[float, float, float] | None:
    """:func:`_settling_tail`'s (s, lower, upper) per hour."""
    found = _settling_tail(x, y, confidence, window, x)
    return found[0] if found is not None else None


def _settling_tail(
    x: FloatArray, y: FloatArray, confidence: float, window: float, judged_x: FloatArray
) -> tuple[tuple[float, float, float], float] | None:
    """A warm-up still settling: least squares of y = a + s x + b exp(-(x - x0) / tau) over a
    grid of tau (2 windows .. half the span, refined twice around the best near a term); when
    b is negative (a rise levelling off) by more than :data:`SETTLING_Z` standard errors at
    the best tau, the slope s there with an interval (long-run variance factor applied), per
    hour; and the growth per hour the fitted tail b exp(-(x - x0) / tau) at the best tau
    alone puts on the points at ``judged_x`` (least-squares slope): what the tail accounts
    for there. None when no such term is significant.

    s leans on tau: along a flat valley of the squared error (tau from 13 to 17 minutes on a
    cache fill under 10 MB of noise) s goes from 5 MB/h to 0. So the interval is the union of
    the intervals of s over every tau whose squared error is within the profile bound of the
    best (Delta SSE <= z^2 f SSE_min / dof, the likelihood-ratio set for one parameter), not
    the interval at the best tau alone, which read a warm-up tail as steady growth.

    The taus are fitted together, a block at a time. The level is projected out first (every
    column less its mean, Frisch-Waugh), which leaves a 2 x 2 system in s and b per tau, solved
    in closed form: the figures of a least-squares solver to rounding, without the stacked QR
    of (tau, samples, 3) designs that cost thread and fd series 2 ms each."""
    if x.size < 24:
        return None
    u = x - x[0]
    span = float(u[-1])
    if not span > 8 * window:
        return None
    yc = y - y.mean()
    if not yc.any():
        return None  # a constant count: s = b = 0 exactly at every tau, no settling term
    grid = np.geomspace(2 * window, span / 2, SETTLING_TAUS)
    v = u / span
    vc = v - v.mean()
    svv, svy = float(np.dot(vc, vc)), float(np.dot(vc, yc))
    dof = u.size - 4
    parts: list[tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]] = []

    def fit(taus: FloatArray) -> None:
        """Fits at ``taus`` appended to ``parts``, a block at a time: the (block, samples)
        arrays stay under ~2 MB for 7 days."""
        block = max(1, min(taus.size, SETTLING_BLOCK_VALUES // u.size))
        for first in range(0, taus.size, block):
            tried = taus[first : first + block]
            ec = np.exp(-u[None, :] / tried[:, None])
            ec -= ec.mean(axis=1, keepdims=True)
            sve, sey = ec @ vc, ec @ yc
            see = np.einsum("tn,tn->t", ec, ec)
            det = svv * see - sve * sve
            solvable = det > 0
            if not solvable.any():
                continue
            ec, sve, sey = ec[solvable], sve[solvable], sey[solvable]
            see, det = see[solvable], det[solvable]
            s_fit = (see * svy - sve * sey) / det
            b_fit = (svv * sey - sve * svy) / det
            residuals = yc[None, :] - s_fit[:, None] * vc[None, :] - b_fit[:, None] * ec
            squares = np.einsum("tn,tn->t", residuals, residuals)
            # the (s, b) block of (D'D)^-1 is the inverse of the centred 2 x 2 system
            found = np.stack([s_fit, b_fit], axis=1)
            inverse = np.stack([see / det, svv / det], axis=1)
            best_here = residuals[int(np.argmin(squares))]
            parts.append((found, squares, inverse, best_here, tried[solvable]))

    def best() -> tuple[int, float, float]:
        """The best tau so far: its index into the joined parts, the variance (long-run
        factor applied) and how many standard errors b is negative there."""
        sses = np.concatenate([p[1] for p in parts])
        at = int(np.argmin(sses))
        # its residuals: kept from its block (the first minimum, as np.argmin takes)
        owner = int(np.searchsorted(np.cumsum([p[1].size for p in parts]), at, side="right"))
        variance = float(sses[at]) / dof * long_run_factor(parts[owner][3])
        offset = at - sum(p[1].size for p in parts[:owner])
        se_b = math.sqrt(max(variance * float(parts[owner][2][offset, 1]), 0.0))
        depth = -float(parts[owner][0][offset, 1]) / se_b if se_b > 0 else 0.0
        return at, variance, depth

    fit(grid)
    if not parts:
        return None
    at, variance, depth = best()
    # s leans hard on tau when the term is deep against the noise (a 300 MB fill read from
    # the second half of a 15-minute warm-up under 5 MB: 10 % in tau moved s by 4 MB/h, a
    # false fail), so near a settling term the grid is refined twice around the best tau, as
    # in :func:`_segment_settling`; every tau tried enters the plausible set
    for _ in range(2 if depth > 0.5 * SETTLING_Z else 0):
        taus = np.concatenate([p[4] for p in parts])
        order = np.sort(taus)
        k = int(np.searchsorted(order, taus[at]))
        fit(np.geomspace(order[max(k - 1, 0)], order[min(k + 1, order.size - 1)], SETTLING_TAUS))
        at, variance, depth = best()
    if not depth > SETTLING_Z:
        return None
    coefficients = np.concatenate([p[0] for p in parts])
    sses = np.concatenate([p[1] for p in parts])
    inverses = np.concatenate([p[2] for p in parts])
    interval = _over_plausible_taus(
        coefficients[:, 0], inverses[:, 0], sses, at, variance, confidence, span, HOUR
    )
    centred = judged_x - judged_x.mean()
    sxx = float(np.dot(centred, centred))
    if not sxx > 0:
        return interval, 0.0
    tau = float(np.concatenate([p[4] for p in parts])[at])
    tail = float(coefficients[at, 1]) * np.exp(-(judged_x - x[0]) / tau)
    return interval, float(np.dot(centred, tail)) / sxx * HOUR


def _over_plausible_taus(
    slopes: FloatArray,
    inverse: FloatArray,
    sses: FloatArray,
    best: int,
    variance: float,
    confidence: float,
    span: float,
    unit: float,
) -> tuple[float, float, float]:
    """(s, lower, upper) of a settling fit, ``slopes`` being s·span per tau and ``inverse``
    their (D'D)^-1 entries, in ``unit`` (HOUR: per hour; 1: per second): s at the best tau,
    the interval the union of the intervals of s over every tau whose squared error is within
    the profile bound of the best (Delta SSE <= z^2 variance)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    inside = sses <= float(sses[best]) + z * z * variance
    slopes_here = slopes[inside] / span * unit
    halves = z * np.sqrt(np.maximum(variance * inverse[inside], 0.0)) / span * unit
    low, high = float(np.min(slopes_here - halves)), float(np.max(slopes_here + halves))
    return float(slopes[best]) / span * unit, low, high


def _trough_levels(
    x: FloatArray,
    y: FloatArray,
    begins: npt.NDArray[np.intp],
    stops: npt.NDArray[np.intp],
    at: FloatArray,
    spans: FloatArray,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.intp]]:
    """For each trough ``g``: the level at ``at[g]`` from the line through the samples from
    ``begins[g]`` within ``spans[g]`` seconds and before ``stops[g]`` (the next drop), that
    level's standard error in units of the sample noise, and the number of samples read. A
    steeper climb (a larger amplitude) does not lift the trough. With fewer than three samples
    (or one instant) the level is their median; with none it is NaN. All lines come from
    grouped sums, not one fit per trough: a 48-hour GC sawtooth has hundreds."""
    ends = np.minimum(stops, np.searchsorted(x, x[begins] + spans, side="left"))
    counts = np.maximum(ends - begins, 0)
    level = np.full(begins.size, math.nan)
    spread = np.full(begins.size, math.inf)
    some = np.flatnonzero(counts > 0)
    if some.size == 0:
        return level, spread, counts
    n = counts[some]
    first = np.cumsum(n) - n
    # every sample of every trough read, grouped: trough g holds begins[g] .. ends[g] - 1
    index = np.repeat(begins[some] - first, n) + np.arange(int(n.sum()))
    owner = np.repeat(np.arange(some.size), n)
    u = x[index] - at[some][owner]
    v = y[index]
    mean_u = np.add.reduceat(u, first) / n
    mean_v = np.add.reduceat(v, first) / n
    du = u - mean_u[owner]
    sxx = np.add.reduceat(du * du, first)
    sxy = np.add.reduceat(du * (v - mean_v[owner]), first)
    line = (n >= 3) & (x[ends[some] - 1] - x[begins[some]] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        level[some] = np.where(line, mean_v - sxy / sxx * mean_u, math.nan)
        spread[some] = np.where(line, np.sqrt(1.0 / n + mean_u**2 / sxx), math.inf)
    # one or two samples (most troughs without a line): their median is their mean, the
    # very figure np.median gives ((a + b) / 2), taken for all such troughs at once instead
    # of one np.median call each (some 17,000 calls in a 1,000-service fleet)
    few = some[~line & (n <= 2)]
    if few.size:
        pair = np.minimum(begins[few] + 1, ends[few] - 1)
        level[few] = np.where(counts[few] == 2, (y[begins[few]] + y[pair]) / 2.0, y[begins[few]])
        spread[few] = 1.2533 / np.sqrt(counts[few].astype(np.float64))
    for g in some[~line & (n > 2)]:
        level[g] = float(np.median(y[begins[g] : ends[g]]))
        spread[g] = 1.2533 / math.sqrt(int(counts[g]))
    return level, spread, counts


def _trough_fit(
    px: FloatArray,
    py: FloatArray,
    spread: FloatArray,
    blocks: list[slice],
    sigma: float,
    confidence: float,
) -> SlopeFit | None:
    """The troughs' :func:`_weighted_line` as a fit with its normal interval; None without a
    line or with a zero standard error."""
    line = _weighted_line(px, py, spread, blocks, sigma)
    if line is None or not line[1] > 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    slope, stderr, intercepts = line
    return SlopeFit(
        slope=slope,
        lower=slope - z * stderr,
        upper=slope + z * stderr,
        intercepts=intercepts,
        points=int(px.size),
        pairs=0,
        confidence=confidence,
    )


def _weighted_line(
    px: FloatArray, py: FloatArray, spread: FloatArray, blocks: list[slice], sigma: float
) -> tuple[float, float, tuple[float, ...]] | None:
    """Weighted least squares of the troughs, one level per block: each trough weighs
    1/spread² (its variance in units of the sample noise), the residual sd is at least
    ``sigma``. Slope, its standard error and the blocks' intercepts; None without two distinct
    times in some block."""
    w = 1.0 / spread**2
    centred_x, centred_y, weights, intercepts = [], [], [], []
    if not any(blk.stop - blk.start > 1 and float(np.ptp(px[blk])) > 0 for blk in blocks):
        return None
    for blk in blocks:
        bw, bx, by = w[blk], px[blk], py[blk]
        mx, my = float(np.dot(bw, bx) / bw.sum()), float(np.dot(bw, by) / bw.sum())
        centred_x.append(bx - mx)
        centred_y.append(by - my)
        weights.append(bw)
        intercepts.append((mx, my))
    cx, cy, cw = np.concatenate(centred_x), np.concatenate(centred_y), np.concatenate(weights)
    sxx = float(np.dot(cw, cx * cx))
    if not sxx > 0:
        return None
    slope = float(np.dot(cw, cx * cy)) / sxx
    residuals = cy - slope * cx
    dof = px.size - len(blocks) - 1
    sd = math.sqrt(float(np.dot(cw, residuals**2)) / dof) if dof > 0 else 0.0
    sd = max(sd, sigma)
    return slope, sd / math.sqrt(sxx), tuple(my - slope * mx for mx, my in intercepts)


def _trough_settling(
    px: FloatArray,
    py: FloatArray,
    spread: FloatArray,
    sigma: float,
    confidence: float,
    period: float,
) -> tuple[float, float, float] | None:
    """Troughs that level off like a warm-up underneath the cycle: weighted least squares of
    level = a + s t + b exp(-(t - t0) / tau) over a grid of tau (one period .. half the span),
    each trough weighing 1/spread², the residual sd at least ``sigma``. When b is negative (a
    rise levelling off) by more than :data:`SETTLING_Z` standard errors at the best tau:
    (s, lower, upper) per second, the interval the union over every plausible tau as in
    :func:`_settling`; None otherwise, or with fewer than 5 troughs.

    Why: a GC sawtooth riding on a cache that fills (tau 5-20 minutes) has troughs that rise
    fast and then flatten; their straight line read the fill as a leak (13 of 20 leak-free
    2-hour runs failed). The trend estimate models the same tail (:func:`_settling`); the
    troughs are the trend of a cycle and get the same model. A leak under the cycle rises
    straight: b is not significant, or s stays above the threshold."""
    if px.size < 5:
        return None
    u = px - px[0]
    span = float(u[-1])
    if not span > 2.0 * period:
        return None
    taus = np.geomspace(period, span / 2.0, SETTLING_TAUS)
    w = 1.0 / spread**2
    design = np.empty((taus.size, px.size, 3))
    design[:, :, 0] = 1.0
    design[:, :, 1] = u / span
    np.exp(-u[None, :] / taus[:, None], out=design[:, :, 2])
    weighted = design * w[None, :, None]
    normal = np.einsum("tni,tnj->tij", weighted, design)
    right = np.einsum("tni,n->ti", weighted, py)
    usable = np.abs(np.linalg.det(normal)) > 0
    if not usable.any():
        return None
    normal, right, design, taus = normal[usable], right[usable], design[usable], taus[usable]
    try:
        inverse = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return None
    found = np.einsum("tij,tj->ti", inverse, right)
    residuals = py[None, :] - np.einsum("tni,ti->tn", design, found)
    sses = np.einsum("tn,n,tn->t", residuals, w, residuals)
    best = int(np.argmin(sses))
    dof = px.size - 4
    variance = max(float(sses[best]) / dof, sigma * sigma)
    se_b = math.sqrt(max(variance * float(inverse[best, 2, 2]), 0.0))
    if not (se_b > 0 and float(found[best, 2]) < -SETTLING_Z * se_b):
        return None
    return _over_plausible_taus(
        found[:, 1], inverse[:, 1, 1], sses, best, variance, confidence, span, 1.0
    )


def _pooled_levels(
    x: FloatArray,
    y: FloatArray,
    begins: npt.NDArray[np.intp],
    stops: npt.NDArray[np.intp],
    at: FloatArray,
    span: float,
) -> tuple[FloatArray, FloatArray] | None:
    """Each trough's level read with the slope all the cycles share (one common slope, one
    level per cycle: ANCOVA), and its standard error in units of the sample noise; None when
    the cycles' own slopes are not the same: their spread around the common one exceeds the
    chi-square bound at :data:`POOL_LEVEL`, or they drift in time by more than
    :data:`POOL_DRIFT_Z` standard errors (weighted least squares of the slopes on the cycles'
    times), or fewer than 3 cycles hold 3 samples.

    Why: a trough read with its own cycle's slope is the end of that line, with four times the
    variance of the cycle's mean; with the slope shared, a level has about the cycle mean's
    variance, half the standard error, which a 2x leak under a 5-minute sawtooth with 4 MB of
    noise over 2 h needs. But when the amplitude, and so the slope, changes from cycle to
    cycle, the shared slope moves each level by half the amplitude's change, and an amplitude
    drifting in time reads as troughs drifting; hence the tests, the drift one the stricter
    (it is what biases the trough slope, and an omnibus test barely sees a slow drift)."""
    ends = np.minimum(stops, np.searchsorted(x, x[begins] + span, side="left"))
    n = ends - begins
    ok = (n >= 3) & (x[np.maximum(ends - 1, 0)] > x[begins])
    if np.count_nonzero(ok) < 3:
        return None
    b, a, n = begins[ok], at[ok], n[ok]
    first = np.cumsum(n) - n
    index = np.repeat(b - first, n) + np.arange(int(n.sum()))
    owner = np.repeat(np.arange(b.size), n)
    u = x[index] - a[owner]
    v = y[index]
    mean_u = np.add.reduceat(u, first) / n
    mean_v = np.add.reduceat(v, first) / n
    du = u - mean_u[owner]
    dv = v - mean_v[owner]
    sxx = np.add.reduceat(du * du, first)
    sxy = np.add.reduceat(du * dv, first)
    syy = np.add.reduceat(dv * dv, first)
    cycles = b.size
    dof = int(n.sum()) - 2 * cycles
    if dof < 2 or not np.all(sxx > 0):
        return None
    variance = float(np.sum(syy - sxy * sxy / sxx)) / dof
    if not variance > 0:
        return None
    own = sxy / sxx
    common = float(sxy.sum() / sxx.sum())
    # spread of the cycles' slopes around the common one: chi-square, K - 1 degrees of freedom
    spread = float(np.dot(sxx, (own - common) ** 2)) / variance
    k = cycles - 1
    z = NormalDist().inv_cdf(POOL_LEVEL)
    bound = k * (1.0 - 2.0 / (9.0 * k) + z * math.sqrt(2.0 / (9.0 * k))) ** 3  # Wilson-Hilferty
    if spread > bound:
        return None
    mid = a + mean_u  # the mean time of each cycle's samples
    centre = float(np.dot(sxx, mid) / sxx.sum())
    stt = float(np.dot(sxx, (mid - centre) ** 2))
    if stt > 0:
        drift = float(np.dot(sxx, (mid - centre) * own)) / stt
        if abs(drift) > POOL_DRIFT_Z * math.sqrt(variance / stt):
            return None
    level = np.full(begins.size, math.nan)
    error = np.full(begins.size, math.inf)
    level[ok] = mean_v - common * mean_u
    error[ok] = np.sqrt(1.0 / n + mean_u**2 / float(sxx.sum()))
    return level, error


def _slow_cycle(
    px: FloatArray, py: FloatArray, spread: FloatArray, sigma: float, climb: float
) -> tuple[npt.NDArray[np.intp], float, float] | None:
    """A slower cycle in the troughs themselves (two sawtooths of different periods, a cache
    rebuilt under a GC sawtooth): the troughs fall back (by more than 6 robust sd of their
    successive differences, 6 standard errors of the two levels and a quarter of what a cycle
    climbs, ``climb``: a trough misread by a little is no fall) and climb again between
    the falls by at least half of what a fall gave back (and at most four times), at a slope
    significantly above zero. Then the indices of the troughs that begin each slower cycle
    (the first after each fall), its period (the median interval between the falls, or the
    span before the only one) and the troughs' slope within its cycles (per second); None
    otherwise.

    Why: the troughs of the fast cycle ride on the slow one's ramp, and their straight line
    read that ramp as a rising floor (4 of 100 leak-free 2-hour runs of a 3-20-minute
    sawtooth over one 3-7 times slower failed, the troughs climbing and falling back). The
    floor of the slowest cycle is what a leak lifts; with too few of its cycles the verdict
    says so, as for one slow cycle."""
    if py.size < 3:
        return None
    # a fall: more than 6 robust sd of the troughs' successive differences and 6 standard
    # errors of the two levels, and the trough after it (if any) stays at least half as deep
    diffs = np.diff(py)
    limit = np.maximum(
        6.0 * _robust_scale(diffs), 6.0 * sigma * np.sqrt(spread[1:] ** 2 + spread[:-1] ** 2)
    )
    limit = np.maximum(limit, 0.25 * climb)
    after = np.r_[py[2:], -np.inf]
    low = (diffs < -limit) & (after < py[:-1] - 0.5 * limit)
    falls = (np.flatnonzero(low) + 1).tolist()
    if not falls:
        return None
    edges = [0, *falls, py.size]
    pieces = [slice(a, b) for a, b in itertools.pairwise(edges) if b - a >= 2]
    if not pieces:
        return None
    line = _weighted_line(px, py, spread, pieces, sigma)
    if line is None:
        return None
    slope, stderr, _ = line
    before = [slice(a, b) for a, b in itertools.pairwise(edges[:-1]) if b - a >= 2]
    if not before or not slope - 2.0 * stderr > 0:
        return None
    at = np.asarray(falls, dtype=np.intp)
    depth = float(np.median(py[at - 1] - py[at]))
    rise = slope * float(np.median([px[b.stop - 1] - px[b.start] for b in before]))
    if not 0.5 * depth <= rise <= 4.0 * depth:
        return None  # as for the cycle itself: a small fall in a long climb is no cycle
    gaps = np.diff(px[at])
    period = float(np.median(gaps)) if gaps.size else float(px[at[0]] - px[0])
    return at, period, slope


def _slow_levels(
    px: FloatArray, py: FloatArray, spread: FloatArray, falls: npt.NDArray[np.intp]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The floor of each slower cycle (:func:`_slow_cycle`), at its first trough: from the
    weighted line through its troughs (up to the next fall) when it holds three or more, the
    first trough alone otherwise; times, levels and standard errors in units of the sample
    noise. A line, not the first trough alone: the cycle's troughs all tell where it began."""
    ends = np.r_[falls[1:], px.size]
    times, levels, errors = [], [], []
    for a, b in zip(falls.tolist(), ends.tolist(), strict=True):
        t0 = float(px[a])
        if b - a < 3:
            times.append(t0)
            levels.append(float(py[a]))
            errors.append(float(spread[a]))
            continue
        w = 1.0 / spread[a:b] ** 2
        u = px[a:b] - t0
        mean_u = float(np.dot(w, u) / w.sum())
        mean_v = float(np.dot(w, py[a:b]) / w.sum())
        sxx = float(np.dot(w, (u - mean_u) ** 2))
        slope = float(np.dot(w, (u - mean_u) * (py[a:b] - mean_v))) / sxx if sxx > 0 else 0.0
        times.append(t0)
        levels.append(mean_v - slope * mean_u)
        errors.append(math.sqrt(1.0 / float(w.sum()) + (mean_u**2 / sxx if sxx > 0 else 0.0)))
    return np.asarray(times), np.asarray(levels), np.asarray(errors)


def _troughs(
    x: FloatArray,
    y: FloatArray,
    t: FloatArray,
    origin: float,
    pieces: list[slice],
    found: list[int],
    period: float,
    within_slope: float,
    interval: float,
    sigma: float,
    confidence: float,
    restart_segments: list[slice],
    capped: float | None,
) -> GrowthEstimate:
    """The estimate on the troughs: after each drop, the level at the drop from the samples in
    the first :data:`TROUGH_SHARE` of a period (:func:`_trough_levels`: a whole cycle, as
    many samples as a trough has; the level is the line's end, whose variance is four times
    the cycle mean's, so half a cycle doubled it and left a 2x leak under a 5-minute GC
    sawtooth with 4 MB of noise undecided over 2 h), a cycle cut short corrected by the full
    ones read over its span; one level per restart piece; weighted least squares with the
    sample noise as the floor of the residual sd (troughs of different cycles are
    independent)."""
    span = min(max(TROUGH_SHARE * period, 4.0 * interval), period)
    every = np.sort(np.asarray(found, dtype=np.intp))
    owner = np.searchsorted([p.stop for p in pieces], every, side="right")
    inside = owner < len(pieces)
    inside[inside] &= every[inside] >= np.asarray([p.start for p in pieces])[owner[inside]]
    begins, owner = every[inside], owner[inside]
    piece_starts = np.asarray([p.start for p in pieces], dtype=np.intp)[owner]
    piece_stops = np.asarray([p.stop for p in pieces], dtype=np.intp)[owner]
    same_next = np.zeros(begins.size, dtype=bool)  # the next drop is in the same piece
    same_next[:-1] = owner[1:] == owner[:-1]
    stops = piece_stops.copy()
    stops[same_next] = begins[1:][same_next[:-1]]
    previous = np.maximum(begins - 1, 0)
    # the drop instant: midway between the last high and the first low sample
    at = np.where(begins > piece_starts, 0.5 * (x[previous] + x[begins]), x[begins])
    level, spread, _ = _trough_levels(x, y, begins, stops, at, np.full(begins.size, span))
    # A ramp that bends within a cycle (the load, and so the amplitude, changed mid-cycle)
    # moves the end of a line through the whole cycle; the first half still reads the
    # trough. When any trough's two reads differ by more than KINK_Z standard errors of their
    # difference (nested: the variance of the half read less that of the whole), every
    # trough is read over half a period: one read for all, since on a curved ramp the two
    # reads differ by a constant and mixing them would move troughs against each other.
    half = max(0.5 * span, 4.0 * interval)
    if half < span:
        level_half, spread_half, _ = _trough_levels(
            x, y, begins, stops, at, np.full(begins.size, half)
        )
        apart = sigma * np.sqrt(np.maximum(spread_half**2 - spread**2, 0.0))
        with np.errstate(invalid="ignore"):
            bent = np.abs(level - level_half) > KINK_Z * apart
        if bool(np.any(bent & np.isfinite(level_half))):
            span, level, spread = half, level_half, spread_half
    # The full cycles' levels with the slope they share, when they share one
    # (:func:`_pooled_levels`): half the standard error of a cycle's own line end.
    # Cycles short of the span by a sample or two (the period is the median interval, so
    # half the cycles are a sample shorter) are as good as whole for it: the shared slope
    # reads each at its own mean time.
    last = x[np.maximum(stops - 1, 0)]
    short = last + interval < x[begins] + span  # one more would be read
    whole = np.flatnonzero((last + interval >= x[begins] + 0.9 * span) & np.isfinite(level))
    pooled = _pooled_levels(x, y, begins[whole], stops[whole], at[whole], span)
    if pooled is not None:
        usable = np.isfinite(pooled[0])
        level[whole[usable]], spread[whole[usable]] = pooled[0][usable], pooled[1][usable]
        short[whole[usable]] = False
    # A cycle cut short (the last one of a piece, or one the next drop came early in) is read
    # over less than the span; on a curved ramp that moves its level. The full cycles read
    # over the same shorter span tell by how much: the mean difference is added back.
    short = x[np.maximum(stops - 1, 0)] + interval < x[begins] + span  # one more would be read
    # Regular samples give most short cycles the same span: each span is read once.
    full = np.flatnonzero(~short & np.isfinite(level))
    corrections: dict[float, tuple[float, float] | None] = {}
    for g in np.flatnonzero(short):
        have = float(x[stops[g] - 1] - x[begins[g]]) + 0.5 * interval
        if full.size == 0 or not have > 0:
            continue
        if have not in corrections:
            again, again_spread, _ = _trough_levels(
                x, y, begins[full], stops[full], at[full], np.full(full.size, have)
            )
            usable = np.isfinite(again)
            corrections[have] = (
                (
                    float(np.mean(level[full][usable] - again[usable])),
                    float(np.median(again_spread[usable])) ** 2 / int(np.count_nonzero(usable)),
                )
                if usable.any()
                else None
            )
        correction = corrections[have]
        if correction is not None:
            level[g] += correction[0]
            spread[g] = math.sqrt(spread[g] ** 2 + correction[1])
    # The drop came anywhere within the interval around its instant: the line read there is
    # off by the climb over that offset (uniform, sd climb x interval / sqrt 12), a trough
    # error of its own that a low noise leaves dominant (intervals from the sample noise alone
    # missed a leak at the threshold in 15 % of 2-hour runs under 0.2 MB of noise)
    if sigma > 0:
        timing = within_slope * interval / math.sqrt(12.0) / sigma
        spread = np.sqrt(spread**2 + timing**2)
    read = np.isfinite(level)
    px, py, spread_all, owner = at[read], level[read], spread[read], owner[read]
    blocks = [
        slice(int(i), int(j))
        for i, j in zip(
            np.searchsorted(owner, np.arange(len(pieces)), side="left"),
            np.searchsorted(owner, np.arange(len(pieces)), side="right"),
            strict=True,
        )
        if j > i
    ]
    fit = _trough_fit(px, py, spread_all, blocks, sigma, confidence) if px.size else None
    settling: tuple[float, float, float] | None = None
    if fit is not None:
        # troughs levelling off (a warm-up under the cycle): judged on the slope beside it;
        # only before a fail can stand (troughs rising significantly), as in the trend
        found_settling = (
            _trough_settling(px, py, spread_all, sigma, confidence, period)
            if len(blocks) == 1 and fit.lower > 0
            else None
        )
        if found_settling is not None:
            left, low, high = found_settling
            fit = replace(fit, slope=left, lower=low, upper=high)
            settling = (left * HOUR, low * HOUR, high * HOUR)
    # troughs that fall back and climb again: the slower cycle's floor is judged instead
    slow = (
        _slow_cycle(px, py, spread_all, sigma, within_slope * period)
        if fit is not None and len(blocks) == 1 and fit.lower > 0
        else None
    )
    drop_count = len(found)
    if slow is not None:
        keep, period, within_slope = slow
        drop_count = int(keep.size)
        px, py, spread_all = _slow_levels(px, py, spread_all, keep)
        blocks = [slice(0, int(keep.size))]
        settling = None
        fit = _trough_fit(px, py, spread_all, blocks, sigma, confidence) if px.size > 2 else None
    covered = sum(float(x[p][-1] - x[p][0]) + interval for p in pieces)
    first = float(px[0]) if px.size else 0.0
    regimes = []
    if fit is not None:
        regimes.append(
            Regime(
                start=first + origin,
                end=float(px[-1]) + origin,
                slope_per_hour=fit.slope * HOUR,
                lower_per_hour=fit.lower * HOUR,
                upper_per_hour=fit.upper * HOUR,
                points=int(px.size),
                judged=True,
            )
        )
    return GrowthEstimate(
        fit=fit,
        origin=origin,
        aggregate="troughs",
        window_seconds=span,
        points_t=px + origin,
        points_y=py,
        blocks=blocks,
        segments=len(restart_segments),
        warmup_ends=[],
        step_times=[],
        analysed_seconds=covered,
        segment_slopes_per_hour=[],
        mode="troughs",
        regimes=regimes,
        judged_start=first + origin if px.size else None,
        judged_seconds=covered,
        judged_samples=int(sum(p.stop - p.start for p in pieces)),
        variance_factor=1.0,
        noise=sigma,
        warmup_capped=capped,
        drop_times=t[np.asarray(found, dtype=np.intp)].tolist(),
        cycle=Cycle(
            period_seconds=period,
            drops=drop_count,
            troughs=int(px.size),
            within_slope_per_hour=within_slope * HOUR,
        ),
        covered_seconds=covered,
        settling=settling,
    )
