"""The vectorised statistics against slow, obviously correct references written here.

Each reference is the loop the statistic means (one ``np.median`` per window, one
``np.triu_indices`` per block, one dot product per part and lag), run on random inputs with
gaps, ties, repeated times, empty and one-sample blocks: the vectorised code must give the same
figures (to 1e-9 relative, the same indices exactly)."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import pytest

from soakwatch.analyzer.counters import counter_increase
from soakwatch.analyzer.quantiles import WindowedHistogram, histogram_quantile
from soakwatch.analyzer.segments import drops, level_shift
from soakwatch.analyzer.slopes import (
    line_fit,
    long_run_factor,
    median,
    theil_sen,
    window_aggregate,
    window_points,
)

FloatArray = npt.NDArray[np.float64]
SEEDS = range(40)


# -- inputs ------------------------------------------------------------------------------------
def times(rng: np.random.Generator, n: int, *, repeats: bool = False) -> FloatArray:
    """Sample times 15 s apart with a few long gaps (and, if asked, some repeated times)."""
    steps = np.full(n, 15.0)
    steps[rng.random(n) < 0.05] = rng.uniform(100, 3000)
    if repeats:
        steps[rng.random(n) < 0.1] = 0.0
    return 1.7e9 + np.cumsum(steps)


def values(rng: np.random.Generator, n: int) -> FloatArray:
    """A noisy trend rounded to a quantum, so that many values and many slopes tie."""
    y = 5.0 * np.arange(n) + rng.normal(0, 40, n)
    return np.round(y / 16.0) * 16.0


def blocks_of(rng: np.random.Generator, n: int) -> list[slice]:
    """Consecutive blocks covering 0..n, some empty and some of one or two samples."""
    cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(0, 8)))
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-9)


# -- references ----------------------------------------------------------------------------------
def reference_theil_sen(
    x: FloatArray, y: FloatArray, blocks: list[slice], confidence: float, factor: float
) -> tuple[float, float, float, list[float], int, int]:
    parts, variance, points = [], 0.0, 0
    for block in blocks:
        bx, by = x[block], y[block]
        n = bx.size
        if n < 2:
            continue
        i, j = np.triu_indices(n, 1)
        dx = bx[j] - bx[i]
        parts.append((by[j] - by[i])[dx != 0] / dx[dx != 0])
        variance += n * (n - 1) * (2 * n + 5) / 18.0
        points += n
    if not parts or not np.concatenate(parts).size:
        raise ValueError
    slopes = np.sort(np.concatenate(parts))
    total = slopes.size
    slope = float(np.median(slopes))
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    sigma = math.sqrt(variance * max(factor, 1.0))
    upper = min(int(np.round((total + z * sigma) / 2.0)), total - 1)
    lower = max(int(np.round((total - z * sigma) / 2.0)) - 1, 0)
    intercepts = [float(np.median(y[b] - slope * x[b])) for b in blocks if x[b].size]
    return slope, float(slopes[lower]), float(slopes[upper]), intercepts, points, total


def reference_long_run_factor(r: FloatArray, blocks: list[slice]) -> float:
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


def reference_line_fit(
    x: FloatArray, y: FloatArray, blocks: list[slice]
) -> tuple[float, float, int, list[float]]:
    blocks = [b for b in blocks if x[b].size]
    means = [(float(x[b].mean()), float(y[b].mean())) for b in blocks]
    sxx = sxy = 0.0
    for b, (mx, my) in zip(blocks, means, strict=True):
        sxx += float(np.dot(x[b] - mx, x[b] - mx))
        sxy += float(np.dot(x[b] - mx, y[b] - my))
    if not sxx > 0:
        raise ValueError
    slope = sxy / sxx
    residuals = np.concatenate(
        [y[b] - my - slope * (x[b] - mx) for b, (mx, my) in zip(blocks, means, strict=True)]
    )
    dof = max(residuals.size - len(blocks) - 1, 0)
    sd = math.sqrt(float(np.dot(residuals, residuals)) / dof) if dof > 0 else 0.0
    return slope, sd, dof, [my - slope * mx for mx, my in means]


def reference_drops(y: FloatArray, pieces: list[slice], ratio: float = 6.0) -> list[int]:
    def mad(v: FloatArray) -> float:
        return float(1.4826 * np.median(np.abs(v - np.median(v))))

    diffs = [np.diff(y[p]) for p in pieces if y[p].size > 2]
    if not diffs:
        return []
    joined = np.abs(np.diff(np.concatenate([y[p] for p in pieces])))
    step = float(np.min(joined[joined > 0])) if np.any(joined > 0) else 0.0
    limit = max(ratio * mad(np.concatenate(diffs)), 8 * step, 1e-9 * max(np.max(np.abs(y)), 1))
    found: list[int] = []
    for piece in pieces:
        for k in range(piece.start + 1, piece.stop):
            if piece.stop - piece.start < 3 or not y[k] - y[k - 1] < -limit:
                continue
            before = float(np.median(y[max(k - 3, piece.start) : k]))
            after = float(np.median(y[k : min(k + 3, piece.stop)]))
            if before - after < 0.5 * limit or before - y[k] < 0.5 * limit:
                continue
            if found and k - found[-1] <= 2:
                continue
            found.append(k)
    return found


def reference_window_medians(
    t: FloatArray, y: FloatArray, window: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per window from t[0]: the mean time, the median and the count, one window at a time."""
    index = np.floor((t - t[0]) / window)
    windows = np.unique(index)
    mean_t = np.array([np.mean(t[index == w]) for w in windows])
    medians = np.array([np.median(y[index == w]) for w in windows])
    counts = np.array([np.sum(index == w) for w in windows], dtype=np.float64)
    return mean_t, medians, counts


