"""The memory-growth estimate on the traces that fool naive slopes: sawtooth, warm-up, a step,
spikes, heavy noise, gaps and restarts. Units: bytes and seconds; slopes in bytes/hour."""

from __future__ import annotations

import numpy as np

from soakwatch.analyzer.growth import estimate_growth
from soakwatch.analyzer.slopes import least_squares_slope

MB = 1e6
THRESHOLD = 2 * MB  # bytes/hour


def hours(n: float, interval: float = 15.0) -> np.ndarray:
    return 1.7e9 + np.arange(0.0, n * 3600.0, interval)


def per_hour(t: np.ndarray) -> np.ndarray:
    return (t - t[0]) / 3600.0


def sawtooth(t: np.ndarray, period: float = 600.0, amplitude: float = 50 * MB) -> np.ndarray:
    return ((t - t[0]) % period) / period * amplitude


def test_a_flat_gc_sawtooth_over_two_hours_passes() -> None:
    t = hours(2)
    y = 300 * MB + sawtooth(t, period=420.0, amplitude=60 * MB)
    estimate = estimate_growth(t, y)
    assert estimate.upper_per_hour < THRESHOLD


def test_a_slow_sawtooth_over_two_hours_is_not_called_a_leak_where_deriv_calls_it_one() -> None:
    t = hours(2)
    y = 300 * MB + sawtooth(t, period=1500.0, amplitude=60 * MB)
    estimate = estimate_growth(t, y)
    # issue 11: the troughs are followed (no window widened to 1.5 periods)
    assert estimate.mode == "troughs" and estimate.cycle is not None
    assert abs(estimate.cycle.period_seconds - 1500.0) < 30
    assert estimate.lower_per_hour < THRESHOLD
    # PromQL deriv() over the same two hours: the partial last tooth reads as growth
    assert least_squares_slope(t, y) * 3600 > THRESHOLD


def test_a_leak_under_a_sawtooth_is_measured_within_its_interval() -> None:
    t = hours(12)
    y = 300 * MB + 4 * MB * per_hour(t) + sawtooth(t)
    estimate = estimate_growth(t, y)
    assert estimate.lower_per_hour <= 4 * MB <= estimate.upper_per_hour
    assert estimate.lower_per_hour > THRESHOLD
    assert estimate.aggregate == "troughs"  # issue 11: the troughs, no longer window minima


def test_a_warm_up_ramp_that_flattens_is_cut_and_the_rest_passes() -> None:
    t = hours(12)
    y = 200 * MB + 300 * MB * (1 - np.exp(-per_hour(t) / 0.4))
    estimate = estimate_growth(t, y)
    assert estimate.warmup_ends and estimate.warmup_ends[0] - t[0] > 3600
    assert estimate.upper_per_hour < THRESHOLD


def test_a_steady_leak_is_not_mistaken_for_warm_up() -> None:
    rng = np.random.default_rng(3)
    t = hours(12)
    y = 200 * MB + 5 * MB * per_hour(t) + rng.normal(0, 2 * MB, t.size)
    estimate = estimate_growth(t, y)
    assert estimate.lower_per_hour <= 5 * MB <= estimate.upper_per_hour
    assert estimate.points >= 60


def test_a_one_time_step_up_is_cut_out_and_passes() -> None:
    rng = np.random.default_rng(4)
    t = hours(12)
    y = 200 * MB + 100 * MB * (per_hour(t) >= 7.3) + rng.normal(0, 1 * MB, t.size)
    estimate = estimate_growth(t, y)
    assert len(estimate.step_times) == 1 and abs(estimate.step_times[0] - t[0] - 7.3 * 3600) < 900
    assert estimate.upper_per_hour < THRESHOLD


def test_a_staircase_leak_still_fails_because_only_one_step_is_cut() -> None:
    t = hours(12)
    y = 200 * MB + 10 * MB * np.floor(per_hour(t) / 1.5)  # +10 MB every 1.5 h: 6.7 MB/h
    estimate = estimate_growth(t, y)
    assert estimate.lower_per_hour > THRESHOLD


def test_single_spikes_do_not_move_the_slope() -> None:
    rng = np.random.default_rng(5)
    t = hours(12)
    y = 200 * MB + rng.normal(0, 0.5 * MB, t.size)
    y[rng.choice(t.size, 30, replace=False)] += 500 * MB
    y[rng.choice(t.size, 5, replace=False)] -= 150 * MB
    estimate = estimate_growth(t, y)
    assert estimate.upper_per_hour < THRESHOLD


