"""In-process resource sampling: a background thread that records this process's RSS, threads,
open file descriptors and garbage-collector counters at a fixed interval.

It serves the pytest plugin's ``soak_monitor`` fixture, for code under test that runs in the
test's own process. Memory is bounded: past ``max_samples`` every other sample is dropped (the
interval doubles), so a two-day test keeps a few thousand points, not a list that grows."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

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
]

log = logging.getLogger(__name__)
MB = 1e6  # the rule's unit is MB/h: decimal megabytes, as in rules/soak.yaml


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
        self._samples: list[ResourceSample] = []
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
            self._samples.append(sample)
            if len(self._samples) >= self._max_samples:
                # Thin to every other sample and keep half as many from now on.
                self._samples = self._samples[::2]
                self._keep_every *= 2

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
            return list(self._samples)

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


def memory_rule(warmup_seconds: float = 0.0) -> Rule:
    """The rule ``judge_memory`` applies: ``memory_growth`` of the shipped rules file with the
    test's own warm-up (a test lasts seconds to minutes, not the rule's hours)."""
    from soakwatch.rules.model import load_rules

    rule = load_rules().rules["memory_growth"]
    return dataclasses.replace(rule, warmup_seconds=warmup_seconds)


def judge_memory(
    samples: list[ResourceSample],
    *,
    threshold_mb_per_hour: float | None = None,
    warmup_seconds: float = 0.0,
    min_points: int = 8,
) -> MemoryVerdict:
    """Apply the memory-growth rule to sampled RSS with the analyzer's own estimate for that
    rule (:func:`soakwatch.analyzer.evaluate.estimate_rule_growth`: robust slope after warm-up,
    with its confidence interval), so soak-analyze judging the same samples finds the same
    slope. Pass when the upper bound is below the threshold, fail when the lower bound is above
    it, inconclusive otherwise or on too few points. The threshold defaults to the rule's in
    ``rules/soak.yaml``. Raises MissingExtraError without the analyzer extra."""
    require_extra("analyzer")
    import numpy as np

    from soakwatch.analyzer.evaluate import estimate_rule_growth

    duration = samples[-1].timestamp - samples[0].timestamp if samples else 0.0
    rule = memory_rule(warmup_seconds)
    if threshold_mb_per_hour is None:
        threshold_mb_per_hour = rule.threshold
    if len(samples) < min_points:
        return MemoryVerdict(
            "inconclusive",
            f"only {len(samples)} samples over {duration:.1f}s (at least {min_points} needed)",
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
        status, summary = "inconclusive", f"memory growth {figures}: interval spans the threshold"
    return MemoryVerdict(
        status, summary, slope, lower, upper, threshold_mb_per_hour, len(samples), duration
    )


class SoakMonitor:
    """The ``soak_monitor`` fixture's object: samples this process while a test runs, then
    gives the memory verdict. ``verdict()`` stops the sampling (later calls reuse it)."""

    def __init__(
        self,
        interval_seconds: float = 1.0,
        *,
        threshold_mb_per_hour: float | None = None,
        warmup_seconds: float = 0.0,
    ) -> None:
        self.sampler = ResourceSampler(interval_seconds)
        self.threshold_mb_per_hour = threshold_mb_per_hour
        self.warmup_seconds = warmup_seconds
        self.verdict_seen = False
        self._verdict: MemoryVerdict | None = None

    def start(self) -> SoakMonitor:
        """Start sampling. Raises MissingExtraError first when the verdict could not be judged
        (no analyzer extra): a test must not run its whole duration for nothing."""
        require_extra("analyzer")
        self.sampler.start()
        return self

    def sample_now(self) -> ResourceSample:
        """Take and keep one sample at once (between the thread's samples)."""
        sample = self.sampler.sample()
        self.sampler._record(sample)
        return sample

    @property
    def samples(self) -> list[ResourceSample]:
        return self.sampler.samples

    def verdict(self, *, threshold_mb_per_hour: float | None = None) -> MemoryVerdict:
        self.verdict_seen = True
        if self._verdict is None or threshold_mb_per_hour is not None:
            samples = self.sampler.stop()
            self._verdict = judge_memory(
                samples,
                threshold_mb_per_hour=threshold_mb_per_hour or self.threshold_mb_per_hour,
                warmup_seconds=self.warmup_seconds,
            )
        return self._verdict