# -- the tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_theil_sen_equals_the_loop_over_blocks_with_sorted_slopes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # up to 400 points: beyond 8,192 pairs the order statistics come from a bracketed band
    n = int(rng.integers(2, 120 if seed % 4 else 400))
    x, y = times(rng, n, repeats=seed % 3 == 0), values(rng, n)
    blocks = blocks_of(rng, n) if seed % 2 else [slice(0, n)]
    confidence = float(rng.choice([0.9, 0.95, 0.99]))
    factor = float(rng.choice([1.0, 1.7, 4.2]))
    try:
        expected = reference_theil_sen(x, y, blocks, confidence, factor)
    except ValueError:
        with pytest.raises(ValueError):
            theil_sen(x, y, blocks=blocks, confidence=confidence, variance_factor=factor)
        return
    fit = theil_sen(x, y, blocks=blocks, confidence=confidence, variance_factor=factor)
    slope, lower, upper, intercepts, points, pairs = expected
    assert (fit.points, fit.pairs) == (points, pairs)
    assert close(fit.slope, slope) and close(fit.lower, lower) and close(fit.upper, upper)
    assert len(fit.intercepts) == len(intercepts)
    assert all(close(a, b) for a, b in zip(fit.intercepts, intercepts, strict=True))


def test_theil_sen_takes_the_same_order_statistics_when_every_slope_ties() -> None:
    x = np.arange(30.0)
    y = np.repeat([0.0, 10.0, 20.0], 10)
    fit = theil_sen(x, y, blocks=[slice(0, 10), slice(10, 11), slice(11, 30)])
    reference = reference_theil_sen(x, y, [slice(0, 10), slice(10, 11), slice(11, 30)], 0.95, 1)
    assert (fit.slope, fit.lower, fit.upper) == reference[:3]
    assert list(fit.intercepts) == reference[3]


@pytest.mark.parametrize("n", [10, 300])
def test_theil_sen_with_a_nan_gives_nan_like_np_median(n: int) -> None:
    x = np.arange(float(n))
    y = x.copy()
    y[4] = np.nan
    blocks = [slice(0, 5), slice(5, n)]
    fit = theil_sen(x, y, blocks=blocks)
    slope, lower, upper, _, _, _ = reference_theil_sen(x, y, blocks, 0.95, 1)
    assert math.isnan(fit.slope) and math.isnan(slope)
    assert close(fit.lower, lower) and close(fit.upper, upper)
    assert math.isnan(fit.intercepts[0]) and math.isnan(fit.intercepts[1])


