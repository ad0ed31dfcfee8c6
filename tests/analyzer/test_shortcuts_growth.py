"""The shortcuts of the growth estimate on flat and integer-valued series give the figures of
the full path.

Thread, fd, handle and pool counts sit on one level or a few for hours. Theil-Sen then counts
its pairs by level instead of building them, the settling fit solves a 2 x 2 system per time
constant instead of a stacked QR, and the slowing and change-point tests stop early when the
series is flat. Each shortcut is run here on random inputs built to hit it and its edges
(constant, constant but one sample, rare +1, a staircase, blocks) against the full path: the
same figures to 1e-9 relative."""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import pytest

from soakwatch.analyzer import growth, slopes
from soakwatch.analyzer.segments import change_points
from soakwatch.analyzer.slopes import long_run_factor, theil_sen, window_points

FloatArray = npt.NDArray[np.float64]
SEEDS = range(60)


def few_levels(rng: np.random.Generator, n: int, kind: int) -> FloatArray:
    """A count over ``n`` samples: constant, constant but one sample (first, last or inside),
    rare +1, rare +-1, often +1, a +1 staircase, or a one-off step."""
    base = float(rng.integers(0, 500))
    y = np.full(n, base)
    if kind == 0:
        return y
    if kind == 1:
        y[int(rng.choice([0, n - 1, int(rng.integers(0, n))]))] += float(rng.choice([-1, 1]))
        return y
    if kind == 2:
        return y + (rng.random(n) < 0.02)
    if kind == 3:
        return y + (rng.random(n) < 0.05) - (rng.random(n) < 0.05)
    if kind == 4:
        return y + (rng.random(n) < 0.4)
    if kind == 5:
        return y + np.floor(np.arange(n) / rng.integers(5, 60))
    return y + 3.0 * (np.arange(n) >= rng.integers(1, n))


