"""In-process resource sampling: a background thread that records this process's RSS, threads,
open file descriptors and garbage-collector counters at a fixed interval.

It serves the pytest plugin's ``soak_monitor`` fixture, for code under test that runs in the
test's own process. Memory is bounded: past ``max_samples`` every other sample is dropped (the
interval doubles), so a two-day test keeps a few thousand points, not a list that grows. The
samples are kept in arrays allocated (and written) before sampling starts: the monitor's own
bookkeeping does not grow the RSS it measures.

``SoakMonitor.iterations()`` runs a test's body until its duration is spent, saying how it goes
(elapsed/total, samples, RSS, the slope so far) every ``progress_every`` seconds.

``SoakMonitor(attribution=...)`` also samples allocation sites while the body runs, with the
exporter's tracemalloc sampler (:class:`soakwatch.exporter.attribution.AllocationSampler`, in
short windows: its defaults, 1 s a minute; see :func:`test_attribution_config` for tests
shorter than three intervals). A failing or inconclusive verdict then names its top site:
``...: fail (leak); mostly at test_leak.py:7 (test_leak, +11.8 MB/h)``."""

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from soakwatch.durations import format_duration
from soakwatch.extras import require_extra

if TYPE_CHECKING:
    from soakwatch.exporter.attribution import AllocationSampler, AttributionConfig
    from soakwatch.rules.model import Rule

__all__ = [
    "MemoryVerdict",
    "ResourceSample",
    "ResourceSampler",
    "SoakMonitor",
    "judge_memory",
    "memory_rule",
    "monitor_interval",
    "test_attribution_config",
]