def test_theil_sen_order_statistics_are_exact_where_a_sample_of_the_slopes_misleads() -> None:
    # 8,200 two-point blocks, one pair each, every eighth of them steep: a strided sample of
    # the slopes sees only steep ones, its bracket misses the middle, and the figures must
    # still be the exact order statistics
    rng = np.random.default_rng(8)
    pairs = 8200
    x = np.arange(2.0 * pairs)
    rise = np.where(np.arange(pairs) % 8 == 0, 1000.0, rng.normal(0, 1, pairs))
    y = np.zeros(2 * pairs)
    y[1::2] = rise
    blocks = [slice(2 * k, 2 * k + 2) for k in range(pairs)]
    fit = theil_sen(x, y, blocks=blocks)
    slope, lower, upper, intercepts, _, _ = reference_theil_sen(x, y, blocks, 0.95, 1)
    assert (fit.slope, fit.lower, fit.upper) == (slope, lower, upper)
    assert list(fit.intercepts) == intercepts
    assert upper < 1000.0


def test_theil_sen_is_the_same_on_a_second_call_with_the_same_layout() -> None:
    # the pair layout is cached: a second series of the same shape must not see the first's
    rng = np.random.default_rng(3)
    x = np.arange(50.0)
    first = theil_sen(x, values(rng, 50), blocks=[slice(0, 20), slice(20, 50)])
    y = values(rng, 50)
    second = theil_sen(x, y, blocks=[slice(0, 20), slice(20, 50)])
    assert second.slope == reference_theil_sen(x, y, [slice(0, 20), slice(20, 50)], 0.95, 1)[0]
    assert first.slope != second.slope


@pytest.mark.parametrize("n", [40, 300])
def test_theil_sen_refits_of_the_same_points_and_of_changed_points_are_exact(n: int) -> None:
    # the slopes of the last point sets are kept: a refit with another variance factor reuses
    # them, and points changed in place since (same array, new values) must not
    rng = np.random.default_rng(5)
    x, y = times(rng, n), values(rng, n)
    for factor in (1.0, 3.0, 1.0):
        fit = theil_sen(x, y, variance_factor=factor)
        expected = reference_theil_sen(x, y, [slice(0, n)], 0.95, factor)
        assert (fit.slope, fit.lower, fit.upper) == expected[:3]
    y[n // 2 :] += 5000.0
    fit = theil_sen(x, y)
    expected = reference_theil_sen(x, y, [slice(0, n)], 0.95, 1.0)
    assert (fit.slope, fit.lower, fit.upper) == expected[:3]


@pytest.mark.parametrize("seed", SEEDS)
def test_long_run_factor_equals_the_loop_over_parts_and_lags(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 600))
    # autocorrelated residuals with spikes, some runs of exact zeros (quantised values)
    r = np.convolve(rng.normal(0, 1, n + 5), np.ones(6) / 6, mode="valid")[:n]
    r[rng.random(n) < 0.02] = 40.0
    if seed % 4 == 0:
        r = np.round(r * 2) / 2
    blocks = blocks_of(rng, n) if seed % 2 else None
    expected = reference_long_run_factor(r, blocks if blocks is not None else [slice(0, n)])
    assert close(long_run_factor(r, blocks=blocks), expected)


def test_long_run_factor_of_constant_or_tiny_parts_is_one() -> None:
    assert long_run_factor(np.full(50, 3.0)) == 1.0
    assert long_run_factor(np.arange(6.0), blocks=[slice(0, 2), slice(2, 4), slice(4, 6)]) == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_line_fit_equals_the_loop_over_blocks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 400))
    x, y = times(rng, n) - 1.7e9, values(rng, n)
    blocks = blocks_of(rng, n)
    try:
        slope, sd, dof, intercepts = reference_line_fit(x, y, blocks)
    except ValueError:
        with pytest.raises(ValueError):
            line_fit(x, y, blocks=blocks)
        return
    fit = line_fit(x, y, blocks=blocks, variance_factor=1.0)
    assert close(fit.slope, slope) and close(fit.sd, sd) and fit.dof == dof
    assert all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * float(np.max(np.abs(y))))
        for a, b in zip(fit.intercepts, intercepts, strict=True)
    )
    assert len(fit.intercepts) == len(intercepts)
    free = line_fit(x, y, blocks=blocks)
    edges, offset = [], 0
    for b in blocks:
        if x[b].size:
            edges.append(slice(offset, offset + x[b].size))
            offset += x[b].size
    filled = [b for b in blocks if x[b].size]
    residuals = np.concatenate(
        [y[b] - (c + slope * x[b]) for b, c in zip(filled, intercepts, strict=True)]
    )
    factor = reference_long_run_factor(residuals, edges)
    assert math.isclose(free.variance_factor, max(factor, 1.0), rel_tol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_drops_equal_the_loop_over_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 1500))
    period = int(rng.integers(3, 80))
    y = 100.0 * (np.arange(n) % period) + rng.normal(0, 5.0, n)
    if seed % 3 == 0:
        y = np.round(y / 64.0) * 64.0  # pages: a robust scale of 0, ties everywhere
    if seed % 5 == 0:
        y[rng.integers(0, n, 3)] -= 3000.0  # single low samples, which are not drops
    pieces = [b for b in blocks_of(rng, n) if b.stop > b.start] if seed % 2 else [slice(0, n)]
    assert drops(y, pieces) == reference_drops(y, pieces)


