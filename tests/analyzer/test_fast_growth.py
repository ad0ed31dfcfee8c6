"""The cheaper paths of the memory-growth estimate give the figures of the paths they replace,
to the last bit.

The one-difference drops and the drops with matched windows come from one call; the median
of the differences is read once for the noise and the drops; the depths of drops take the
medians of the six samples around each drop only; troughs of one or two samples take their
median as their mean, all at once; and the climb of a cycle skips its variance factor when
even the largest factor possible leaves the cycle test passed. Each is run on series built to
hit it and its edges (sawtooths, pages, pieces of two samples, single low samples) against the
path it replaces, compared with ``==``, not a tolerance."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from soakwatch.analyzer import growth
from soakwatch.analyzer.growth import estimate_growth
from soakwatch.analyzer.segments import difference_noise, drop_sets, drops, noise_sd
from soakwatch.analyzer.slopes import line_fit, long_run_factor

FloatArray = npt.NDArray[np.float64]
SEEDS = range(40)


def sawtooth(rng: np.random.Generator, n: int, seed: int) -> FloatArray:
    """A sawtooth (or, for every fourth seed, a noisy line) with noise, pages or lone lows."""
    period = int(rng.integers(3, 120))
    y = 1e8 + 2e5 * (np.arange(n) % period) + rng.normal(0, float(rng.choice([1e3, 5e4])), n)
    if seed % 4 == 0:
        y = 1e8 + 50.0 * np.arange(n) + rng.normal(0, 1e4, n)
    if seed % 3 == 0:
        y = np.round(y / 4096.0) * 4096.0  # pages: a robust scale of 0, ties everywhere
    if seed % 5 == 0:
        y[rng.integers(0, n, 3)] -= 3e7  # single low samples, which are not drops
    return y


def pieces_of(rng: np.random.Generator, n: int, seed: int) -> list[slice]:
    """One piece, or random pieces, some of two samples (which the noise reads and the drops
    leave out)."""
    if seed % 2 == 0:
        return [slice(0, n)]
    cuts = sorted({int(c) for c in rng.integers(1, n, size=int(rng.integers(1, 6)))})
    edges = [0, *cuts, n]
    pieces = [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]
    if seed % 3 == 1 and n > 10:
        pieces.append(slice(n - 2, n))  # exactly two samples
        pieces[-2] = slice(pieces[-2].start, min(pieces[-2].stop, n - 2))
    return [p for p in pieces if p.stop > p.start]


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_sets_are_the_drops_of_one_difference_and_with_windows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    y = sawtooth(rng, n, seed)
    pieces = pieces_of(rng, n, seed)
    clear, seen = drop_sets(y, pieces)
    assert clear == drops(y, pieces, windows=False)
    assert seen == drops(y, pieces)
    assert drop_sets(y, pieces, noise=difference_noise(y, pieces)) == (clear, seen)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_noise_from_the_shared_median_is_the_noise_taken_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 3000))
    y = sawtooth(rng, n, seed)
    pieces = pieces_of(rng, n, seed)
    assert noise_sd(y, pieces, noise=difference_noise(y, pieces)) == noise_sd(y, pieces)


def test_a_piece_of_two_samples_keeps_its_difference_in_the_noise() -> None:
    # the drops leave the piece of two out; the noise must still read its difference
    y = np.array([0.0, 1.0, 3.0, 6.0, 10.0, 11.0])
    pieces = [slice(0, 4), slice(4, 6)]
    shared = difference_noise(y, pieces)
    assert noise_sd(y, pieces, noise=shared) == noise_sd(y, pieces)
    assert noise_sd(y, pieces) != noise_sd(y, [slice(0, 4)])


@pytest.mark.parametrize("seed", SEEDS)
def test_drop_depths_equal_the_sliding_three_sample_medians(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 2000))
    y = sawtooth(rng, n, seed)
    found = sorted({int(k) for k in rng.integers(1, n, size=int(rng.integers(1, 40)))})
    med3 = np.median(np.lib.stride_tricks.sliding_window_view(y, 3), axis=1)
    expected = [
        float(med3[k - 3] - med3[k])
        if k >= 3 and k + 3 <= n
        else float(np.median(y[max(k - 3, 0) : k]) - np.median(y[k : k + 3]))
        for k in found
    ]
    got = growth._depths(y, found).tolist()
    assert [
        a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, expected, strict=True)
    ] == [True] * len(found)


@pytest.mark.parametrize("seed", SEEDS)
def test_trough_levels_of_one_or_two_samples_are_their_np_median(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 2000))
    x = np.cumsum(rng.choice([15.0, 15.0, 30.0, 0.0], size=n))  # repeated instants too
    y = rng.normal(3e8, 1e6, n)
    begins = np.sort(rng.integers(0, n - 1, size=int(rng.integers(1, 60)))).astype(np.intp)
    stops = np.minimum(begins + rng.integers(0, 6, size=begins.size), n).astype(np.intp)
    at = x[begins] - rng.random(begins.size) * 10.0
    spans = rng.choice([0.0, 10.0, 20.0, 40.0, 100.0], size=begins.size)
    stops[0], spans[0] = begins[0] + 1, 100.0  # one trough of one sample at least
    level, spread, counts = growth._trough_levels(x, y, begins, stops, at, spans)
    ends = np.minimum(stops, np.searchsorted(x, x[begins] + spans, side="left"))
    short = 0
    for g in range(begins.size):
        c = int(counts[g])
        if c == 0:
            assert math.isnan(level[g]) and spread[g] == math.inf
        elif c < 3 or not x[ends[g] - 1] - x[begins[g]] > 0:
            short += c < 3
            assert level[g] == float(np.median(y[begins[g] : ends[g]]))
            assert spread[g] == 1.2533 / math.sqrt(c)
    assert short > 0  # the shortcut was exercised


def long_run_bound(n: int) -> float:
    return float(1 + math.ceil(1.5 * math.pow(n, 1.0 / 3.0)))


@pytest.mark.parametrize("seed", SEEDS)
def test_the_variance_factor_never_exceeds_one_plus_its_bandwidth(seed: int) -> None:
    # the bound the climb's shortcut relies on, on the most autocorrelated residuals there
    # are: random walks, slow sines, constants but one sample
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 20000))
    kind = seed % 3
    if kind == 0:
        r = np.cumsum(rng.normal(0, 1, n))
    elif kind == 1:
        r = np.sin(np.arange(n) / rng.uniform(5, 500)) + rng.normal(0, 1e-3, n)
    else:
        r = np.zeros(n)
        r[int(rng.integers(0, n))] = 1.0
    factor = long_run_factor(r)
    assert 1.0 <= factor <= long_run_bound(n)
    if kind == 0 and n > 1000:
        assert factor > 0.5 * long_run_bound(n)  # the bound is near what a random walk reaches


def same(a: Any, b: Any) -> bool:
    """Equal to the bit: arrays element by element (NaN equal to NaN), dataclasses field by
    field."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_growth_estimate_is_the_same_without_the_climbs_shortcut(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(200, 11520))
    t = np.asarray(1.7e9 + 15.0 * np.arange(n), dtype=np.float64)
    period = int(rng.integers(12, 400))
    amplitude = float(rng.choice([2e6, 2e7, 2e8]))
    leak = float(rng.choice([0.0, 0.0, 1e6, 1e7])) / 3600.0
    y = 3e8 + amplitude * (np.arange(n) % period) / period + leak * (t - t[0])
    y += rng.normal(0, float(rng.choice([1e5, 4e6])), n)
    if seed % 3 == 0:
        y = np.round(y / 4096.0) * 4096.0
    restarts = np.asarray(t[[int(n * 0.6)]], dtype=np.float64) if seed % 4 == 1 else None
    fast = estimate_growth(t, y, restarts=restarts, warmup_seconds=900.0)

    def full(x: FloatArray, y: FloatArray, blocks: list[slice], depth: float, period: float) -> Any:
        return line_fit(x, y, blocks=blocks)

    monkeypatch.setattr(growth, "_climb_fit", full)
    slow = estimate_growth(t, y, restarts=restarts, warmup_seconds=900.0)
    assert same(fast, slow)