def blocks_of(rng: np.random.Generator, n: int) -> list[slice] | None:
    if rng.random() < 0.4:
        return None
    cuts = np.sort(rng.integers(0, n + 1, size=rng.integers(0, 5)))
    return [slice(a, b) for a, b in itertools.pairwise([0, *cuts.tolist(), n])]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or math.isclose(a, b, rel_tol=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_theil_sen_counted_by_level_equals_the_pairs_built_and_ranked(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    # mostly enough pairs to be counted by level, some too few (built either way)
    n = int(rng.integers(2, 64)) if seed % 5 == 0 else int(rng.integers(70, 400))
    x = 1.7e9 + np.cumsum(rng.uniform(10, 200, n))
    y = few_levels(rng, n, seed % 7)
    blocks = blocks_of(rng, n)
    factor = float(rng.choice([1.0, 2.5]))
    confidence = float(rng.choice([0.9, 0.95, 0.99]))
    try:
        fast = theil_sen(x, y, blocks=blocks, confidence=confidence, variance_factor=factor)
    except ValueError:
        fast = None
    with monkeypatch.context() as patch:
        # no counts by level (nor cached ones): every series takes the full path
        patch.setattr(slopes, "_cached_sign_counts", lambda *_args: None)
        try:
            full = theil_sen(x, y, blocks=blocks, confidence=confidence, variance_factor=factor)
        except ValueError:
            full = None
    assert (fast is None) == (full is None)
    if fast is not None and full is not None:
        assert str(fast) == str(full)  # the same figures, signed zeros included


def test_a_constant_count_has_a_zero_slope_and_interval_without_building_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def built(*_args: object) -> FloatArray:
        raise AssertionError("pairs were built for a constant series")

    monkeypatch.setattr(slopes, "_pair_slopes", built)
    fit = theil_sen(np.arange(360.0), np.full(360, 12.0))
    assert (fit.slope, fit.lower, fit.upper, fit.pairs) == (0.0, 0.0, 0.0, 360 * 359 // 2)
    assert fit.intercepts == (12.0,)


def test_a_count_that_climbs_still_builds_its_pairs() -> None:
    x = np.arange(360.0) * 480.0
    y = 40.0 + np.floor(x / 3600.0)  # +1 an hour: most pair slopes are positive
    fit = theil_sen(x, y)
    assert fit.slope * 3600.0 == pytest.approx(1.0, rel=0.05)
    assert fit.lower > 0


def reference_settling(
    x: FloatArray, y: FloatArray, confidence: float, window: float
) -> tuple[float, float, float] | None:
    """:func:`growth._settling` with one ``np.linalg.lstsq`` of the full design per tau (the
    grid refined twice around the best tau near a settling term, as there)."""
    if x.size < 24:
        return None
    u = x - x[0]
    span = float(u[-1])
    if not span > 8 * window or not np.any(y - y.mean()):
        return None  # too short, or a constant count: no settling term, as there
    fits: list[tuple[float, FloatArray, FloatArray, FloatArray]] = []

    def fit(taus: FloatArray) -> None:
        for tau in taus:
            design = np.c_[np.ones(u.size), u / span, np.exp(-u / tau)]
            coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
            residuals = y - design @ coefficients
            fits.append((float(tau), coefficients, residuals, np.linalg.inv(design.T @ design)))

    def best() -> tuple[int, float, float]:
        sses = np.array([float(np.dot(r, r)) for _, _, r, _ in fits])
        at = int(np.argmin(sses))
        _, coefficients, residuals, inverse = fits[at]
        variance = float(sses[at]) / (u.size - 4) * long_run_factor(residuals)
        se_b = math.sqrt(max(variance * float(inverse[2, 2]), 0.0))
        return at, variance, -float(coefficients[2]) / se_b if se_b > 0 else 0.0

    fit(np.geomspace(2 * window, span / 2, growth.SETTLING_TAUS))
    at, variance, depth = best()
    for _ in range(2 if depth > 0.5 * growth.SETTLING_Z else 0):
        order = np.sort([tau for tau, *_ in fits])
        k = int(np.searchsorted(order, fits[at][0]))
        fit(np.geomspace(order[max(k - 1, 0)], order[min(k + 1, order.size - 1)], 48))
        at, variance, depth = best()
    if not depth > growth.SETTLING_Z:
        return None
    sses = np.array([float(np.dot(r, r)) for _, _, r, _ in fits])
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    inside = sses <= sses[at] + z * z * variance
    lows, highs = [], []
    for (_, c, _, inv), keep in zip(fits, inside, strict=True):
        if keep:
            half = z * math.sqrt(max(variance * float(inv[1, 1]), 0.0))
            lows.append((c[1] - half) / span * growth.HOUR)
            highs.append((c[1] + half) / span * growth.HOUR)
    return float(fits[at][1][1]) / span * growth.HOUR, min(lows), max(highs)


@pytest.mark.parametrize("seed", range(40))
def test_the_settling_fit_in_closed_form_equals_least_squares_per_tau(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 1500))
    x = np.arange(n) * 120.0
    kind = seed % 4
    if kind < 3:
        y = few_levels(rng, n, [0, 2, 5][kind])
    else:  # a cache still filling: the settling term is found
        y = 8.0 * (1 - np.exp(-x / rng.uniform(600, 20000))) + rng.normal(0, 0.3, n)
    window = max(120.0, min(600.0, float(x[-1]) / 360))
    wx, wy = window_points(x, y, window, "median")
    fast = growth._settling(wx, wy, 0.95, window)
    if kind == 0:
        # a constant count settles from nothing: centred, its values are exactly 0, where a
        # solver of the full design sees a "term" of 1e-15 in its rounding now and then
        assert fast is None
        return
    full = reference_settling(wx, wy, 0.95, window)
    assert (fast is None) == (full is None)
    if fast is not None and full is not None:
        assert all(same(a, b) for a, b in zip(fast, full, strict=True)), (fast, full)


def test_a_cache_still_filling_is_found_settling_in_closed_form() -> None:
    x = np.arange(1440) * 120.0
    y = 800.0 * (1 - np.exp(-x / 20000.0)) + np.random.default_rng(3).normal(0, 1.0, x.size)
    wx, wy = window_points(x, y, 480.0, "median")
    found = growth._settling(wx, wy, 0.95, 480.0)
    assert found is not None
    assert abs(found[0]) < 5.0  # per hour, of a rise that began at 144 an hour: levelled off


@pytest.mark.parametrize("seed", range(20))
def test_a_flat_count_never_slows_down_and_a_bent_one_still_does(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(16, 400))
    x = np.arange(n) * 480.0
    blocks = [slice(0, n)] if seed % 2 else [slice(0, n // 2), slice(n // 2, n)]
    assert growth._slowing(x, np.full(n, float(rng.integers(0, 100))), blocks, 0.95) is None
    bent = 100.0 * np.sqrt(x / x[-1]) + rng.normal(0, 0.1, n)
    found = growth._slowing(x, bent, [slice(0, n)], 0.95)
    assert found is not None and found[0] > found[1]


@pytest.mark.parametrize("seed", range(20))
def test_change_points_of_a_flat_count_are_none_and_a_step_is_still_cut(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 400))
    x = np.arange(n) * 480.0
    assert change_points(x, np.full(n, float(rng.integers(0, 100)))) == []
    at = int(rng.integers(10, n - 10))
    y = 40.0 + np.where(np.arange(n) >= at, 1.0, 0.0)
    cuts = change_points(x, y)
    assert cuts and min(abs(c - at) for c in cuts) <= 1


def test_the_full_path_of_the_comparison_builds_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The patch the comparisons above use really sends a flat series down the full path."""
    built: list[int] = []
    original = slopes._pair_slopes

    def counting(bx: FloatArray, by: FloatArray, sizes: tuple[int, ...]) -> FloatArray:
        built.append(bx.size)
        return original(bx, by, sizes)

    monkeypatch.setattr(slopes, "_pair_slopes", counting)
    theil_sen(np.arange(100.0), np.full(100, 3.0))
    assert built == []
    monkeypatch.setattr(slopes, "_cached_sign_counts", lambda *_args: None)
    assert theil_sen(np.arange(100.0), np.full(100, 3.0)).slope == 0.0
    assert built == [100]