def test_a_fall_over_two_scrapes_is_one_drop_across_pieces_too() -> None:
    # falls at 10 (the last sample of the first piece) and at 12 (in the second): one drop
    y = np.r_[np.full(10, 1000.0), 750.0, 750.0, np.full(10, 500.0)]
    y += np.random.default_rng(2).normal(0, 1, y.size)
    pieces = [slice(0, 11), slice(11, 22)]
    assert drops(y, pieces) == reference_drops(y, pieces) == [10]
    assert drops(y, [slice(11, 22)]) == [12]


@pytest.mark.parametrize("seed", SEEDS)
def test_median_equals_np_median(seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = np.round(rng.normal(0, 3, int(rng.integers(1, 50))))  # ties, odd and even counts
    assert median(v) == float(np.median(v))
    assert median(v.astype(np.int64)) == float(np.median(v.astype(np.int64)))
    table = np.resize(v, (3, v.size))
    assert median(table) == float(np.median(table))
    v[0] = np.nan
    assert math.isnan(median(v))
    assert math.isnan(median(np.empty(0)))


def reference_level_shift(y: FloatArray, ratio: float = 6.0, min_run: int = 3) -> int | None:
    def mad(v: FloatArray) -> float:
        return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else 0.0

    n = y.size
    m = max(min_run, n // 12)
    if n < 2 * m + 2:
        return None
    d = np.diff(y)
    per_point = float(np.median(d))
    medians = np.array([np.median(y[i : i + m]) for i in range(n - m + 1)])
    candidates = np.arange(m, n - m + 1)
    statistic = medians[candidates] - medians[candidates - m] - per_point * m
    floor = max(1e-9 * max(float(np.max(np.abs(y))), 1.0), abs(per_point))
    scale = max(min(mad(statistic), mad(d) * 1.2533 / np.sqrt(m)), floor)
    best = int(np.argmax(np.abs(statistic)))
    if abs(float(statistic[best])) <= ratio * scale:
        return None
    k = int(candidates[best])
    near = np.arange(max(k - 2, 1), min(k + 2, n - 1) + 1)
    steps = np.sign(statistic[best]) * (d[near - 1] - per_point)
    if float(np.max(steps)) < 0.25 * abs(float(statistic[best])):
        return None
    return int(near[int(np.argmax(steps))])


@pytest.mark.parametrize("seed", SEEDS)
def test_level_shift_equals_one_np_median_per_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 200))
    y = values(rng, n)
    if seed % 2:
        y[int(rng.integers(0, n)) :] += float(rng.choice([300.0, 3000.0]))
    assert level_shift(y) == reference_level_shift(y)


@pytest.mark.parametrize("seed", SEEDS)
def test_window_points_equal_one_np_median_per_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    t, y = times(rng, n), values(rng, n)
    window = float(rng.choice([15.0, 60.0, 600.0, 3600.0]))
    mean_t, medians, counts = reference_window_medians(t, y, window)
    full = counts >= 0.5 * float(np.median(counts))
    got_t, got_y = window_points(t, y, window, "median")
    assert got_y.tolist() == medians[full].tolist()
    assert np.allclose(got_t, mean_t[full], rtol=1e-12, atol=0)
    assert window_aggregate(t, y, window, "median")[1].tolist() == medians[full].tolist()