def test_a_clear_gc_sawtooth_takes_the_climbs_shortcut_and_a_flat_noise_does_not() -> None:
    rng = np.random.default_rng(7)
    n = 11520
    x = np.asarray(15.0 * np.arange(n), dtype=np.float64)
    y = 3e8 + 5e7 * (np.arange(n) % 240) / 240 + rng.normal(0, 1e5, n)
    blocks = [slice(a, min(a + 240, n)) for a in range(0, n, 240)]
    fit = growth._climb_fit(x, y, blocks, 5e7, 3600.0)
    assert fit.variance_factor == 1.0  # decided without it
    assert fit.slope == line_fit(x, y, blocks=blocks).slope
    flat = rng.normal(3e8, 1e6, n)
    assert growth._climb_fit(x, flat, blocks, 5e7, 3600.0) == line_fit(x, flat, blocks=blocks)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_median_of_three_columns_is_np_median_nan_rows_included(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = np.round(rng.normal(0, 2, size=(int(rng.integers(1, 200)), 3)))  # ties
    rows[rng.random(rows.shape) < 0.05] = np.nan
    rows[rng.random(rows.shape) < 0.05] = np.inf
    assert np.array_equal(
        growth._median_of_three_rows(rows), np.median(rows, axis=1), equal_nan=True
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_pieces_split_at_drops_are_the_slices_of_the_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5000))
    pieces = pieces_of(rng, n, seed)
    cuts = rng.integers(0, n + 1, size=int(rng.integers(0, 400))).tolist()  # any order, repeats
    if seed % 2:
        cuts = sorted(set(cuts))
    expected = []
    for piece in pieces:
        inner = [c for c in cuts if piece.start < c < piece.stop]
        edges = [piece.start, *inner, piece.stop]
        expected += [slice(a, b) for a, b in itertools.pairwise(edges) if b > a]
    got = growth._split(pieces, cuts)
    assert got == expected
    assert all(type(s.start) is int and type(s.stop) is int for s in got)
