"""Synthetic memory traces with a known answer, for the analyzer's accuracy benchmark.

Each family returns (t seconds, rss bytes, restart times) for a given duration, scrape interval,
true leak (bytes/hour) and noise level; the leak-free families have leak 0."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
MB = 1e6
BASE = 200 * MB


def timeline(hours: float, interval: float = 15.0) -> FloatArray:
    return np.arange(0.0, hours * 3600.0, interval) + 1.7e9


def flat(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    t = timeline(hours)
    x = (t - t[0]) / 3600.0
    return t, BASE + leak * x + rng.normal(0, noise, t.size), np.empty(0)


def sawtooth(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    """A GC sawtooth: grows 20-60 MB over a period of 3-20 minutes (jittered), then drops."""
    t = timeline(hours)
    x = (t - t[0]) / 3600.0
    period = rng.uniform(3, 20) * 60
    amplitude = rng.uniform(20, 60) * MB
    phase = rng.uniform(0, period)
    jitter = np.cumsum(rng.normal(0, 0.05 * period, t.size)) * 0.0
    saw = ((t - t[0] + phase + jitter) % period) / period * amplitude
    return t, BASE + leak * x + saw + rng.normal(0, noise, t.size), np.empty(0)


def warmup(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    """A cache fill: +150..400 MB approached with a time constant of 5..20 minutes."""
    t = timeline(hours)
    x = (t - t[0]) / 3600.0
    size = rng.uniform(150, 400) * MB
    tau = rng.uniform(5, 20) / 60.0
    return (
        t,
        BASE + size * (1 - np.exp(-x / tau)) + leak * x + rng.normal(0, noise, t.size),
        (np.empty(0)),
    )


def step(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    """One step up of 30..200 MB somewhere between 20 % and 80 % of the run."""
    t = timeline(hours)
    x = (t - t[0]) / 3600.0
    at = rng.uniform(0.2, 0.8) * hours
    size = rng.uniform(30, 200) * MB
    return t, BASE + size * (x >= at) + leak * x + rng.normal(0, noise, t.size), np.empty(0)


def spikes(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    """Single-sample spikes of +100..500 MB at 1 % of the samples."""
    t, y, r = flat(rng, hours, leak, noise)
    hit = rng.random(t.size) < 0.01
    return t, y + hit * rng.uniform(100, 500, t.size) * MB, r


def restarts(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    """Restarts every 1.5..4 hours back to the base level, each followed by a short warm-up."""
    t = timeline(hours)
    every = rng.uniform(1.5, 4.0) * 3600
    since = (t - t[0]) % every
    x = since / 3600.0
    y = BASE + 80 * MB * (1 - np.exp(-x / 0.1)) + leak * x + rng.normal(0, noise, t.size)
    starts = t[1:][since[1:] < since[:-1]]
    return t, y, starts


def gaps(rng: np.random.Generator, hours: float, leak: float, noise: float) -> tuple:
    """Scrape failures: 10 % of samples lost, and one outage of 5 % of the run."""
    t, y, r = flat(rng, hours, leak, noise)
    keep = rng.random(t.size) > 0.1
    out_at = rng.uniform(0.1, 0.85) * (t[-1] - t[0]) + t[0]
    keep &= ~((t >= out_at) & (t < out_at + 0.05 * (t[-1] - t[0])))
    return t[keep], y[keep], r


FAMILIES = {
    "flat": flat,
    "sawtooth": sawtooth,
    "warmup": warmup,
    "step": step,
    "spikes": spikes,
    "restarts": restarts,
    "gaps": gaps,
}