def test_a_leak_under_noise_ten_times_its_hourly_growth_is_still_found_over_twelve_hours() -> None:
    rng = np.random.default_rng(6)
    t = hours(12)
    y = 200 * MB + 4 * MB * per_hour(t) + rng.normal(0, 40 * MB, t.size)
    estimate = estimate_growth(t, y)
    assert estimate.lower_per_hour > THRESHOLD


def test_gaps_in_the_series_do_not_bias_the_slope() -> None:
    rng = np.random.default_rng(8)
    t = hours(12)
    keep = (rng.random(t.size) > 0.2) & ~((t > t[0] + 4 * 3600) & (t < t[0] + 6 * 3600))
    y = 200 * MB + 3 * MB * per_hour(t) + rng.normal(0, 1 * MB, t.size)
    estimate = estimate_growth(t[keep], y[keep])
    assert estimate.lower_per_hour <= 3 * MB <= estimate.upper_per_hour


def test_a_leak_with_periodic_restarts_is_found_within_segments() -> None:
    t = hours(12)
    every = 2 * 3600.0
    since = (t - t[0]) % every
    y = 200 * MB + 6 * MB * since / 3600.0
    restarts = t[1:][since[1:] < since[:-1]]
    estimate = estimate_growth(t, y, restarts=restarts)
    assert estimate.segments == 6
    assert estimate.lower_per_hour > THRESHOLD
    # over the whole window (as deriv() sees it) the restarts hide the leak
    assert least_squares_slope(t, y) * 3600 < THRESHOLD


def test_too_little_data_gives_no_fit_rather_than_a_guess() -> None:
    t = hours(0.05)
    estimate = estimate_growth(t, 100 * MB + 0 * t, warmup_seconds=300)
    # issue 11: the 5-minute warm-up is capped at half of the 3 minutes instead of eating them;
    # what is left is far fewer points than a rule's min_points (8), and the estimate says so
    assert estimate.warmup_capped is not None and 80 < estimate.warmup_capped < 90
    assert estimate.points < 8


def test_a_small_fall_in_a_long_climb_is_no_cycle_and_the_leak_fails() -> None:
    t = hours(12)
    y = 300 * MB + 40 * MB * per_hour(t) + np.random.default_rng(3).normal(0, 1 * MB, t.size)
    y[t - t[0] > 5 * 3600] -= 20 * MB  # one GC hiccup gives back 20 MB of 480
    estimate = estimate_growth(t, y, warmup_seconds=900)
    assert len(estimate.drop_times) == 1
    # not "one cycle seen, a bounded cycle or a leak reset by a restart": judged as a trend
    assert estimate.mode == "trend" and estimate.cycle is None
    assert estimate.lower_per_hour <= 40 * MB <= estimate.upper_per_hour
    assert estimate.lower_per_hour > THRESHOLD


def test_two_troughs_read_over_half_a_cycle_each_tell_a_slow_sawtooth_leaks() -> None:
    t = hours(2)
    noise = np.random.default_rng(0).normal(0, 1 * MB, t.size)
    y = 300 * MB + sawtooth(t, period=3000.0, amplitude=200 * MB) + 4 * MB * per_hour(t)
    estimate = estimate_growth(t, y + noise, warmup_seconds=900)
    assert estimate.mode == "troughs" and estimate.cycle is not None
    assert estimate.cycle.troughs == 2
    assert estimate.lower_per_hour <= 4 * MB <= estimate.upper_per_hour
    assert estimate.lower_per_hour > THRESHOLD


def test_a_cut_short_last_cycle_of_curved_ramps_does_not_lift_the_troughs() -> None:
    t = hours(2.3)
    rise = (((t - t[0] + 1200) % 3000) / 3000) ** 2 * 200 * MB  # convex ramps, flat troughs
    for seed in range(3):
        noise = np.random.default_rng(seed).normal(0, 1 * MB, t.size)
        estimate = estimate_growth(t, 300 * MB + rise + noise, warmup_seconds=900)
        assert estimate.mode == "troughs" and estimate.cycle is not None
        # the last cycle is read over less than half a period; the full cycles read over the
        # same span say how much a shorter span moves a level on these ramps (about 8 MB)
        assert estimate.lower_per_hour < 0 < estimate.upper_per_hour
        assert abs(estimate.slope_per_hour) < 1 * MB


