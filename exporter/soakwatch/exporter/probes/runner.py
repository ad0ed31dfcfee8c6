"""Run probes on their own interval in one background thread; publish the last results.

The runner, not the probe, owns the deadline and the shared series: each call is wrapped once in
``asyncio.wait_for(..., timeout)``, so a hung or refused target yields ``soak_probe_success 0``
and a duration of about the timeout, while a scrape only reads the last results."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from soakwatch.exporter.exposition import REGISTRY, GaugeMetricFamily, Metric
from soakwatch.exporter.exposition import Registry as CollectorRegistry
from soakwatch.exporter.probes.kinds import KINDS
from soakwatch.exporter.probes.spec import ProbeSpec

__all__ = ["ProbeResult", "ProbeRunner"]

logger = logging.getLogger("soakwatch.exporter.probes")

# LoggerAdapter is subscriptable at run time only from Python 3.11.
if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:
    _LoggerAdapter = logging.LoggerAdapter


@dataclass(frozen=True)
class ProbeResult:
    success: bool
    duration_seconds: float
    finished_at: float  # Unix time


class _ProbeLogAdapter(_LoggerAdapter):
    """Adds ``service``, ``probe`` and ``target`` to each record. While a probe keeps failing,
    its repeated causes go to DEBUG: a target down for a day must not log every interval."""

    def __init__(self, base: logging.Logger, extra: dict[str, str], *, quiet: bool) -> None:
        super().__init__(base, extra)
        self.quiet = quiet

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.quiet and level > logging.DEBUG:
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


class ProbeRunner:
    """A collector for the probes of one service. ``start()`` runs each probe every
    ``interval_seconds`` on an asyncio loop in one daemon thread; ``stop()`` ends it. Until a
    probe has finished once, its series are absent (no data is not a failure)."""

    def __init__(
        self,
        service: str,
        probes: Sequence[ProbeSpec],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        names = [spec.name for spec in probes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"probe names must be unique per service: {', '.join(duplicates)}")
        self.service = service
        self.probes = tuple(probes)
        self._results: dict[str, ProbeResult] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        if registry is not None:
            registry.register(self)

    # -- collector ---------------------------------------------------------------------------
    def describe(self) -> list[Metric]:
        return []  # the series depend on results; an empty describe skips the collision check

    def collect(self) -> Iterator[Metric]:
        labels = ["service", "probe"]
        success = GaugeMetricFamily(
            "soak_probe_success", "1 if the last run of the probe succeeded, else 0.", labels=labels
        )
        duration = GaugeMetricFamily(
            "soak_probe_duration_seconds",
            "How long the last run of the probe took (about the timeout when it timed out).",
            labels=labels,
        )
        last_run = GaugeMetricFamily(
            "soak_probe_last_run_timestamp_seconds",
            "Unix time when the last run of the probe finished.",
            labels=labels,
        )
        with self._lock:
            results = dict(self._results)
        for spec in self.probes:
            result = results.get(spec.name)
            if result is None:
                continue
            values = [self.service, spec.name]
            success.add_metric(values, 1.0 if result.success else 0.0)
            duration.add_metric(values, result.duration_seconds)
            last_run.add_metric(values, result.finished_at)
        yield success
        yield duration
        yield last_run

    def results(self) -> dict[str, ProbeResult]:
        """The last result of each probe that has run, by probe name."""
        with self._lock:
            return dict(self._results)

    # -- running -----------------------------------------------------------------------------
    async def run_once(self) -> dict[str, ProbeResult]:
        """Run every probe once, concurrently; record and return the results by name."""
        results = await asyncio.gather(*(self._run(spec) for spec in self.probes))
        return {spec.name: result for spec, result in zip(self.probes, results, strict=True)}

    async def _run(self, spec: ProbeSpec) -> ProbeResult:
        with self._lock:
            previous = self._results.get(spec.name)
        failing_already = previous is not None and not previous.success
        log = _ProbeLogAdapter(
            logger,
            {"service": self.service, "probe": spec.name, "target": spec.shown_target},
            quiet=failing_already,
        )
        probe = KINDS[spec.kind].probe
        started = time.perf_counter()
        try:
            success = await asyncio.wait_for(
                probe(spec.target, spec.settings, log), spec.timeout_seconds
            )
        except asyncio.TimeoutError:
            log.warning(
                "%s probe %r timed out after %gs", spec.kind, spec.name, spec.timeout_seconds
            )
            success = False
        except Exception as exc:  # a probe's bug must never stop the others or the scrape
            reason = str(exc).replace(spec.target, spec.shown_target)
            log.warning(
                "%s probe %r raised %s: %s", spec.kind, spec.name, type(exc).__name__, reason
            )
            success = False
        if success and failing_already:
            log.quiet = False
            log.info("%s probe %r succeeds again", spec.kind, spec.name)
        result = ProbeResult(
            success=bool(success),
            duration_seconds=time.perf_counter() - started,
            finished_at=time.time(),
        )
        with self._lock:
            self._results[spec.name] = result
        return result

    async def _repeat(self, spec: ProbeSpec) -> None:
        while True:
            started = time.monotonic()
            await self._run(spec)
            await asyncio.sleep(max(0.0, spec.interval_seconds - (time.monotonic() - started)))

    async def _main(self) -> None:
        await asyncio.gather(*(self._repeat(spec) for spec in self.probes))

    def start(self) -> None:
        """Start the background thread; each probe runs at once, then every interval."""
        if self._thread is not None and self._thread.is_alive():
            return
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            task = loop.create_task(self._main())
            self._task = task
            ready.set()
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            finally:
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(
            target=run, name=f"soakwatch-probes-{self.service}", daemon=True
        )
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the running probes and wait (at most ``timeout`` seconds) for the thread."""
        thread, loop, task = self._thread, self._loop, self._task
        if thread is None or loop is None or task is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout)
        self._thread = self._loop = self._task = None