log = logging.getLogger(__name__)
MB = 1e6  # the rule's unit is MB/h: decimal megabytes, as in rules/soak.yaml
# a test's duration is sampled this many times at least (down to MIN_INTERVAL seconds apart)
SAMPLES_PER_DURATION = 200
MIN_INTERVAL = 0.02
# a test shorter than this many sampling intervals has its attribution windows packed closer
ATTRIBUTION_MIN_WINDOWS = 3
ATTRIBUTION_MIN_INTERVAL = 0.4  # seconds: windows of a tenth of a second at the least


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

    ``process`` defaults to the current process; ``clock`` is injected for tests. While
    ``pause()`` says True the thread takes no sample (soak_monitor: while an allocation window
    traces, whose bookkeeping would show as a bump in RSS)."""

    def __init__(
        self,
        interval_seconds: float = 1.0,
        *,
        process: psutil.Process | None = None,
        clock: Callable[[], float] = time.time,
        max_samples: int = 4096,
        pause: Callable[[], bool] | None = None,
    ) -> None:
        if not interval_seconds > 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds!r}")
        self.interval_seconds = interval_seconds
        self._pause = pause
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
                if self._pause is None or not self._pause():
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
    #: with attribution: the sites that kept memory, largest growth first, as the analyzer's
    #: ``details.allocation_sites`` ({"site", "function", "growth_bytes_per_hour", "share"})
    allocation_sites: tuple[dict[str, Any], ...] = ()
    #: with attribution and no site to name: why (sampling unavailable, nothing kept)
    allocation_note: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def top_site(self) -> str | None:
        """``file:line`` of the site that kept the most, when it grew."""
        if self.allocation_sites and self.allocation_sites[0]["growth_bytes_per_hour"] > 0:
            return str(self.allocation_sites[0]["site"])
        return None


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


def test_attribution_config(
    duration_seconds: float | None, root: str | os.PathLike[str] | None = None
) -> AttributionConfig:
    """The allocation sampler's settings for a test of ``duration_seconds``: the exporter's
    defaults (a 1 s window a minute, 3 frames), unless the test is shorter than
    ATTRIBUTION_MIN_WINDOWS intervals; then the interval is a third of the test (at least
    ATTRIBUTION_MIN_INTERVAL) and the window at most a quarter of it, so that a 20 s test is
    sampled three times (and traced 15 % of its time instead of 1.7 %). ``root``: the test's
    own code, sites are relative to it (default: the working directory; not the exporter's
    folder of ``__main__``, which under pytest is pytest's own)."""
    from soakwatch.exporter.attribution import AttributionConfig

    base = AttributionConfig(root=Path.cwd() if root is None else root)
    if duration_seconds is None or duration_seconds >= (
        ATTRIBUTION_MIN_WINDOWS * base.interval_seconds
    ):
        return base
    interval = max(duration_seconds / ATTRIBUTION_MIN_WINDOWS, ATTRIBUTION_MIN_INTERVAL)
    window = min(base.window_seconds, interval / 4)
    return dataclasses.replace(base, interval_seconds=interval, window_seconds=window)


test_attribution_config.__test__ = False  # type: ignore[attr-defined]  # not a test to collect


def _sites_of(sampler: AllocationSampler, seconds: float) -> tuple[dict[str, Any], ...]:
    """The sampler's sites as the analyzer reports them: the bytes each kept since the start
    (its running estimate) over the sampled time, in bytes/h, and its share of the total."""
    sites = sampler.top_sites()
    hours = max(seconds, 1e-9) / 3600.0
    total = sum(kept for _site, _function, kept in sites if kept > 0)
    return tuple(
        {
            "site": site,
            "function": function,
            "growth_bytes_per_hour": round(kept / hours, 1),
            "share": round(kept / total, 4) if total > 0 and kept > 0 else 0.0,
        }
        for site, function, kept in sites
    )


def _with_sites(
    verdict: MemoryVerdict, sites: tuple[dict[str, Any], ...], note: str | None
) -> MemoryVerdict:
    """The verdict with its allocation sites; a fail or inconclusive summary names the top
    site (or says why there is none)."""
    summary = verdict.summary
    verdict = dataclasses.replace(verdict, allocation_sites=sites, allocation_note=note)
    if verdict.status in ("fail", "inconclusive"):
        top = verdict.top_site
        if top is not None:
            first = sites[0]
            summary += (
                f"; mostly at {top} ({first['function']}, "
                f"{first['growth_bytes_per_hour'] / MB:+.2f} MB/h)"
            )
        elif note is not None:
            summary += f"; {note}"
    return dataclasses.replace(verdict, summary=summary)


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
    status line every ``progress_every`` seconds of ``iterations()``. ``attribution``: True (the
    settings of :func:`test_attribution_config`) or an ``AttributionConfig`` samples allocation
    sites while the monitor runs, and the verdict names them."""

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
        attribution: bool | AttributionConfig = False,
    ) -> None:
        if duration_seconds is not None and not duration_seconds > 0:
            raise ValueError(f"duration_seconds must be > 0, got {duration_seconds!r}")
        self.allocations: AllocationSampler | None = None
        pause: Callable[[], bool] | None = None
        if attribution is not False:
            import tracemalloc

            from soakwatch.exporter.attribution import AllocationSampler

            config = (
                test_attribution_config(duration_seconds) if attribution is True else attribution
            )
            sampler = self.allocations = AllocationSampler("soak_monitor", config)

            def pause() -> bool:  # while a window of ours traces (not someone else's tracing)
                return sampler.available and tracemalloc.is_tracing()

        self.sampler = ResourceSampler(interval_seconds, pause=pause)
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
        self._allocation_seconds: float | None = None

    def start(self) -> SoakMonitor:
        """Start sampling. Raises MissingExtraError first when the verdict could not be judged
        (no analyzer extra): a test must not run its whole duration for nothing."""
        require_extra("analyzer")
        self._warm_up()
        self._started = time.monotonic()
        self.sampler.start()
        if self.allocations is not None:
            self.allocations.start()
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
        if self.allocations is not None and self.allocations.available:
            self._warm_up_allocations(self.allocations)
        gc.collect()

    @staticmethod
    def _warm_up_allocations(sampler: AllocationSampler) -> None:
        """One throwaway window of a sampler like ``sampler`` (whose site names it then shares):
        the memory tracemalloc and a snapshot take the first time (tables, arenas malloc keeps)
        is taken before the first sample, not as a step in the test's RSS."""
        from soakwatch.exporter.attribution import AllocationSampler

        config = dataclasses.replace(
            sampler.config, window_seconds=min(sampler.config.window_seconds, 0.2)
        )
        throwaway = AllocationSampler(sampler.service, config)
        throwaway.namer = sampler.namer
        throwaway.window()

    def stop(self) -> list[ResourceSample]:
        """Stop sampling (the verdict can still be asked for) and return the samples."""
        self._stop_allocations()
        return self.sampler.stop()

    def _stop_allocations(self) -> None:
        if self.allocations is not None and self._allocation_seconds is None:
            self.allocations.stop()
            self._allocation_seconds = self.elapsed_seconds

    def _allocation_verdict(self, verdict: MemoryVerdict) -> MemoryVerdict:
        sampler = self.allocations
        if sampler is None:
            return verdict
        self._stop_allocations()
        sites = _sites_of(sampler, self._allocation_seconds or self.elapsed_seconds)
        note = None
        if sampler.problem is not None:
            note = f"allocation sites unavailable: {sampler.problem}"
        elif not sampler.windows:
            note = (
                "no allocation site: no sampling window closed while the body ran "
                f"(one opens after {min(sampler.config.interval_seconds / 2, 5.0):g}s)"
            )
        elif not sites:
            note = "no allocation site of the test's own code kept memory"
        return _with_sites(verdict, sites, note)

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
            self._stop_allocations()
            samples = self.sampler.stop()
            self._verdict = self._allocation_verdict(
                judge_memory(
                    samples,
                    threshold_mb_per_hour=threshold_mb_per_hour or self.threshold_mb_per_hour,
                    warmup_seconds=self.warmup_seconds,
                    rule=self.rule,
                )
            )
        return self._verdict

    def judge(self) -> MemoryVerdict:
        """The verdict as the plugin takes it after the test body (does not count as the test
        having asked for it)."""
        seen = self.verdict_seen
        verdict = self.verdict()
        self.verdict_seen = seen
        return verdict