def test_theil_sen_without_a_pair_in_any_block_or_with_one_instant_is_an_error() -> None:
    x = np.arange(6.0)
    with pytest.raises(ValueError, match="no pair"):
        theil_sen(x, x, blocks=[slice(0, 1), slice(1, 1), slice(1, 2)])
    with pytest.raises(ValueError, match="distinct x"):
        theil_sen(np.zeros(6), x)


def test_window_medians_when_one_window_holds_nearly_every_sample() -> None:
    # 3,000 samples in the first minute, then one an hour: a table of windows would be mostly
    # padding, and the medians must be the same by the other way
    rng = np.random.default_rng(4)
    t = np.r_[np.sort(rng.uniform(0, 60, 3000)), 60 + 3600.0 * np.arange(1, 40)]
    y = values(rng, t.size)
    _, medians, counts = reference_window_medians(t, y, 60.0)
    full = counts >= 0.5 * float(np.median(counts))
    assert window_points(t, y, 60.0, "median")[1].tolist() == medians[full].tolist()
    assert window_aggregate(t, y, 60.0, "median")[1].tolist() == medians[full].tolist()


@pytest.mark.parametrize("seed", SEEDS)
def test_windowed_quantiles_equal_histogram_quantile_one_window_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    t = times(rng, n)
    bounds = ["0", "0.1", "0.25", "1", "2.5", "+Inf"][int(seed % 2) :]
    # per-bucket observations, some windows with none, the top bucket sometimes the busiest
    rates = np.sort(rng.uniform(0, 5, len(bounds)))
    rates[rng.random(len(bounds)) < 0.3] = 0.0
    rates[-1] = max(rates[-1], 0.0) + (3.0 if seed % 3 == 0 else 0.0)
    per = (
        rng.poisson(np.maximum.accumulate(rates), size=(n, len(bounds)))
        * (rng.random(n) < 0.8)[:, None]
    )
    cumulative = np.maximum.accumulate(np.cumsum(per, axis=0), axis=1).astype(np.float64)
    if seed % 4 == 0:  # a restart resets every counter
        cumulative[n // 2 :] -= cumulative[n // 2]
    histogram = WindowedHistogram((le, t, cumulative[:, k]) for k, le in enumerate(bounds))
    width = float(rng.choice([60.0, 600.0, 3600.0]))
    starts = np.arange(t[0] - width / 2, t[-1], width / 2)
    counts = histogram.counts(starts, starts + width)
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        values, totals = histogram.quantiles(q, starts, starts + width)
        expected = [histogram_quantile(q, histogram.bounds, row) for row in counts]
        assert all(close(a, b) for a, b in zip(values.tolist(), expected, strict=True))
        assert totals.tolist() == counts[:, -1].tolist()


def reference_counter_increase(t: FloatArray, v: FloatArray, start: float, end: float) -> float:
    rise = 0.0
    previous = None
    for time, value in zip(t.tolist(), v.tolist(), strict=True):
        if not (start <= time <= end) or not math.isfinite(value):
            continue
        if previous is not None:
            rise += value - previous if value >= previous else value
        previous = value
    return rise


@pytest.mark.parametrize("seed", SEEDS)
def test_counter_increase_equals_the_sum_over_samples_in_the_range(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    t = times(rng, n, repeats=seed % 3 == 0)
    v = np.cumsum(rng.poisson(5, n)).astype(np.float64)
    if n and seed % 2:
        v[int(rng.integers(0, n)) :] -= v[int(rng.integers(0, n))]  # a reset, maybe two
        v = np.abs(v)
    if n and seed % 5 == 0:
        v[rng.integers(0, n, 3)] = np.nan
    if seed % 7 == 0:
        order = rng.permutation(n)
        t, v = t[order], v[order]  # unsorted samples are counted in their given order
    edges = [t[0] - 1, t[0], t[n // 3], t[-1], t[-1] + 1] if n else [0.0, 1.0]
    for start in [-math.inf, *edges, math.nan]:
        for end in [*edges, math.inf, math.nan]:
            got = counter_increase(t, v, start, end)
            assert close(got, reference_counter_increase(t, v, start, end)), (start, end)