def test_five_minute_restart_segments_are_not_cut_at_noise_read_as_a_level_shift() -> None:
    t = hours(2)
    since = (t - t[0]) % 300
    y = 200 * MB + 30 * MB * (1 - np.exp(-since / 15)) + 4 * MB * since / 3600
    y += np.random.default_rng(0).normal(0, 0.1 * MB, t.size)
    restarts = t[1:][since[1:] < since[:-1]]
    estimate = estimate_growth(t, y, restarts=restarts, warmup_seconds=900)
    assert estimate.segments == 24
    assert estimate.step_times == []
    assert estimate.lower_per_hour > THRESHOLD


def test_troughs_read_over_a_whole_cycle_resolve_a_2x_leak_under_a_noisy_gc_sawtooth() -> None:
    # a 5-minute GC sawtooth of 60 MB under 4 MB of noise, leaking 4 MB/h, over 2 hours: read
    # over half a cycle each trough was twice as uncertain and 7 of these 20 runs failed
    t = hours(2)
    resolved = covered = 0
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0, 4 * MB, t.size)
        saw = ((t - t[0] + 37) % 300) / 300 * 60 * MB
        y = 300 * MB + saw + 4 * MB * per_hour(t)
        estimate = estimate_growth(t, y + noise, warmup_seconds=900)
        assert estimate.mode == "troughs"
        resolved += estimate.lower_per_hour > THRESHOLD
        covered += estimate.lower_per_hour <= 4 * MB <= estimate.upper_per_hour
    assert resolved >= 12
    assert covered >= 18


def test_a_shallow_sawtooth_whose_drops_are_partly_unseen_is_still_read_as_a_cycle() -> None:
    # 36 MB every 200 s under 4 MB of noise: about a third of the drops stay below the drop
    # test, and a piece holding one climbs half as much; judged over every piece, only 1 of
    # these 20 runs read as a cycle
    t = hours(2)
    cycles = 0
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0, 4 * MB, t.size)
        y = 300 * MB + ((t - t[0] + 37) % 200) / 200 * 36 * MB + noise
        estimate = estimate_growth(t, y, warmup_seconds=900)
        cycles += estimate.mode == "troughs"
        assert estimate.lower_per_hour < THRESHOLD
    assert cycles >= 8


def test_restart_segments_shorter_than_the_warm_up_skip_what_their_shared_shape_shows() -> None:
    # restarted every 5 minutes, 30 MB of warm-up with a 15 s time constant: the fixed 15-minute
    # warm-up capped at half a segment kept 157 s of each 300 (the cap of 142 s); the mean
    # start of the 24 segments settles after about 100 s, kept half as long again
    t = hours(2)
    since = (t - t[0] + 100) % 300
    restarts = t[1:][since[1:] < since[:-1]]
    rise = 200 * MB + 30 * MB * (1 - np.exp(-since / 15))
    for leak, seed in ((0.0, 1), (4 * MB, 2)):
        noise = np.random.default_rng(seed).normal(0, 0.1 * MB, t.size)
        y = rise + leak * since / 3600 + noise
        estimate = estimate_growth(t, y, restarts=restarts, warmup_seconds=900)
        assert estimate.warmup_shared is not None and 60 <= estimate.warmup_shared <= 140
        assert estimate.covered_seconds > 0.53 * (t[-1] - t[0])
        assert estimate.lower_per_hour <= leak <= estimate.upper_per_hour
        if leak:
            assert estimate.lower_per_hour > THRESHOLD
        else:
            assert estimate.upper_per_hour < THRESHOLD


def test_a_cycle_whose_ramp_steepens_midway_has_every_trough_read_over_half_a_period() -> None:
    # a 30-minute sawtooth whose amplitude goes from 33 to 131 MB 14 minutes into a cycle
    # (load raised): the line through that whole cycle ends 30 MB below its trough, and
    # the troughs read over whole cycles rose 25 MB/h; the half reads disagree, so all
    # troughs are read over half a period
    t = hours(2)
    x = t - t[0]
    amplitude = np.where(x < 2700, 33 * MB, 131 * MB)
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(0, 1 * MB, t.size)
        y = 200 * MB + ((x + 1715) % 1785) / 1785 * amplitude + noise
        estimate = estimate_growth(t, y, warmup_seconds=900)
        assert estimate.mode == "troughs"
        assert abs(estimate.window_seconds - 1785 / 2) < 30
        assert estimate.lower_per_hour < THRESHOLD
        assert estimate.slope_per_hour < 10 * MB


