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
    RateScenario,
    SessionScenario,
    WebSocketScenario,
)
from soakwatch.load.deadlines import within
from soakwatch.load.metrics import LoadCollector, RunInfoCollector
from soakwatch.load.outcomes import AUTH_ERROR, CONNECT_ERROR, CUT_SHORT, DROPPED, ERROR
from soakwatch.load.schedule import Schedule
from soakwatch.load.stats import ScenarioStats
from soakwatch.load.summary import build_summary, probe_summary_path, try_write_summary

if TYPE_CHECKING:
    from soakwatch.load.websocket import WebSocketLoad

__all__ = ["Driver", "require_extras", "run_load"]

log = logging.getLogger(__name__)

# Outcomes that never reached the service: no latency to record.
_NO_LATENCY = frozenset({DROPPED, CONNECT_ERROR, AUTH_ERROR})
_START_DELAY_SECONDS = 0.05
_OVERRUN_SECONDS = 1.0  # how far past its end a saturated schedule may still send
_LOGGED_ERRORS_PER_SCENARIO = 5


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
}


def require_extras(config: LoadConfig) -> None:
    """Raise MissingExtraError for the first extra the config's scenarios (or its /metrics
    server, on aiohttp) need that is not installed: a Redis-only run needs only ``[redis]``."""
    needed = [_EXTRA_OF_KIND[scenario.kind] for scenario in config.scenarios]
    if config.metrics_listen is not None:
        needed.append(("http", "aiohttp"))
    for extra, module in dict.fromkeys(needed):
        require_extra(extra, module)


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
    ) -> None:
        require_extras(config)  # before any work: one line naming the extra, exit 2
        self.config = config
        shard_count = config.shard[1]
        self.stats: list[ScenarioStats] = []
        for scenario in config.scenarios:
            if isinstance(scenario, WebSocketScenario):
                rate = scenario.connections / shard_count / scenario.interval_seconds
            else:
                rate = scenario.rate_per_second / shard_count
            self.stats.append(ScenarioStats(scenario.name, scenario.kind, config.buckets, rate))
        self.registry = registry if registry is not None else CollectorRegistry()
        self.collector = LoadCollector(lambda: self.stats, shard=config.shard, registry=None)
        self.registry.register(self.collector)
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

    # -- control -----------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """End the run early (a signal handler's job); the summary is still written."""
        if self._stop_reason is None:
            self._stop_reason = reason
        if self._stop_event is not None:
            self._stop_event.set()

    # -- the run -----------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        """Run the stages to the end (or until ``stop``); return the summary document."""
        loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stop_reason is not None:
            self._stop_event.set()
        self._started_wall = _utc_now()
        wall_start = time.monotonic()
        if self.config.summary_path:
            # Say now, not after hours of load, that the summary will have nowhere to go.
            sample = self._summary(0.0, None, status="running")
            self._note_summary_write(probe_summary_path(self.config.summary_path, sample))
        operations: list[tuple[RateScenario, ScenarioStats, Operation]] = []
        holders: list[WebSocketLoad] = []
        closers: list[Callable[[], Awaitable[None]]] = []
        error: str | None = None
        metrics_runner = None
        self._running = True
        try:
            for scenario, stats in zip(self.config.scenarios, self.stats, strict=True):
                made = self._make(scenario, stats)
                closers.append(made.close)
                if isinstance(scenario, WebSocketScenario):
                    holders.append(made)
                else:
                    operations.append((scenario, stats, made))
            for holder in holders:
                await holder.preflight()
            if self.config.metrics_listen is not None:
                metrics_runner = await self._serve_metrics(*self.config.metrics_listen)
            await self._drive(operations, holders)
        except SoakwatchError as exc:
            error = str(exc)
            raise
        finally:
            # The run is over for anyone reading the registry in-process; the /metrics server
            # closes below, so a Prometheus scraping it marks every series stale.
            self._running = False
            self._active_end = self._active_end or loop.time()
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            if metrics_runner is not None:
                await metrics_runner.cleanup()
            summary = self._summary(time.monotonic() - wall_start, error)
            self.summary = summary
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

    def _make(self, scenario: Any, stats: ScenarioStats) -> Any:
        # Each client library is imported only by the scenarios that use it (its own extra).
        if isinstance(scenario, HttpScenario):
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
        raise TypeError(f"unknown scenario {scenario!r}")  # pragma: no cover

    async def _drive(
        self,
        operations: list[tuple[RateScenario, ScenarioStats, Operation]],
        holders: list[WebSocketLoad],
    ) -> None:
        loop = asyncio.get_running_loop()
        assert self._stop_event is not None
        self._start_time = start = loop.time() + _START_DELAY_SECONDS
        stages = self.config.stages
        in_flight: set[asyncio.Task[None]] = set()
        pacers = [
            asyncio.create_task(self._pace(scenario, stats, op, start, in_flight))
            for scenario, stats, op in operations
        ]
        pacers += [asyncio.create_task(h.hold(start, stages)) for h in holders]
        background = [asyncio.create_task(self._report_status(start))]
        if self.config.summary_path and self.config.summary_interval_seconds > 0:
            background.append(asyncio.create_task(self._write_summary_periodically(start)))
        stopper = asyncio.create_task(_wait(self._stop_event))
        try:
            everything = asyncio.ensure_future(_all(pacers))
            done, _ = await asyncio.wait([stopper, everything], return_when=asyncio.FIRST_COMPLETED)
            if everything.done() and everything.exception() is not None:
                raise everything.exception()  # type: ignore[misc]  # a bug: show it
            self._active_end = max(loop.time(), start + stages.total_seconds)
            if stopper in done:
                self._active_end = loop.time()
                grace = self.config.stop_grace_seconds
            else:
                # Let the last operations finish: each has its own deadline.
                grace = max((_timeout(s) for s, _, _ in operations), default=0.0) + 1.0
            for task in pacers:
                task.cancel()
            await asyncio.gather(*pacers, return_exceptions=True)
            if in_flight:
                await asyncio.wait(set(in_flight), timeout=grace)
        finally:
            for task in (*in_flight, *background, *pacers, stopper):
                task.cancel()
            await asyncio.gather(*in_flight, *background, *pacers, stopper, return_exceptions=True)

    async def _pace(
        self,
        scenario: RateScenario,
        stats: ScenarioStats,
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
            now = loop.time()
            delay = due - now
            if delay > 0.0005:
                await asyncio.sleep(delay)
            elif now > deadline:
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
                task = loop.create_task(self._operate(operation, stats, n, due, timeout))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            n += step

    async def _operate(
        self, operation: Operation, stats: ScenarioStats, n: int, due: float, timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
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
        stats.record(outcome, None if outcome in _NO_LATENCY else loop.time() - due)

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
        loop = asyncio.get_running_loop()
        interval = self.config.status_interval_seconds
        last_time, last_started = loop.time(), 0
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            started = sum(s.started for s in self.stats)
            rate = (started - last_started) / (now - last_time) if now > last_time else 0.0
            last_time, last_started = now, started
            self._status(self.status_line(now - start, rate))

    async def _write_summary_periodically(self, start: float) -> None:
        assert self.config.summary_path
        loop = asyncio.get_running_loop()
        while True:
            # First write at once: the file exists from the start, and the writer thread is
            # created during warm-up rather than as a step in the middle of the run.
            summary = self._summary(max(loop.time() - start, 0.0), None, status="running")
            path = self.config.summary_path
            self._note_summary_write(await asyncio.to_thread(try_write_summary, path, summary))
            await asyncio.sleep(self.config.summary_interval_seconds)

    def _summary(
        self, elapsed: float, error: str | None, status: str | None = None
    ) -> dict[str, Any]:
        try:
            loop_time = asyncio.get_running_loop().time()
        except RuntimeError:  # pragma: no cover - always called inside the loop
            loop_time = self._start_time
        end = self._active_end if self._active_end is not None else loop_time
        active = max(end - self._start_time, 0.0) if self._start_time else 0.0
        if status is None:
            status = "error" if error else ("stopped" if self._stop_reason else "completed")
        stages = self.config.stages
        return build_summary(
            self.stats,
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


async def _all(tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*tasks)


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def _timeout(scenario: RateScenario) -> float:
    return scenario.timeout_seconds


async def run_load(config: LoadConfig) -> dict[str, Any]:
    """Run ``config`` to the end and return the summary (no signals, no status output)."""
    return await Driver(config).run()
