"""Runs a load mix: paces each rate scenario by its schedule, holds the WebSocket connections,
serves /metrics, prints the live status and writes the summary (at the end, every
``summary_interval``, and on an early stop).

Python API (what ``soak run`` calls)::

    driver = Driver(load_config("load.yaml", profile="ci"))
    summary = await driver.run()      # driver.stop("SIGTERM") from a signal handler ends it early
    driver.summary_error              # None, or why the summary file could not be written
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from soakwatch.errors import SoakwatchError
from soakwatch.extras import require_extra
from soakwatch.load.config import (
    DatabaseScenario,
    HttpScenario,
    LoadConfig,
    PythonScenario,
    RateScenario,
    SessionScenario,
    WebSocketScenario,
)
from soakwatch.load.deadlines import within
from soakwatch.load.histogram import Timings
from soakwatch.load.metrics import LoadCollector, RunInfoCollector
from soakwatch.load.outcomes import AUTH_ERROR, CONNECT_ERROR, CUT_SHORT, DROPPED, ERROR
from soakwatch.load.schedule import Schedule
from soakwatch.load.stats import ScenarioStats
from soakwatch.load.summary import build_summary, probe_summary_path, try_write_summary

if TYPE_CHECKING:
    from soakwatch.load.fasthttp import FastHttpLoad
    from soakwatch.load.websocket import WebSocketLoad
    from soakwatch.load.workers import WorkerSet

__all__ = ["Driver", "preload", "require_extras", "run_load"]

log = logging.getLogger(__name__)

# Outcomes that never reached the service: no latency to record.
_NO_LATENCY = frozenset({DROPPED, CONNECT_ERROR, AUTH_ERROR})
_START_DELAY_SECONDS = 0.05
_OVERRUN_SECONDS = 1.0  # how far past its end a saturated schedule may still send
_LOGGED_ERRORS_PER_SCENARIO = 5
# The driver is the bottleneck when its own lag (due -> sent) has a p99 above this, or when
# it dropped operations: the latencies it reports then say more about it than the service.
LAG_WARN_SECONDS = 0.010
_BOTTLENECK_CHECK_SECONDS = 5.0
ABORT_CHECK_SECONDS = 0.5  # how often the abort_on_fail thresholds are judged during the run
now = time.monotonic  # every instant of the run (due, sent, done); loop.time() may be coarse


class Operation(Protocol):
    """What a rate scenario object offers the driver (http, sessions, databases)."""

    async def operate(self, n: int) -> str: ...
    def classify(self, exc: BaseException) -> str: ...
    async def close(self) -> None: ...


# scenario kind -> (extra, the module it brings); ClickHouse is driven over its HTTP interface
_EXTRA_OF_KIND: dict[str, tuple[str, str]] = {
    "http": ("http", "aiohttp"),
    "websocket": ("http", "aiohttp"),
    "sessions": ("http", "aiohttp"),
    "redis": ("redis", "redis"),
    "postgres": ("postgres", "psycopg"),
    "clickhouse": ("clickhouse", "aiohttp"),
    "python": ("http", "aiohttp"),  # a Python flow's client is aiohttp's
}


def require_extras(config: LoadConfig) -> None:
    """Raise MissingExtraError for the first extra the config's scenarios (or its /metrics
    server, on aiohttp) need that is not installed: a Redis-only run needs only ``[redis]``."""
    needed = [_EXTRA_OF_KIND[scenario.kind] for scenario in config.scenarios]
    if config.metrics_listen is not None:
        needed.append(("http", "aiohttp"))
    for extra, module in dict.fromkeys(needed):
        require_extra(extra, module)


# What the scenarios of each kind import when the run makes them (driver._make and below).
_MODULES_OF_KIND: dict[str, tuple[str, ...]] = {
    "http": ("soakwatch.load.fasthttp", "soakwatch.load.http"),
    "websocket": ("soakwatch.load.websocket",),
    "sessions": ("soakwatch.load.sessions",),
    "redis": ("soakwatch.load.database", "redis.asyncio", "redis.exceptions"),
    "postgres": ("soakwatch.load.database", "psycopg"),
    "clickhouse": ("soakwatch.load.database", "soakwatch.load.http"),
    "python": ("soakwatch.load.python", "aiohttp"),
}


def preload(config: LoadConfig) -> None:
    """Import now what the run of ``config`` will import (each client library, the /metrics
    server): a process that freezes its objects out of the garbage collector before the run
    (``soakwatch.load.workers.run_loop``) then freezes them too."""
    import importlib

    names = ["soakwatch.load.summary", "soakwatch.load.thresholds", "soakwatch.load.workers"]
    for scenario in config.scenarios:
        names += _MODULES_OF_KIND.get(scenario.kind, ())
    if config.metrics_listen is not None:
        names += ["aiohttp.web", "prometheus_client.exposition"]
    for name in dict.fromkeys(names):
        with contextlib.suppress(ImportError):  # an optional fast path (httptools) may be absent
            importlib.import_module(name)


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class Driver:
    """One load run of ``config``. Create, then ``await run()`` once."""

    def __init__(
        self,
        config: LoadConfig,
        *,
        registry: CollectorRegistry | None = None,
        status: Callable[[str], None] | None = None,
        warn: Callable[[str], None] | None = None,
        workers: int = 1,
    ) -> None:
        require_extras(config)  # before any work: one line naming the extra, exit 2
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.config = config
        self.workers = workers  # > 1: processes sharing the schedule (soakwatch.load.workers)
        shard_count = config.shard[1]
        self.stats: list[ScenarioStats] = []
        for scenario in config.scenarios:
            if isinstance(scenario, WebSocketScenario):
                rate = scenario.connections / shard_count / scenario.interval_seconds
            else:
                rate = scenario.rate_per_second / shard_count
            self.stats.append(ScenarioStats(scenario.name, scenario.kind, config.buckets, rate))
        self.timings = [Timings(config.buckets) for _ in config.scenarios]
        # Python scenarios: step name -> its counters, per scenario (merged from the workers'
        # the way self.stats is).
        self.steps: dict[str, dict[str, ScenarioStats]] = {
            s.name: {} for s in config.scenarios if isinstance(s, PythonScenario)
        }
        self.registry = registry if registry is not None else CollectorRegistry()
        self.collector = LoadCollector(
            lambda: self.stats, shard=config.shard, registry=None, timings=lambda: self.timings
        )
        self.registry.register(self.collector)
        if self.steps:
            from soakwatch.load.python import StepCollector

            self.registry.register(StepCollector(lambda: self.steps, shard=config.shard))
        self._running = False
        if config.run_id is not None:
            RunInfoCollector(
                config.run_id,
                config.profile,
                lambda: self._running,
                shard=config.shard,
                registry=self.registry,
            )
        self.metrics_address: tuple[str, int] | None = None
        self._status = status
        self._warn: Callable[[str], None] = warn if warn is not None else log.warning
        # None, or why the last write of the summary file failed (the run goes on without it)
        self.summary_error: str | None = None
        self.summary: dict[str, Any] | None = None  # the final summary, once run() has ended
        self._stop_event: asyncio.Event | None = None
        self._stop_reason: str | None = None
        self._errors_logged: dict[str, int] = {}
        self._started_wall = ""
        self._start_time = 0.0
        self._active_end: float | None = None
        self._bottleneck_warned = False
        self._worker_set: WorkerSet | None = None
        self._workers_active: float | None = None  # the longest active time of the workers

    # -- control -----------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """End the run early (a signal handler's job); the summary is still written."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stop_event is not None:
            self._stop_event.set()
        if self._worker_set is not None:
            self._worker_set.stop(reason)

    # -- the run -----------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Run the stages to the end (or until ``stop``); return the summary document."""
        self._stop_event = asyncio.Event()
        if self._stop_reason is not None:
            self._stop_event.set()
        self._started_wall = _utc_now()
        wall_start = time.monotonic()
        if self.config.summary_path:
            # Say now, not after hours of load, that the summary will have nowhere to go.
            sample = self._summary(0.0, None, status="running")
            self._note_summary_write(probe_summary_path(self.config.summary_path, sample))
        operations: list[tuple[RateScenario, ScenarioStats, Timings, Operation]] = []
        holders: list[WebSocketLoad] = []
        closers: list[Callable[[], Awaitable[None]]] = []
        error: str | None = None
        metrics_runner = None
        watch = None
        if any(t.abort_on_fail for t in self.config.thresholds):
            watch = asyncio.get_running_loop().create_task(self._watch_thresholds())
        self._running = True
        try:
            if self.workers > 1:
                if self.config.metrics_listen is not None:
                    metrics_runner = await self._serve_metrics(*self.config.metrics_listen)
                await self._drive_workers()
            for scenario, stats, timing in zip(
                self.config.scenarios if self.workers == 1 else (),
                self.stats,
                self.timings,
                strict=False,
            ):
                made = self._make(scenario, stats, timing)
                closers.append(made.close)
                if isinstance(scenario, WebSocketScenario):
                    holders.append(made)
                else:
                    operations.append((scenario, stats, timing, made))
            for holder in holders:
                await holder.preflight()
            if self.config.metrics_listen is not None and self.workers == 1:
                metrics_runner = await self._serve_metrics(*self.config.metrics_listen)
            if self.workers == 1:
                await self._drive(operations, holders)
        except SoakwatchError as exc:
            error = str(exc)
            raise
        finally:
            # The run is over for anyone reading the registry in-process; the /metrics server
            # closes below, so a Prometheus scraping it marks every series stale.
            self._running = False
            self._active_end = self._active_end or now()
            if watch is not None:
                watch.cancel()
                await asyncio.gather(watch, return_exceptions=True)
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            summary = self._summary(time.monotonic() - wall_start, error)
            self.summary = summary
            for warning in summary["bottleneck"]:
                self._warn(warning)
            if self.config.summary_path:
                # Reported, not raised: the caller has the summary and summary_error.
                problem = try_write_summary(self.config.summary_path, summary)
                self._note_summary_write(problem, warn=False)
        return summary

    def _note_summary_write(self, problem: str | None, *, warn: bool = True) -> None:
        """Keep why the summary could not be written; warn when writing starts to fail."""
        if problem is not None and self.summary_error is None and warn:
            self._warn(
                f"cannot write the summary to {self.config.summary_path}: {problem}; "
                "the run goes on, and the summary is kept for the end"
            )
        self.summary_error = problem

    def _make(self, scenario: Any, stats: ScenarioStats, timing: Timings) -> Any:
        # Each client library is imported only by the scenarios that use it (its own extra).
        if isinstance(scenario, HttpScenario):
            fast = _fast_load(scenario, stats, timing, self.config, self._log_error)
            if fast is not None:
                return fast
            from soakwatch.load.http import HttpLoad, new_session

            return HttpLoad(scenario, new_session(scenario.max_in_flight))
        if isinstance(scenario, SessionScenario):
            from soakwatch.load.http import new_session
            from soakwatch.load.sessions import SessionLoad

            return SessionLoad(scenario, new_session(scenario.max_in_flight), stats)
        if isinstance(scenario, WebSocketScenario):
            from soakwatch.load.http import new_session
            from soakwatch.load.websocket import WebSocketLoad

            return WebSocketLoad(scenario, new_session(0), stats, self.config.shard)
        if isinstance(scenario, DatabaseScenario):
            from soakwatch.load.database import DATABASES

            return DATABASES[scenario.kind](scenario, stats)
        if isinstance(scenario, PythonScenario):
            from soakwatch.load.python import PythonLoad

            return PythonLoad(scenario, stats, self.config.buckets, self.steps[scenario.name])
        raise TypeError(f"unknown scenario {scenario!r}")  # pragma: no cover

    async def _drive(
        self,
        operations: list[tuple[RateScenario, ScenarioStats, Timings, Operation]],
        holders: list[WebSocketLoad],
    ) -> None:
        from soakwatch.load.fasthttp import FastHttpLoad

        loop = asyncio.get_running_loop()
        assert self._stop_event is not None
        self._start_time = start = now() + _START_DELAY_SECONDS
        stages = self.config.stages
        in_flight: set[asyncio.Task[None]] = set()
        fast = [op for _, _, _, op in operations if isinstance(op, FastHttpLoad)]
        pacers = [
            asyncio.create_task(
                op.run(start)
                if isinstance(op, FastHttpLoad)
                else self._pace(scenario, stats, timing, op, start, in_flight)
            )
            for scenario, stats, timing, op in operations
        ]
        # WebSocket holders keep to the loop's clock: the same instant on that clock.
        loop_start = loop.time() + (start - now())
        pacers += [asyncio.create_task(h.hold(loop_start, stages)) for h in holders]
        background = [
            asyncio.create_task(self._report_status(start)),
            asyncio.create_task(self._watch_bottleneck()),
        ]
        if self.config.summary_path and self.config.summary_interval_seconds > 0:
            background.append(asyncio.create_task(self._write_summary_periodically(start)))
        stopper = asyncio.create_task(_wait(self._stop_event))
        try:
            everything = asyncio.ensure_future(_all(pacers))
            done, _ = await asyncio.wait([stopper, everything], return_when=asyncio.FIRST_COMPLETED)
            if everything.done() and everything.exception() is not None:
                raise everything.exception()  # type: ignore[misc]  # a bug: show it
            self._active_end = max(now(), start + stages.total_seconds)
            if stopper in done:
                self._active_end = now()
                grace = self.config.stop_grace_seconds
            else:
                # Let the last operations finish: each has its own deadline.
                grace = max((_timeout(s) for s, _, _, _ in operations), default=0.0) + 1.0
            for task in pacers:
                task.cancel()
            await asyncio.gather(*pacers, return_exceptions=True)
            waits: list[Awaitable[Any]] = [op.wait_idle(grace) for op in fast]
            if in_flight:
                waits.append(asyncio.wait(set(in_flight), timeout=grace))
            if waits:
                await asyncio.gather(*waits)
        finally:
            for op in fast:
                op.cut_short()
            for task in (*in_flight, *background, *pacers, stopper):
                task.cancel()
            await asyncio.gather(*in_flight, *background, *pacers, stopper, return_exceptions=True)

    async def _drive_workers(self) -> None:
        """The run in ``self.workers`` processes; this one adds up their counters."""
        from soakwatch.load.workers import WorkerSet, merge_snapshots

        workers = WorkerSet(self.config, self.workers)
        self._worker_set = workers
        self._start_time = start = now() + _START_DELAY_SECONDS
        background = [
            asyncio.create_task(self._report_status(start)),
            asyncio.create_task(self._watch_bottleneck()),
        ]
        if self.config.summary_path and self.config.summary_interval_seconds > 0:
            background.append(asyncio.create_task(self._write_summary_periodically(start)))

        def update() -> None:
            latest = [s for s in workers.latest if s is not None]
            if latest:
                merge_snapshots(latest, self.stats, self.timings, self.steps)
                # Rates over the time the schedules ran, not the workers' start and end too.
                self._workers_active = max(float(s.get("active_seconds", 0.0)) for s in latest)

        try:
            await workers.start()
            if self._stop_reason is not None:
                workers.stop(self._stop_reason)
            await workers.follow(update)
        finally:
            workers.kill()  # only those still running: a bug, or this task was cancelled
            self._active_end = now()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        if workers.errors:
            raise SoakwatchError(workers.errors[0])

    async def _pace(
        self,
        scenario: RateScenario,
        stats: ScenarioStats,
        timing: Timings,
        operation: Operation,
        start: float,
        in_flight: set[asyncio.Task[None]],
    ) -> None:
        """Start each operation when due; never wait for earlier ones (open model)."""
        loop = asyncio.get_running_loop()
        schedule = Schedule(scenario.rate_per_second, self.config.stages, self.config.shard)
        limit = scenario.max_in_flight
        timeout = scenario.timeout_seconds
        n = self.config.shard[0]
        step = self.config.shard[1]
        deadline = start + self.config.stages.total_seconds + _OVERRUN_SECONDS
        for offset in schedule.due_times():
            due = start + offset
            t = now()
            delay = due - t
            if delay > 0.0005:
                await asyncio.sleep(delay)
            elif t > deadline:
                # Saturated so far that the run is over: the rest came due unsent.
                remaining = schedule.expected_events() - stats.scheduled
                stats.scheduled += remaining
                stats.outcomes[DROPPED] += remaining
                return
            else:
                # Behind schedule (saturated): still let the operations in flight run.
                await asyncio.sleep(0)
            stats.scheduled += 1
            if stats.in_flight >= limit:
                stats.record(DROPPED, None)
            else:
                stats.started += 1
                stats.in_flight += 1
                task = loop.create_task(self._operate(operation, stats, timing, n, due, timeout))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            n += step

    async def _operate(
        self,
        operation: Operation,
        stats: ScenarioStats,
        timing: Timings,
        n: int,
        due: float,
        timeout: float,
    ) -> None:
        sent = now()
        timing.lag.record(sent - due)
        try:
            outcome = await within(timeout, operation.operate(n))
        except asyncio.CancelledError:
            # The run ended it (stop_grace ran out): sent and never finished, so it counts, as
            # an error. No latency: its time is the grace's, not the service's.
            stats.record(CUT_SHORT, None)
            raise
        except Exception as exc:
            outcome = operation.classify(exc)
            if outcome == ERROR:
                self._log_error(stats.name, exc)
        finally:
            stats.in_flight -= 1
        if outcome in _NO_LATENCY:
            stats.record(outcome, None)
        else:
            done = now()
            stats.record(outcome, done - due)
            timing.service.record(done - sent)

    def _log_error(self, name: str, exc: BaseException) -> None:
        count = self._errors_logged.get(name, 0) + 1
        self._errors_logged[name] = count
        if count <= _LOGGED_ERRORS_PER_SCENARIO or count % 10_000 == 0:
            log.warning("scenario %r: unexpected error #%d: %r", name, count, exc)

    # -- reporting ---------------------------------------------------------------------------
    def status_line(self, elapsed: float, rate: float) -> str:
        from soakwatch.durations import format_duration

        completed = sum(s.completed for s in self.stats)
        errors = sum(s.errors for s in self.stats)
        p95 = max((s.histogram.value_at_quantile(0.95) or 0.0 for s in self.stats), default=0.0)
        ws = sum(s.open_connections for s in self.stats if s.kind == "websocket")
        total = self.config.stages.total_seconds
        parts = [
            f"load {format_duration(max(elapsed, 0.0))}/{format_duration(total)}",
            f"{rate:.1f} ops/s",
            f"p95 {p95 * 1000:.1f}ms",
            f"errors {errors} ({errors / completed:.1%})" if completed else "errors 0",
        ]
        if any(s.kind == "websocket" for s in self.stats):
            parts.append(f"ws open {ws}")
        return " | ".join(parts)

    async def _report_status(self, start: float) -> None:
        if self._status is None:
            return
        interval = self.config.status_interval_seconds
        last_time, last_started = now(), 0
        while True:
            await asyncio.sleep(interval)
            t = now()
            started = sum(s.started for s in self.stats)
            rate = (started - last_started) / (t - last_time) if t > last_time else 0.0
            last_time, last_started = t, started
            self._status(self.status_line(t - start, rate))

    async def _watch_bottleneck(self) -> None:
        """Say on stderr, once and as soon as it shows, that the driver is the bottleneck."""
        from soakwatch.load.summary import bottleneck_warnings

        while not self._bottleneck_warned:
            await asyncio.sleep(_BOTTLENECK_CHECK_SECONDS)
            warnings = bottleneck_warnings(self.stats, self.timings, LAG_WARN_SECONDS)
            if warnings:
                self._bottleneck_warned = True
                for warning in warnings:
                    self._warn(f"{warning} (so far)")

    async def _watch_thresholds(self) -> None:
        """Judge the abort_on_fail thresholds every ABORT_CHECK_SECONDS, each once its grace is
        over, on this process's figures (with workers: the merged ones); the first breach stops
        the run (summary written, exit 99)."""
        from soakwatch.load.thresholds import breached, describe, evaluate

        loop = asyncio.get_running_loop()
        started = loop.time()
        watched = [t for t in self.config.thresholds if t.abort_on_fail]
        while True:
            await asyncio.sleep(ABORT_CHECK_SECONDS)
            elapsed = loop.time() - started
            due = [t for t in watched if elapsed >= t.abort_grace_seconds]
            if not due:
                continue
            live = self._summary(elapsed, None, status="running", judge=False)
            broken = breached(evaluate(due, live, implicit=False))
            if broken:
                self.stop(f"threshold {describe(broken[0])}")
                return

    async def _write_summary_periodically(self, start: float) -> None:
        assert self.config.summary_path
        while True:
            # First write at once: the file exists from the start, and the writer thread is
            # created during warm-up rather than as a step in the middle of the run.
            summary = self._summary(max(now() - start, 0.0), None, status="running")
            path = self.config.summary_path
            self._note_summary_write(await asyncio.to_thread(try_write_summary, path, summary))
            await asyncio.sleep(self.config.summary_interval_seconds)

    def active_seconds(self) -> float:
        """How long the schedule has run (so far, or from its start to its end); with workers,
        the longest of theirs."""
        if self._workers_active is not None:
            return self._workers_active
        end = self._active_end if self._active_end is not None else now()
        return max(end - self._start_time, 0.0) if self._start_time else 0.0

    def _summary(
        self, elapsed: float, error: str | None, status: str | None = None, *, judge: bool = True
    ) -> dict[str, Any]:
        """The summary document; ``judge``: with the thresholds' results (``thresholds``)."""
        active = self.active_seconds()
        if status is None:
            status = "error" if error else ("stopped" if self._stop_reason else "completed")
        stages = self.config.stages
        summary = build_summary(
            self.stats,
            timings=self.timings,
            lag_warn_seconds=LAG_WARN_SECONDS,
            status=status,
            stop_reason=self._stop_reason,
            error=error,
            shard=self.config.shard,
            profile=self.config.profile,
            started_at=self._started_wall,
            ended_at=_utc_now(),
            planned_seconds=stages.total_seconds,
            elapsed_seconds=elapsed,
            active_seconds=active,
            stages={
                "ramp_up_seconds": stages.ramp_up_seconds,
                "steady_seconds": stages.steady_seconds,
                "ramp_down_seconds": stages.ramp_down_seconds,
            },
        )
        if self.steps:
            from soakwatch.load.python import step_summaries

            for name, steps in self.steps.items():
                summary["scenarios"][name]["steps"] = step_summaries(steps)
        if judge:
            from soakwatch.load.thresholds import evaluate

            summary["thresholds"] = evaluate(self.config.thresholds, summary)
        return summary

    async def _serve_metrics(self, host: str, port: int) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def metrics(_: web.Request) -> web.Response:
            body = generate_latest(self.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SoakwatchError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None
        address = runner.addresses[0]
        self.metrics_address = (str(address[0]), int(address[1]))
        return runner


def _fast_load(
    scenario: HttpScenario,
    stats: ScenarioStats,
    timing: Timings,
    config: LoadConfig,
    log_error: Callable[[str, BaseException], None],
) -> FastHttpLoad | None:
    """The fast path of a plain-HTTP scenario (None: it needs aiohttp, or httptools is not
    installed)."""
    try:
        from soakwatch.load.fasthttp import FastHttpLoad, fast_path_supported
    except ImportError:  # httptools missing: aiohttp does it all
        return None
    if not fast_path_supported(scenario):
        return None
    record_stats = stats.record
    record_service = timing.service.record

    def record(outcome: str, due: float, sent: float, done: float) -> None:
        if sent:
            record_stats(outcome, done - due)
            record_service(done - sent)
        else:
            record_stats(outcome, None)

    return FastHttpLoad(
        scenario,
        stats,
        Schedule(scenario.rate_per_second, config.stages, config.shard),
        record=record,
        record_lag=timing.lag.record,
        on_error=lambda exc: log_error(scenario.name, exc),
    )


async def _all(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks)


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def _timeout(scenario: RateScenario) -> float:
    return scenario.timeout_seconds


async def run_load(config: LoadConfig) -> dict[str, Any]:
    """Run ``config`` to the end and return the summary (no signals, no status output)."""
    return await Driver(config).run()
