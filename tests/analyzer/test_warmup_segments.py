"""Warm-up detection, restart segmentation and level shifts."""

from __future__ import annotations

import numpy as np

from soakwatch.analyzer.segments import (
    counter_reset_times,
    drops,
    level_shift,
    restart_times,
    split_at,
)
from soakwatch.analyzer.warmup import warmup_end


def test_a_ramp_then_flat_is_cut_where_the_ramp_ends() -> None:
    x = np.arange(48.0)
    y = np.minimum(x, 10.0) * 10.0 + np.random.default_rng(1).normal(0, 1, x.size)
    assert 9 <= warmup_end(x, y) <= 12


def test_a_steady_linear_trend_has_no_warm_up() -> None:
    x = np.arange(48.0)
    y = 3.0 * x + np.random.default_rng(2).normal(0, 1, x.size)
    assert warmup_end(x, y) <= 2


def test_the_warm_up_is_capped_at_the_given_fraction() -> None:
    x = np.arange(40.0)
    y = 100.0 * x  # looks like a ramp that never ends
    y[30:] = y[30]
    assert warmup_end(x, y, max_fraction=0.25) <= 10


def test_restart_times_come_from_start_time_changes_counters_and_up() -> None:
    t = np.arange(10.0) * 15
    start = np.array([100.0] * 4 + [160.0] * 6)
    counter = np.array([0.0] * 7 + [1.0] * 3)
    up = np.array([1.0, 1, 0, 1, 1, 1, 1, 1, 1, 1])
    times = restart_times((t, start), (t, counter), (t, up))
    assert times.tolist() == [45.0, 60.0, 105.0]


def test_start_time_jitter_below_a_second_is_not_a_restart() -> None:
    t = np.arange(5.0)
    assert restart_times((t, np.array([100.0, 100.3, 99.9, 100.0, 100.2]))).size == 0


def test_split_at_cuts_before_each_boundary() -> None:
    t = np.arange(10.0)
    assert split_at(t, np.array([3.0, 3.5, 20.0])) == [slice(0, 3), slice(3, 4), slice(4, 10)]


def test_counter_resets_are_where_the_counter_went_down() -> None:
    assert counter_reset_times(np.arange(4.0), np.array([5.0, 6.0, 1.0, 2.0])).tolist() == [2.0]


def test_a_lasting_level_shift_is_found_and_a_spike_is_not() -> None:
    y = np.r_[np.zeros(20), np.full(20, 50.0)] + np.random.default_rng(3).normal(0, 1, 40)
    assert level_shift(y) == 20
    spike = np.random.default_rng(4).normal(0, 1, 40)
    spike[15] = 80.0
    assert level_shift(spike) is None


def test_a_jump_on_a_trend_is_found_from_the_runs_around_it() -> None:
    rng = np.random.default_rng(6)
    y = np.r_[np.zeros(36), np.full(36, 9.0)] + 0.5 * np.arange(72) + rng.normal(0, 1.5, 72)
    assert level_shift(y) in (35, 36, 37)


def test_a_smooth_trend_has_no_level_shift() -> None:
    y = np.arange(40.0) * 5 + np.random.default_rng(5).normal(0, 1, 40)
    assert level_shift(y) is None


def test_a_steady_leak_with_page_sized_wobble_has_no_level_shift() -> None:
    # The demo's leaking service: window points 3 MB apart whose only noise is the allocator's
    # 4 KiB pages; the spread is tiny next to the trend, and no point is a jump.
    y = 5e7 + 3e6 * np.arange(10.0) + (np.arange(10) % 3) * 4096.0
    assert level_shift(y) is None
    y[6:] += 2e7  # a real jump on that leak is still found
    assert level_shift(y) == 6


def test_series_without_any_restart_give_no_restart_times_and_one_restart_is_kept() -> None:
    t = np.arange(10.0) * 15
    steady = restart_times((t, np.full(10, 100.0)), (t, np.zeros(10)), (t, np.ones(10)))
    assert steady.dtype == np.float64 and steady.size == 0
    counter = np.array([0.0] * 7 + [1.0] * 3)
    only = restart_times((t, np.full(10, 100.0)), (t, counter), (t, np.ones(10)))
    assert only.tolist() == [105.0]


def test_a_flat_series_with_5_mb_of_noise_has_no_drops() -> None:
    # false drops would turn noise into a sawtooth: the window drops are held to one chance
    # in a thousand per series, over every sample and window size
    for hours, seeds in ((2, range(20)), (48, range(3))):
        n = int(hours * 240)
        for seed in seeds:
            y = 300e6 + np.random.default_rng(seed).normal(0, 5e6, n)
            assert drops(y, [slice(0, n)]) == [], (hours, seed)


def test_drops_under_the_noise_of_one_difference_are_found_by_matched_windows() -> None:
    # a 25 MB sawtooth with a 5-minute period under 4 MB of noise: each drop is 4.4 sd of a
    # first difference, under the limit of 6 (one difference saw 1 to 4 of 23), but the means
    # of 4 to 16 samples a side see nearly all of them, each where it is
    n = 480
    k = np.arange(n)
    true = k[1:][(k[1:] % 20) == 0]
    for seed in range(5):
        y = 300e6 + (k % 20) / 20 * 25e6 + np.random.default_rng(seed).normal(0, 4e6, n)
        found = drops(y, [slice(0, n)])
        assert len(found) >= 0.8 * true.size, seed
        assert all(np.min(np.abs(true - i)) <= 2 for i in found), seed