def _five_minute_restarts(
    tau: float, size: float, leak: float, noise: float, seed: int, n_hours: float = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Restarts every 5 minutes at a random phase, each followed by a warm-up rise
    size (1 - exp(-since / tau)) and a leak reset by the restart; the restart times are the
    first sample after each (as a start-time series read at that sample shows them)."""
    rng = np.random.default_rng(seed)
    t = hours(n_hours)
    since = (t - t[0] + rng.uniform(0, 300)) % 300
    restarts = t[1:][since[1:] < since[:-1]]
    y = 200 * MB + size * (1 - np.exp(-since / tau)) + leak * since / 3600
    return t, y + rng.normal(0, noise, t.size), restarts


def test_restart_segments_that_all_settle_after_their_start_pass() -> None:
    # issue 11 item 3: a 60 s warm-up of 30 MB in every 5-minute segment; the fixed warm-up
    # capped at half a segment left its tail in each, read as steady growth (30 of 30 such
    # runs failed over 12 h)
    for seed in range(3):
        t, y, restarts = _five_minute_restarts(60, 30 * MB, 0.0, 0.1 * MB, seed)
        estimate = estimate_growth(t, y, restarts=restarts, warmup_seconds=900)
        assert estimate.segment_settling is not None
        assert 45 <= estimate.segment_settling[0] <= 80
        assert estimate.upper_per_hour < THRESHOLD
    # a deeper warm-up (80 MB, tau 40 s) under more noise leaves s too unsure to pass, but
    # it no longer reads as growth
    t, y, restarts = _five_minute_restarts(40, 80 * MB, 0.0, 1 * MB, 0)
    estimate = estimate_growth(t, y, restarts=restarts, warmup_seconds=900)
    assert estimate.segment_settling is not None
    assert estimate.lower_per_hour < 0 < estimate.upper_per_hour


def test_a_straight_leak_in_every_restart_segment_still_fails() -> None:
    # no warm-up: nothing levels off, the slope is judged as before
    for seed in range(3):
        t, y, restarts = _five_minute_restarts(40, 0.0, 20 * MB, 1 * MB, seed)
        estimate = estimate_growth(t, y, restarts=restarts, warmup_seconds=900)
        assert estimate.segment_settling is None
        assert estimate.lower_per_hour > THRESHOLD


def test_a_leak_under_a_warm_up_in_every_restart_segment_still_fails() -> None:
    # the warm-up is modelled, the leak beside it stays: 20 MB/h under a 15 s warm-up of 30 MB
    for seed in range(3):
        t, y, restarts = _five_minute_restarts(15, 30 * MB, 20 * MB, 0.5 * MB, seed)
        estimate = estimate_growth(t, y, restarts=restarts, warmup_seconds=900)
        assert estimate.segment_settling is not None
        assert estimate.lower_per_hour <= 20 * MB <= estimate.upper_per_hour
        assert estimate.lower_per_hour > THRESHOLD


def test_a_gc_sawtooth_riding_on_a_settling_cache_fill_does_not_fail() -> None:
    # a 5-minute 40 MB sawtooth over a cache fill of 150 MB (tau 15 min), 2 MB of noise, 2 h:
    # the troughs rise fast, then flatten; their straight line failed these runs (troughs
    # 10-25 MB/h, lower bound above 2 MB/h)
    t = hours(2)
    fill = 150 * MB * (1 - np.exp(-(t - t[0]) / 900.0))
    failed = settled = 0
    for seed in range(10):
        noise = np.random.default_rng(seed).normal(0, 2 * MB, t.size)
        saw = ((t - t[0] + 41) % 300) / 300 * 40 * MB
        estimate = estimate_growth(t, 300 * MB + fill + saw + noise, warmup_seconds=900)
        assert estimate.mode == "troughs"
        failed += estimate.lower_per_hour > THRESHOLD
        settled += estimate.settling is not None
    assert failed == 0
    assert settled >= 8


def test_a_leak_under_a_gc_sawtooth_is_not_read_as_a_settling_fill() -> None:
    # the same sawtooth leaking 20 MB/h with no fill: the troughs rise straight, no settling
    # term is significant and the leak fails
    t = hours(2)
    failed = settled = 0
    for seed in range(10):
        noise = np.random.default_rng(seed).normal(0, 2 * MB, t.size)
        saw = ((t - t[0] + 41) % 300) / 300 * 40 * MB
        y = 300 * MB + saw + 20 * MB * per_hour(t) + noise
        estimate = estimate_growth(t, y, warmup_seconds=900)
        assert estimate.mode == "troughs"
        failed += estimate.lower_per_hour > THRESHOLD
        settled += estimate.settling is not None
    assert failed == 10
    assert settled <= 1


def test_cycles_sharing_one_slope_read_their_troughs_with_it() -> None:
    # a 10-minute 40 MB sawtooth under 4 MB of noise leaking 4 MB/h over 2 h: each trough read
    # with its own cycle's slope resolved 9 of these 20 runs, with the slope all cycles share
    # 17 of 20
    t = hours(2)
    resolved = covered = 0
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0, 4 * MB, t.size)
        saw = ((t - t[0] + 37 + 13 * seed) % 600) / 600 * 40 * MB
        estimate = estimate_growth(
            t, 300 * MB + saw + 4 * MB * per_hour(t) + noise, warmup_seconds=900
        )
        assert estimate.mode == "troughs"
        resolved += estimate.lower_per_hour > THRESHOLD
        covered += estimate.lower_per_hour <= 4 * MB <= estimate.upper_per_hour
    assert resolved >= 15
    assert covered >= 18


def test_an_amplitude_drifting_in_time_keeps_each_cycle_its_own_slope() -> None:
    # a 3-minute 20 MB sawtooth whose amplitude grows by half over 2 h, 2 MB of noise, flat
    # troughs: a slope shared by all cycles lifts the late troughs by half the amplitude's
    # growth (3 of these 20 runs failed without the drift test)
    t = hours(2)
    for seed in range(20):
        noise = np.random.default_rng(seed).normal(0, 2 * MB, t.size)
        amplitude = 20 * MB * (1 + per_hour(t) / 4)
        saw = ((t - t[0] + 37 + 13 * seed) % 180) / 180 * amplitude
        estimate = estimate_growth(t, 300 * MB + saw + noise, warmup_seconds=900)
        assert not estimate.lower_per_hour > THRESHOLD


def test_troughs_that_climb_and_fall_back_are_a_slower_cycle_not_a_rising_floor() -> None:
    # a 5-minute 25 MB sawtooth on a 100-minute 40 MB one whose drop comes 110 min in: the
    # fast troughs climb 24 MB/h and fall back once; their straight line failed all 10 runs.
    # One slow cycle seen cannot tell a bounded cycle from a leak: no fit, no verdict yet
    t = hours(2)
    for seed in range(10):
        noise = np.random.default_rng(seed).normal(0, 1 * MB, t.size)
        fast = ((t - t[0] + 37 + 11 * seed) % 300) / 300 * 25 * MB
        slow = ((t - t[0] + 5400) % 6000) / 6000 * 40 * MB
        estimate = estimate_growth(t, 300 * MB + fast + slow + noise, warmup_seconds=900)
        assert estimate.mode == "troughs" and estimate.cycle is not None
        assert not estimate.lower_per_hour > THRESHOLD
        assert not estimate.cycle.enough
        assert abs(estimate.cycle.within_slope_per_hour - 24 * MB) < 4 * MB


def test_a_trough_carries_the_error_of_its_instant_so_low_noise_intervals_cover_the_leak() -> None:
    # GC sawtooths of 3-20 minutes and 20-60 MB under 0.2 MB of noise, leaking 2 MB/h over 2 h:
    # the drop came anywhere within the 15 s around its instant, an error of up to 2.5 MB per
    # trough on a steep ramp that the sample noise does not show; without it the interval
    # missed the leak in 10 of these 60 runs (a 95 % interval)
    t = hours(2)
    covered = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        period = rng.uniform(3, 20) * 60
        amplitude = rng.uniform(20, 60) * MB
        saw = ((t - t[0] + rng.uniform(0, period)) % period) / period * amplitude
        y = 300 * MB + saw + 2 * MB * per_hour(t) + rng.normal(0, 0.2 * MB, t.size)
        estimate = estimate_growth(t, y, warmup_seconds=900)
        assert estimate.mode == "troughs"
        covered += estimate.lower_per_hour <= 2 * MB <= estimate.upper_per_hour
    assert covered >= 55
