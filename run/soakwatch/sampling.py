"""In-process resource sampling: a background thread that records this process's RSS, threads,
open file descriptors and garbage-collector counters at a fixed interval.

It serves the pytest plugin's ``soak_monitor`` fixture, for code under test that runs in the
test's own process. Memory is bounded: past ``max_samples`` every other sample is dropped (the
interval doubles), so a two-day test keeps a few thousand points, not a list that grows. The
samples are kept in arrays allocated (and written) before sampling starts: the monitor's own
bookkeeping does not grow the RSS it measures.

``SoakMonitor.iterations()`` runs a test's body until its duration is spent, saying how it goes
(elapsed/total, samples, RSS, the slope so far) every ``progress_every`` seconds."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from soakwatch.durations import format_duration
from soakwatch.extras import require_extra

if TYPE_CHECKING:
    from soakwatch.rules.model import Rule

__all__ = [
    "MemoryVerdict",
    "ResourceSample",
    "ResourceSampler",
    "SoakMonitor",
    "judge_memory",
    "memory_rule",
    "monitor_interval",
]

log = logging.getLogger(__name__)
MB = 1e6  # the rule's unit is MB/h: decimal megabytes, as in rules/soak.yaml
# a test's duration is sampled this many times at least (down to MIN_INTERVAL seconds apart)
SAMPLES_PER_DURATION = 200
MIN_INTERVAL = 0.02


@dataclass(frozen=True)
class ResourceSample:
    """One look at the process. ``open_fds`` is None where the OS has no such count (Windows)."""

    timestamp: float
    rss_bytes: int
    threads: int
    open_fds: int | None
    gc_collections: tuple[int, ...]
    gc_collected: tuple[int, ...]
    gc_uncollectable: tuple[int, ...]


class ResourceSampler:
    """Samples a process every ``interval_seconds`` in a daemon thread between start() and stop().

    ``process`` defaults to the current process; ``clock`` is injected for tests."""

    def __init__(
        self,
        interval_seconds: float = 1.0,
        *,
        process: psutil.Process | None = None,
        clock: Callable[[], float] = time.time,
        max_samples: int = 4096,
    ) -> None:
        if not interval_seconds > 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds!r}")
        self.interval_seconds = interval_seconds
        self._process = process or psutil.Process()
        self._clock = clock
        self._max_samples = max(2, max_samples)
        self._has_fds = hasattr(self._process, "num_fds")
        # preallocated columns (fds -1: none); written in place, so sampling allocates nothing
        # that it keeps. GC counters: one column per generation, row-major.
        self._generations = len(gc.get_stats())
        self._ts = array("d", [0.0]) * self._max_samples
        self._rss = array("q", [0]) * self._max_samples
        self._threads = array("q", [0]) * self._max_samples
        self._fds = array("q", [0]) * self._max_samples
        self._gc = [array("q", [0]) * (self._max_samples * self._generations) for _ in range(3)]
        self._count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keep_every = 1
        self._seen = 0

    # -- sampling --------------------------------------------------------------------------
    def sample(self) -> ResourceSample:
        """Take one sample now (also usable without the thread)."""
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            threads = self._process.num_threads()
            fds = self._process.num_fds() if self._has_fds else None
        stats = gc.get_stats()
        return ResourceSample(
            timestamp=self._clock(),
            rss_bytes=int(rss),
            threads=int(threads),
            open_fds=None if fds is None else int(fds),
            gc_collections=tuple(int(s.get("collections", 0)) for s in stats),
            gc_collected=tuple(int(s.get("collected", 0)) for s in stats),
            gc_uncollectable=tuple(int(s.get("uncollectable", 0)) for s in stats),
        )

    def _record(self, sample: ResourceSample) -> None:
        with self._lock:
            self._seen += 1
            if (self._seen - 1) % self._keep_every:
                return
            self._store(self._count, sample)
            self._count += 1
            if self._count >= self._max_samples:
                # Thin to every other sample and keep half as many from now on.
                for row in range(0, self._count, 2):
                    self._move(row, row // 2)
                self._count = (self._count + 1) // 2
                self._keep_every *= 2

    def _store(self, row: int, sample: ResourceSample) -> None:
        self._ts[row] = sample.timestamp
        self._rss[row] = sample.rss_bytes
        self._threads[row] = sample.threads
        self._fds[row] = -1 if sample.open_fds is None else sample.open_fds
        base = row * self._generations
        for column, values in zip(
            self._gc,
            (sample.gc_collections, sample.gc_collected, sample.gc_uncollectable),
            strict=True,
        ):
            for generation in range(self._generations):
                column[base + generation] = values[generation] if generation < len(values) else 0

    def _move(self, source: int, target: int) -> None:
        self._ts[target] = self._ts[source]
        for column in (self._rss, self._threads, self._fds):
            column[target] = column[source]
        for gc_column in self._gc:
            for generation in range(self._generations):
                gc_column[target * self._generations + generation] = gc_column[
                    source * self._generations + generation
                ]

    def _row(self, row: int) -> ResourceSample:
        base, end = row * self._generations, (row + 1) * self._generations
        fds = self._fds[row]
        return ResourceSample(
            timestamp=self._ts[row],
            rss_bytes=self._rss[row],
            threads=self._threads[row],
            open_fds=None if fds < 0 else fds,
            gc_collections=tuple(self._gc[0][base:end]),
            gc_collected=tuple(self._gc[1][base:end]),
            gc_uncollectable=tuple(self._gc[2][base:end]),
        )

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self._record(self.sample())
            except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
                log.warning("resource sampling failed: %s", exc)
            next_at += self.interval_seconds
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> ResourceSampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[ResourceSample]:
        """Stop the thread (after one last sample) and return every kept sample."""
        if self._thread is not None and not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                self._record(self.sample())
        return self.samples

    @property
    def samples(self) -> list[ResourceSample]:
        with self._lock:
            return [self._row(row) for row in range(self._count)]

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()


@dataclass(frozen=True)
class MemoryVerdict:
    """The memory-growth judgement of an in-process sampling (figures in MB/h)."""

    status: str  # "pass" | "fail" | "inconclusive"
    summary: str
    slope_mb_per_hour: float | None = None
    lower_mb_per_hour: float | None = None
    upper_mb_per_hour: float | None = None
    threshold_mb_per_hour: float | None = None
    points: int = 0
    duration_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def memory_rule(warmup_seconds: float = 0.0, rules: str | os.PathLike[str] | None = None) -> Rule:
    """The rule ``judge_memory`` applies: ``memory_growth`` of the rules file ``rules`` (default:
    the shipped one) with the test's own warm-up (a test lasts seconds to minutes, not the rule's
    hours). Raises ConfigError when the file cannot be read or has no ``memory_growth`` slope
    rule."""
    from soakwatch.errors import ConfigError
    from soakwatch.rules.model import load_rules

    ruleset = load_rules(rules)
    rule = ruleset.rules.get("memory_growth")
    if rule is None or rule.kind != "slope":
        raise ConfigError(
            "no memory_growth rule of kind slope (the one soak_monitor judges)",
            source=ruleset.source,
            key="rules.memory_growth",
        )
    return dataclasses.replace(rule, warmup_seconds=warmup_seconds)


def monitor_interval(sampling_interval_seconds: float, duration_seconds: float | None) -> float:
    """The monitor's sampling interval: the profile's, at most 1 s, and short enough that the
    test's duration holds SAMPLES_PER_DURATION samples (not under MIN_INTERVAL): a 5 s test is
    sampled 200 times, not 5."""
    interval = min(sampling_interval_seconds, 1.0)
    if duration_seconds is not None:
        interval = min(interval, max(duration_seconds / SAMPLES_PER_DURATION, MIN_INTERVAL))
    return interval


def judge_memory(
    samples: list[ResourceSample],
    *,
    threshold_mb_per_hour: float | None = None,
    warmup_seconds: float = 0.0,
    min_points: int = 8,
    rule: Rule | None = None,
) -> MemoryVerdict:
    """Apply the memory-growth rule to sampled RSS with the analyzer's own estimate for that
    rule (:func:`soakwatch.analyzer.evaluate.estimate_rule_growth`: robust slope after warm-up,
    with its confidence interval), so soak-analyze judging the same samples finds the same
    slope. Pass when the upper bound is below the threshold, fail when the lower bound is above
    it, inconclusive otherwise or on too few points. ``rule`` defaults to ``memory_rule`` of the
    shipped rules with ``warmup_seconds``; the threshold to the rule's. Raises MissingExtraError
    without the analyzer extra."""
    require_extra("analyzer")
    import numpy as np

    from soakwatch.analyzer.evaluate import estimate_rule_growth

    duration = samples[-1].timestamp - samples[0].timestamp if samples else 0.0
    if rule is None:
        rule = memory_rule(warmup_seconds)
    if threshold_mb_per_hour is None:
        threshold_mb_per_hour = rule.threshold
    if len(samples) < min_points:
        return MemoryVerdict(
            "inconclusive",
            f"only {len(samples)} samples over {duration:.1f}s (at least {min_points} needed: "
            "run the body longer, e.g. for _ in soak_monitor.iterations())",
            threshold_mb_per_hour=threshold_mb_per_hour,
            points=len(samples),
            duration_seconds=duration,
        )
    t = np.array([s.timestamp for s in samples], dtype=np.float64)
    y = np.array([s.rss_bytes for s in samples], dtype=np.float64)
    estimate = estimate_rule_growth(rule, t, y)
    if estimate.fit is None or estimate.points < 3:
        return MemoryVerdict(
            "inconclusive",
            f"too few points after warm-up ({estimate.points}) to fit a slope",
            threshold_mb_per_hour=threshold_mb_per_hour,
            points=len(samples),
            duration_seconds=duration,
        )
    slope, lower, upper = (
        estimate.slope_per_hour / MB,
        estimate.lower_per_hour / MB,
        estimate.upper_per_hour / MB,
    )
    figures = f"{slope:+.2f} MB/h [{lower:+.2f}, {upper:+.2f}], threshold {threshold_mb_per_hour:g}"
    if upper < threshold_mb_per_hour:
        status, summary = "pass", f"memory growth {figures}: pass"
    elif lower > threshold_mb_per_hour:
        status, summary = "fail", f"memory growth {figures}: fail (leak)"
    else:
        status, summary = (
            "inconclusive",
            f"memory growth {figures}: the interval spans the threshold "
            f"({len(samples)} samples over {format_duration(duration)}: a longer run narrows it)",
        )
    return MemoryVerdict(
        status, summary, slope, lower, upper, threshold_mb_per_hour, len(samples), duration
    )


class SoakMonitor:
    """The ``soak_monitor`` fixture's object: samples this process while a test runs, then
    gives the memory verdict. ``verdict()`` stops the sampling (later calls reuse it).

    ``duration_seconds`` is how long ``iterations()`` runs the body; ``rule`` the memory rule
    judged (default: the shipped ``memory_growth`` with ``warmup_seconds``); ``progress`` gets a
    status line every ``progress_every`` seconds of ``iterations()``."""

    def __init__(
        self,
        interval_seconds: float = 1.0,
        *,
        threshold_mb_per_hour: float | None = None,
        warmup_seconds: float = 0.0,
        duration_seconds: float | None = None,
        rule: Rule | None = None,
        progress: Callable[[str], None] | None = None,
        progress_every: float = 10.0,
    ) -> None:
        if duration_seconds is not None and not duration_seconds > 0:
            raise ValueError(f"duration_seconds must be > 0, got {duration_seconds!r}")
        self.sampler = ResourceSampler(interval_seconds)
        self.threshold_mb_per_hour = threshold_mb_per_hour
        self.warmup_seconds = warmup_seconds
        self.duration_seconds = duration_seconds
        self.rule = rule
        self.progress = progress
        self.progress_every = progress_every
        self.verdict_seen = False
        self.iterations_done = 0
        self._verdict: MemoryVerdict | None = None
        self._started: float | None = None

    def start(self) -> SoakMonitor:
        """Start sampling. Raises MissingExtraError first when the verdict could not be judged
        (no analyzer extra): a test must not run its whole duration for nothing."""
        require_extra("analyzer")
        self._warm_up()
        self._started = time.monotonic()
        self.sampler.start()
        return self

    def _warm_up(self) -> None:
        """Judge made-up samples once before sampling: the analyzer's imports and first-call
        allocations land before the test's first sample, not as a step in its RSS."""
        first = self.sampler.sample()
        made_up = [
            dataclasses.replace(first, timestamp=first.timestamp + i, rss_bytes=first.rss_bytes)
            for i in range(64)
        ]
        judge_memory(
            made_up,
            threshold_mb_per_hour=self.threshold_mb_per_hour,
            warmup_seconds=self.warmup_seconds,
            rule=self.rule,
        )
        gc.collect()

    def stop(self) -> list[ResourceSample]:
        """Stop sampling (the verdict can still be asked for) and return the samples."""
        return self.sampler.stop()

    def sample_now(self) -> ResourceSample:
        """Take and keep one sample at once (between the thread's samples)."""
        sample = self.sampler.sample()
        self.sampler._record(sample)
        return sample

    @property
    def samples(self) -> list[ResourceSample]:
        return self.sampler.samples

    @property
    def elapsed_seconds(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    def iterations(
        self, duration: float | None = None, *, max_iterations: int | None = None
    ) -> Iterator[int]:
        """Yield 0, 1, 2, ... until ``duration`` seconds (default: the monitor's, i.e. the
        marker's ``duration=`` or ``--soak-duration``) have passed since the monitor started, or
        ``max_iterations`` were run. The body runs at least once. Progress lines go to
        ``progress`` every ``progress_every`` seconds, and a last one at the end."""
        seconds = self.duration_seconds if duration is None else duration
        if seconds is None or not seconds > 0:
            raise ValueError(f"iterations() needs a duration > 0 seconds, got {seconds!r}")
        if max_iterations is not None and max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {max_iterations!r}")
        if self._started is None:
            self.start()
        end_at = (self._started or time.monotonic()) + seconds
        next_progress = time.monotonic() + self.progress_every
        index = 0
        while True:
            yield index
            index += 1
            self.iterations_done = index
            now = time.monotonic()
            if now >= end_at or (max_iterations is not None and index >= max_iterations):
                break
            if self.progress is not None and now >= next_progress:
                self.progress(self.progress_line(seconds))
                next_progress = now + self.progress_every
        self.sample_now()
        if self.progress is not None:
            self.progress(self.progress_line(seconds))

    def progress_line(self, total_seconds: float | None = None) -> str:
        """``30s/10m | 5,012 iterations | 61 samples | RSS 41.2 MB | memory +0.31 MB/h
        [-0.20, +0.90]`` (the slope once there are enough samples to fit one)."""
        total = self.duration_seconds if total_seconds is None else total_seconds
        elapsed = self.elapsed_seconds
        parts = [format_duration(elapsed) + ("" if total is None else f"/{format_duration(total)}")]
        if self.iterations_done:
            parts.append(f"{self.iterations_done:,} iterations")
        samples = self.samples
        parts.append(f"{len(samples)} samples")
        if samples:
            parts.append(f"RSS {samples[-1].rss_bytes / MB:.1f} MB")
            current = judge_memory(
                samples,
                threshold_mb_per_hour=self.threshold_mb_per_hour,
                warmup_seconds=self.warmup_seconds,
                rule=self.rule,
            )
            if current.slope_mb_per_hour is not None:
                parts.append(
                    f"memory {current.slope_mb_per_hour:+.2f} MB/h "
                    f"[{current.lower_mb_per_hour:+.2f}, {current.upper_mb_per_hour:+.2f}]"
                )
        return " | ".join(parts)

    def verdict(self, *, threshold_mb_per_hour: float | None = None) -> MemoryVerdict:
        """Stop sampling and judge the memory growth (``threshold_mb_per_hour`` overrides the
        monitor's threshold, i.e. the marker's ``max_growth=`` or the rule's)."""
        self.verdict_seen = True
        if self._verdict is None or threshold_mb_per_hour is not None:
            samples = self.sampler.stop()
            self._verdict = judge_memory(
                samples,
                threshold_mb_per_hour=threshold_mb_per_hour or self.threshold_mb_per_hour,
                warmup_seconds=self.warmup_seconds,
                rule=self.rule,
            )
        return self._verdict

    def judge(self) -> MemoryVerdict:
        """The verdict as the plugin takes it after the test body (does not count as the test
        having asked for it)."""
        seen = self.verdict_seen
        verdict = self.verdict()
        self.verdict_seen = seen
        return verdict
