"""Synthetic traces with a known answer, for the analyzer's accuracy benchmark.

A memory family is a function ``make(rng, hours, leak, noise) -> Trace``: the samples of one
run of ``hours`` at a 15 s step, a true leak of ``leak`` bytes/hour and Gaussian noise of sd
``noise`` bytes (some families fix their own noise or ignore it: RSS counted in pages). With
``leak=0`` every family is leak-free in its latest regime, which is the answer the analyzer
must give. Each trace also carries what an *oracle* knows (the leak-free shape and the samples
of the leaking regime), so the benchmark can state what a perfect estimator could have seen.

``FAMILIES`` says, per family, whether its leak-free traces count as false fails, which leak
rates it is drawn with, at which run lengths, and whether the recall targets apply to it.

The latency families (``latency_trace``) return Prometheus histogram bucket counters of
``soak_load_request_duration_seconds`` (cumulative per ``le``, as a real scrape shows them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MB = 1e6
BASE = 200 * MB
PAGE = 4096.0
STEP = 15.0


class Trace(NamedTuple):
    t: FloatArray  # sample times, Unix seconds
    y: FloatArray  # resident memory, bytes
    restarts: FloatArray  # restart times (the start-time series is built from them, if shown)
    shape: FloatArray  # the leak-free part of y (no leak, no noise): known to the oracle only
    segment: IntArray  # per sample: the leaking regime's segment id, -1 outside (oracle only)


Maker = Callable[[np.random.Generator, float, float, float], Trace]


def timeline(hours: float, interval: float = STEP) -> FloatArray:
    return np.arange(0.0, hours * 3600.0, interval) + 1.7e9


def _hours(t: FloatArray) -> FloatArray:
    return np.asarray((t - t[0]) / 3600.0, dtype=np.float64)


def _whole(t: FloatArray) -> IntArray:
    return np.zeros(t.size, dtype=np.int64)


def _trace(
    t: FloatArray,
    shape: FloatArray,
    leak_part: FloatArray,
    noise: FloatArray,
    restarts: FloatArray | None = None,
    segment: IntArray | None = None,
) -> Trace:
    return Trace(
        t,
        shape + leak_part + noise,
        np.empty(0) if restarts is None else restarts,
        shape,
        _whole(t) if segment is None else segment,
    )


# -- the original seven ----------------------------------------------------------------------
def flat(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """Flat at 200 MB with Gaussian noise."""
    t = timeline(hours)
    return _trace(t, np.full(t.size, BASE), leak * _hours(t), rng.normal(0, noise, t.size))


def sawtooth(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """A GC sawtooth: grows 20-60 MB over a period of 3-20 minutes, then drops."""
    t = timeline(hours)
    period = rng.uniform(3, 20) * 60
    amplitude = rng.uniform(20, 60) * MB
    phase = rng.uniform(0, period)
    saw = ((t - t[0] + phase) % period) / period * amplitude
    return _trace(t, BASE + saw, leak * _hours(t), rng.normal(0, noise, t.size))


def warmup(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """A cache fill: +150..400 MB approached with a time constant of 5..20 minutes, then flat."""
    t = timeline(hours)
    x = _hours(t)
    size = rng.uniform(150, 400) * MB
    tau = rng.uniform(5, 20) / 60.0
    return _trace(t, BASE + size * (1 - np.exp(-x / tau)), leak * x, rng.normal(0, noise, t.size))


def warmup_tail(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """A smaller fill that is still settling after the warm-up: +20..200 MB approached with a
    time constant of 4..20 minutes, then flat. Up to 95 MB is left after a 15-minute warm-up,
    often no deeper than the noise: a tail a straight line reads as growth."""
    t = timeline(hours)
    x = _hours(t)
    size = rng.uniform(20, 200) * MB
    tau = rng.uniform(4, 20) / 60.0
    return _trace(t, BASE + size * (1 - np.exp(-x / tau)), leak * x, rng.normal(0, noise, t.size))


def step(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """One step up of 30..200 MB somewhere between 20 % and 80 % of the run, then flat."""
    t = timeline(hours)
    x = _hours(t)
    at = rng.uniform(0.2, 0.8) * hours
    size = rng.uniform(30, 200) * MB
    return _trace(
        t, BASE + size * (x >= at).astype(np.float64), leak * x, rng.normal(0, noise, t.size)
    )


def spikes(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """Single-sample spikes of +100..500 MB at 1 % of the samples."""
    t = timeline(hours)
    hit = rng.random(t.size) < 0.01
    shape = BASE + hit * rng.uniform(100, 500, t.size) * MB
    return _trace(t, shape, leak * _hours(t), rng.normal(0, noise, t.size))


def restarts(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """Restarts every 1.5..4 hours back to the base level, each followed by a short warm-up."""
    return _restarting(rng, hours, leak, noise, rng.uniform(1.5, 4.0) * 3600, 0.1 * 3600, 80 * MB)


def gaps(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """Scrape failures: 10 % of samples lost, and one outage of 5 % of the run."""
    whole = flat(rng, hours, leak, noise)
    t = whole.t
    keep = rng.random(t.size) > 0.1
    out_at = rng.uniform(0.1, 0.85) * (t[-1] - t[0]) + t[0]
    keep &= ~((t >= out_at) & (t < out_at + 0.05 * (t[-1] - t[0])))
    return Trace(t[keep], whole.y[keep], whole.restarts, whole.shape[keep], whole.segment[keep])


# -- issue 11 --------------------------------------------------------------------------------
def late_onset(share: float) -> Maker:
    """Flat for ``share`` of the run, then the leak (a cache that stops evicting, a new traffic
    pattern): the latest regime is the leak."""

    def make(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
        t = timeline(hours)
        x = _hours(t)
        onset = share * hours
        segment = np.where(x >= onset, 0, -1).astype(np.int64)
        return _trace(
            t,
            np.full(t.size, BASE),
            leak * np.maximum(x - onset, 0.0),
            rng.normal(0, noise, t.size),
            segment=segment,
        )

    make.__doc__ = f"Flat for {share:.0%} of the run, then the leak."
    return make


def _saw(t: FloatArray, period: float, phase: float, amplitude: FloatArray | float) -> FloatArray:
    """A ramp from the trough up by ``amplitude`` over each period, then a drop to the trough."""
    return np.asarray(((t - t[0] + phase) % period) / period * amplitude, dtype=np.float64)


def long_sawtooth(period_hours: float, low_mb: float, high_mb: float) -> Maker:
    """A slow cycle (a cache rebuilt every ``period_hours``, a daily batch): ramps by
    ``low_mb``..``high_mb`` MB, drops back to a trough that is flat unless the trace leaks (then
    the troughs rise with the leak)."""

    def make(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
        t = timeline(hours)
        period = period_hours * 3600.0
        amplitude = rng.uniform(low_mb, high_mb) * MB
        saw = _saw(t, period, rng.uniform(0, period), amplitude)
        return _trace(t, BASE + saw, leak * _hours(t), rng.normal(0, noise, t.size))

    make.__doc__ = f"Sawtooth, period {period_hours:g} h, {low_mb:g}-{high_mb:g} MB, flat troughs."
    return make


def amplitude_change(direction: str) -> Maker:
    """A sawtooth of period 10..30 min whose amplitude steps down (load throttled) or up (load
    raised) somewhere between 40 % and 60 % of the run; the troughs stay flat."""
    low, high = 40 * MB, 160 * MB
    before, after = (high, low) if direction == "down" else (low, high)

    def make(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
        t = timeline(hours)
        x = _hours(t)
        period = rng.uniform(10, 30) * 60
        at = rng.uniform(0.4, 0.6) * hours
        amplitude = np.where(x < at, before, after) * rng.uniform(0.8, 1.2)
        saw = _saw(t, period, rng.uniform(0, period), amplitude)
        return _trace(t, BASE + saw, leak * x, rng.normal(0, noise, t.size))

    make.__doc__ = f"Sawtooth whose amplitude steps {direction} mid-run."
    return make


def pages(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """RSS as the kernel counts it, in 4 KiB pages: constant but for 3..8 single-page steps up
    or down at random times (``noise`` is ignored; a leak, if any, is rounded to pages too)."""
    t = timeline(hours)
    x = _hours(t)
    events = int(rng.integers(3, 9))
    at = np.sort(rng.uniform(0, hours, events))
    moves = rng.choice((-1.0, 1.0), events)
    level = np.zeros(t.size)
    for when, move in zip(at, moves, strict=True):
        level += move * (x >= when)
    base = round(BASE / PAGE) * PAGE
    shape = base + level * PAGE
    y = shape + np.floor(leak * x / PAGE) * PAGE
    return Trace(t, y, np.empty(0), shape, _whole(t))


def leak_stopped(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
    """A leak of 5..20x the default threshold (2 MB/h) during the first 10..30 % of the run that
    then stopped: flat ever since (the latest regime is leak-free); ``leak`` adds to the end."""
    t = timeline(hours)
    x = _hours(t)
    until = rng.uniform(0.1, 0.3) * hours
    old = rng.uniform(10, 40) * MB
    shape = BASE + old * np.minimum(x, until)
    segment = np.where(x >= until, 0, -1).astype(np.int64)
    return _trace(
        t,
        shape,
        leak * np.maximum(x - until, 0.0),
        rng.normal(0, noise, t.size),
        segment=segment,
    )


def _restarting(
    rng: np.random.Generator,
    hours: float,
    leak: float,
    noise: float,
    every: float,
    tau: float,
    size: float,
) -> Trace:
    """Restarts every ``every`` seconds (random phase) back to the base level, each followed by a
    warm-up of ``size`` bytes with time constant ``tau`` seconds; the leak grows within each
    segment and is reset by the restart."""
    t = timeline(hours)
    since = (t - t[0] + rng.uniform(0, every)) % every
    shape = BASE + size * (1 - np.exp(-since / tau))
    started = np.r_[False, since[1:] < since[:-1]]
    starts = t[started]
    segment = np.cumsum(started).astype(np.int64)
    segment[since < 5 * tau] = -1  # the oracle skips each warm-up
    return _trace(
        t, shape, leak * since / 3600.0, rng.normal(0, noise, t.size), starts, segment=segment
    )


def restart_every(every_seconds: float, tau_seconds: float, size_mb: float) -> Maker:
    def make(rng: np.random.Generator, hours: float, leak: float, noise: float) -> Trace:
        return _restarting(rng, hours, leak, noise, every_seconds, tau_seconds, size_mb * MB)

    make.__doc__ = f"Restart every {every_seconds / 60:g} min, warm-up tau {tau_seconds:g} s."
    return make


# -- the table the benchmark walks -----------------------------------------------------------
CLASSIC = "classic"  # leaks 0.5x..20x the threshold under noise 0.1x..10x the hourly leak
TARGETED = "targeted"  # leaks 2x, 4x, 10x the threshold under the family's own noise


@dataclass(frozen=True)
class Family:
    name: str
    make: Maker
    clean: bool  # leak-free traces (leak=0) are judged: a fail is a false fail
    leaks: str | None  # CLASSIC, TARGETED or None (no leak variants)
    noises_mb: tuple[float, ...]  # noise sd of its traces (cycled), for CLASSIC only clean ones
    windows: tuple[float, ...] = (2.0, 12.0, 48.0)  # run lengths, hours
    start_times: bool = True  # the start-time series of its restarts is given to the analyzer
    recall_targets: bool = True  # the recall targets apply to it
    note: str = ""


STANDARD_WINDOWS = (2.0, 12.0, 48.0)
SHORT_WINDOWS = (0.25, 43 / 60)  # shorter than the rule's min_duration: informative only

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("flat", flat, True, CLASSIC, (0.5, 2.0, 10.0)),
        Family("sawtooth", sawtooth, True, CLASSIC, (0.5, 2.0, 10.0)),
        Family("warmup", warmup, True, None, (0.5, 2.0, 10.0)),
        Family("warmup_tail", warmup_tail, True, None, (1.0, 5.0, 10.0)),
        Family("step", step, True, None, (0.5, 2.0, 10.0)),
        Family("spikes", spikes, True, None, (0.5, 2.0, 10.0)),
        Family("restarts", restarts, True, CLASSIC, (0.5, 2.0, 10.0)),
        Family("gaps", gaps, True, None, (0.5, 2.0, 10.0)),
        Family("late_onset_50", late_onset(0.5), False, TARGETED, (1.0,)),
        Family("late_onset_75", late_onset(0.75), False, TARGETED, (1.0,)),
        Family(
            "sawtooth_1h",
            long_sawtooth(1, 100, 300),
            True,
            None,
            (1.0,),
            note="period 1 h, 100-300 MB",
        ),
        Family(
            "sawtooth_6h",
            long_sawtooth(6, 250, 350),
            True,
            None,
            (1.0,),
            windows=(12.0, 48.0),
            note="period 6 h, 250-350 MB; no 2 h window: shorter than one period, a ramp that "
            "no analyzer can tell from a leak",
        ),
        Family("sawtooth_rising_1h", long_sawtooth(1, 100, 300), False, TARGETED, (1.0,)),
        Family(
            "sawtooth_rising_6h",
            long_sawtooth(6, 250, 350),
            False,
            TARGETED,
            (1.0,),
            windows=(12.0, 48.0),
        ),
        Family("amplitude_down", amplitude_change("down"), True, None, (1.0,)),
        Family("amplitude_up", amplitude_change("up"), True, None, (1.0,)),
        Family("pages", pages, True, None, (0.0,), note="4 KiB pages, 3-8 single-page steps"),
        Family("noise5", flat, True, TARGETED, (5.0,), note="flat, 5 MB Gaussian noise"),
        Family("leak_stopped", leak_stopped, True, None, (1.0,)),
        Family("restart_8h", restart_every(8 * 3600, 360, 80), True, TARGETED, (1.0,)),
        Family("restart_2h", restart_every(2 * 3600, 360, 80), True, TARGETED, (1.0,)),
        Family(
            "restart_5min",
            restart_every(300, 15, 30),
            True,
            TARGETED,
            (0.1,),
            windows=SHORT_WINDOWS + STANDARD_WINDOWS,
        ),
        Family(
            "restart_8h_hidden",
            restart_every(8 * 3600, 360, 80),
            True,
            TARGETED,
            (1.0,),
            start_times=False,
            recall_targets=False,
            note="no start-time series",
        ),
        Family(
            "restart_2h_hidden",
            restart_every(2 * 3600, 360, 80),
            True,
            TARGETED,
            (1.0,),
            start_times=False,
            recall_targets=False,
            note="no start-time series",
        ),
        Family(
            "restart_5min_hidden",
            restart_every(300, 15, 30),
            True,
            TARGETED,
            (0.1,),
            windows=SHORT_WINDOWS + STANDARD_WINDOWS,
            start_times=False,
            recall_targets=False,
            note="no start-time series",
        ),
    )
}


# -- latency ---------------------------------------------------------------------------------
# Geometric buckets 1 ms .. 30 s, ratio 2^(1/4) (the resolution of a native histogram of schema
# 2), so that a true +40 % reads as +40 % through histogram_quantile's linear interpolation. With
# the load driver's default buckets (ratio about 2.5) the interpolation reads a true +40 % in p95
# as anything from +10 % to +40 %: a fact of coarse buckets, not of the judgement across windows
# that these families measure.
BUCKETS = tuple(float(0.001 * 2 ** (k / 4)) for k in range(int(4 * math.log2(30 / 0.001)) + 2))
_erf = np.vectorize(math.erf, otypes=[np.float64])


class LatencyTrace(NamedTuple):
    t: FloatArray  # scrape times
    bounds: FloatArray  # le of each bucket, +Inf last
    cumulative: FloatArray  # (scrapes, buckets): each bucket's counter at each scrape


def latency_trace(
    rng: np.random.Generator, hours: float, kind: str, *, warmup: float = 600.0
) -> LatencyTrace:
    """Request latencies of one scenario, lognormal (median 20..80 ms, sigma 0.5, p95 about
    2.3x the median), 8..15 requests/s, with a slow log-scale wander (AR(1), sd 3 %, 10 min)
    and a start-up slowness that fades within the ``warmup``. ``kind``:

    - ``burst``: latencies 1.5..3x for 5..30 min at a random time after the warm-up (one
      transient episode: the run must pass);
    - ``sustained``: latencies +40 % from a random time between the end of the first 30-min
      window after the warm-up and the middle of the rest, to the end (the run must fail)."""
    t = timeline(hours)
    elapsed = t - t[0]
    median = rng.uniform(0.020, 0.080)
    sigma = 0.5
    rate = rng.uniform(8, 15)
    rho = math.exp(-STEP / 600.0)
    shocks = rng.normal(0, 0.03 * math.sqrt(1 - rho * rho), t.size)
    wander = np.empty(t.size)
    level = rng.normal(0, 0.03)
    for i, shock in enumerate(shocks):
        level = rho * level + shock
        wander[i] = level
    factor = np.exp(wander) * (1 + 0.5 * np.exp(-elapsed / (warmup / 5)))
    if kind == "burst":
        length = rng.uniform(5, 30) * 60
        at = rng.uniform(warmup, max(elapsed[-1] - length, warmup))
        factor = factor * np.where(
            (elapsed >= at) & (elapsed < at + length), rng.uniform(1.5, 3), 1
        )
    elif kind == "sustained":
        first_end = warmup + 1800.0
        at = rng.uniform(first_end, first_end + 0.5 * max(elapsed[-1] - first_end - 1800.0, 0))
        factor = factor * np.where(elapsed >= at, 1.4, 1.0)
    else:
        raise ValueError(f"unknown latency family {kind!r}")
    bounds = np.array((*BUCKETS, math.inf))
    finite = np.log(np.array(BUCKETS))[None, :]
    centre = np.log(median * factor)[:, None]
    below = 0.5 * (1 + _erf((finite - centre) / (sigma * math.sqrt(2))))
    probabilities = np.diff(np.c_[np.zeros(t.size), below, np.ones(t.size)], axis=1)
    probabilities = np.clip(probabilities, 0, None)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    requests = rng.poisson(rate * STEP, t.size)
    per_bucket = rng.multinomial(requests, probabilities).astype(np.float64)
    cumulative = np.cumsum(np.cumsum(per_bucket, axis=1), axis=0)
    return LatencyTrace(t, bounds, cumulative)


LATENCY_FAMILIES = {"latency_burst": "burst", "latency_sustained": "sustained"}
