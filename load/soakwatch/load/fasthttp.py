"""The fast path of HTTP scenarios: a lean HTTP/1.1 keep-alive client on asyncio Protocols with
httptools (llhttp) parsing, and a pacer that sends each operation from a timer or from the
reply that frees a connection, with no Task, Future or coroutine per request.

Used for plain ``http://`` endpoints without credentials in the URL (``HttpLoad`` on aiohttp
keeps TLS, credentials in URLs, and everything else). One request per connection at a time
(no pipelining): a scenario holds at most ``max_in_flight`` connections, each carrying one
operation, opened on demand and kept alive. A redirect (3xx with ``Location``) is followed as
aiohttp follows it, by handing that one operation to aiohttp. Proxies are not used (the aiohttp
path does not read proxy settings either).

Timing, per operation: ``due`` (the schedule), ``sent`` (written to the socket) and ``done``
(reply complete), all from ``time.monotonic``: lag = sent - due, service = done - sent,
latency = done - due (the open model: the driver's own lag is inside latency, and beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import time
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from soakwatch.load.config import HttpCall, HttpScenario
from soakwatch.load.outcomes import (
    CLOSED,
    CONNECT_ERROR,
    CUT_SHORT,
    DROPPED,
    HTTP_OTHER,
    PROTOCOL_ERROR,
    TIMEOUT,
    classify_exception,
    classify_status,
)
from soakwatch.load.schedule import Schedule
from soakwatch.load.stats import ScenarioStats
from soakwatch.version import __version__

__all__ = ["FastHttpLoad", "fast_path_supported", "serialize"]

now = time.monotonic
_EARLY_SECONDS = 0.0005  # an operation due this soon is sent now (a timer costs more)
_OVERRUN_SECONDS = 1.0  # how far past its end a saturated schedule may still send
_FOLLOW = 301, 302, 303, 307, 308
_NO_LATENCY = frozenset({DROPPED, CONNECT_ERROR, CUT_SHORT})
# The shortest timer: event loops keep time in whole milliseconds, and uvloop rounds a shorter
# delay to 0, so a timer for 0.3 ms fires at once, again and again: a busy loop (a core spent on
# waiting, and under contention the preemption that comes with it). An operation due sooner
# than this after the last send waits one tick; lag = sent - due shows the cost (< 1 ms).
_TIMER_TICK = 0.001


def fast_path_supported(scenario: HttpScenario) -> bool:
    """True when every endpoint is plain ``http://`` on one host and port, with no credentials
    in the URL (aiohttp turns those into a header)."""
    origins = set()
    for call in scenario.endpoints:
        parts = urlsplit(call.url)
        if parts.scheme != "http" or parts.username is not None or parts.password is not None:
            return False
        if not parts.hostname:
            return False
        origins.add((parts.hostname, parts.port or 80))
    return len(origins) == 1


def serialize(call: HttpCall) -> bytes:
    """The request bytes of ``call`` (as aiohttp would send them, minus compression)."""
    parts = urlsplit(call.url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != 80:
        host += f":{parts.port}"
    given = {name.lower() for name, _ in call.headers}
    lines = [f"{call.method} {target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {host}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: soakwatch/{__version__}")
    if "accept" not in given:
        lines.append("Accept: */*")
    lines += [f"{name}: {value}" for name, value in call.headers]
    body = call.body.encode("utf-8") if call.body is not None else b""
    if call.body is not None and "content-type" not in given:
        lines.append("Content-Type: text/plain; charset=utf-8")
    if (body or call.method in ("POST", "PUT", "PATCH")) and "content-length" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries at most one operation at a time."""

    __slots__ = (
        "due",
        "head_only",
        "index",
        "keep_alive",
        "load",
        "parser",
        "pending",
        "sent",
        "status",
        "transport",
    )

    def __init__(self, load: FastHttpLoad) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending: bytes | None = None  # written once connected
        self.due = 0.0  # 0.0: idle
        self.sent = 0.0
        self.index = 0
        self.status = 0
        self.head_only = False
        self.keep_alive = True

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but offer its methods
        self.transport = cast(asyncio.Transport, transport)
        if self.pending is not None:
            self.transport.write(self.pending)
            self.pending = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.load.finish(self, PROTOCOL_ERROR, reuse=False)
            return
        if self.head_only and self.status and self.due:
            # llhttp cannot be told a HEAD reply has no body: the head is the whole reply.
            self.parser = httptools.HttpResponseParser(self)
            self.load.finish(self, classify_status(self.status), reuse=self.keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        load = self.load
        load.forget(self)
        if self.due:
            outcome = CLOSED
            if exc is None and self.status and not self.keep_alive:
                # A reply delimited by the close (no length, no chunks): complete at EOF.
                outcome = classify_status(self.status)
            load.finish(self, outcome, reuse=False)

    # -- httptools callbacks ---------------------------------------------------------------
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_message_complete(self) -> None:
        if self.due:
            self.load.finish(self, classify_status(self.status), reuse=self.keep_alive)


class FastHttpLoad:
    """A rate scenario on the fast path: ``run()`` paces the schedule until it ends.

    ``record(outcome, due, sent, done)`` is the driver's: called once per operation
    (``sent`` and ``done`` are 0.0 for an operation never sent)."""

    def __init__(
        self,
        scenario: HttpScenario,
        stats: ScenarioStats,
        schedule: Schedule,
        *,
        record: Callable[[str, float, float, float], None],
        record_lag: Callable[[float], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.scenario = scenario
        self.stats = stats
        self._schedule = schedule
        self._record = record
        self._record_lag = record_lag
        self._on_error = on_error
        parts = urlsplit(scenario.endpoints[0].url)
        self._host = parts.hostname or ""
        self._port = parts.port or 80
        self._requests = [serialize(call) for call in scenario.endpoints]
        self._heads = [call.method == "HEAD" for call in scenario.endpoints]
        from soakwatch.load.http import WeightedPicker

        self._picker = WeightedPicker([e.weight for e in scenario.endpoints])
        self._limit = scenario.max_in_flight
        self._timeout = scenario.timeout_seconds
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._connections = 0  # open or opening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._finished: asyncio.Future[None] | None = None
        self._idle_waiter: asyncio.Future[None] | None = None
        self._fallbacks: set[asyncio.Task[None]] = set()  # redirects, on aiohttp
        self._connecting: set[asyncio.Task[None]] = set()
        self._session: Any = None
        self._blocked = False  # every slot taken with an operation due
        self._closing = False
        # the schedule, by index: event k (k = shard index, +shard count) is due at
        # start + time_at_area((k + 0.5) / rate)
        self._k = schedule.shard[0]
        self._step = schedule.shard[1]
        self._start = 0.0
        self._next_due = math.inf
        self._end_area = schedule.stages.area(schedule.stages.total_seconds)
        self._deadline = 0.0

    # -- pacing ------------------------------------------------------------------------------
    async def run(self, start: float) -> None:
        """Pace the schedule from ``start`` (a ``time.monotonic`` instant) to its end."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._start = start
        self._deadline = start + self._schedule.stages.total_seconds + _OVERRUN_SECONDS
        self._finished = loop.create_future()
        self._next_due = self._due_of(self._k)
        sweep = self._sweep_interval()
        self._sweeper = loop.call_later(sweep, self._sweep, sweep)
        self._arm()
        try:
            await self._finished
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._next_due = math.inf

    def _due_of(self, k: int) -> float:
        area = (k + 0.5) / self._schedule.rate_per_second
        if area > self._end_area:
            return math.inf
        offset = self._schedule.stages.time_at_area(area)
        if offset >= self._schedule.stages.total_seconds:
            return math.inf
        return self._start + offset

    def _arm(self) -> None:
        """Send what is due; then wait for the next due time (a timer) or a free slot."""
        due = self._next_due
        t = now()
        stats = self.stats
        while due <= t + _EARLY_SECONDS:
            if stats.in_flight >= self._limit:
                if t > self._deadline:
                    self._drop_rest()
                    return
                self._blocked = True
                self._set_timer(self._deadline)
                return
            self._send(due, t)
            self._k += self._step
            due = self._next_due = self._due_of(self._k)
            t = now()
        self._blocked = False
        if due == math.inf:
            self._set_timer(None)
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(None)
            return
        self._set_timer(due - _EARLY_SECONDS)

    def _set_timer(self, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None and self._loop is not None:
            delay = max(when - now(), _TIMER_TICK)
            self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._blocked:
            if now() > self._deadline:
                self._drop_rest()
            else:
                self._set_timer(self._deadline + 0.001)
            return
        self._arm()

    def _freed(self, done: float) -> None:
        """A slot came free at ``done``: what came due while all were taken was dropped."""
        if not self._blocked:
            return
        self._blocked = False
        rate = self._schedule.rate_per_second
        elapsed = done - self._start
        area = min(self._schedule.stages.area(elapsed), self._end_area)
        last = math.floor(area * rate - 0.5)  # the last event (all shards) due before done
        if last >= self._k:
            count = (last - self._k) // self._step + 1
            self.stats.scheduled += count
            self.stats.outcomes[DROPPED] += count
            self._k += count * self._step
            self._next_due = self._due_of(self._k)
        self._arm()

    def _drop_rest(self) -> None:
        """Saturated so far that the run is over: the rest came due unsent."""
        remaining = self._schedule.expected_events() - self.stats.scheduled
        if remaining > 0:
            self.stats.scheduled += remaining
            self.stats.outcomes[DROPPED] += remaining
        self._next_due = math.inf
        self._blocked = False
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    # -- sending -----------------------------------------------------------------------------
    def _send(self, due: float, t: float) -> None:
        stats = self.stats
        stats.scheduled += 1
        stats.started += 1
        stats.in_flight += 1
        n = self._k
        index = self._picker.index(n) if len(self._requests) > 1 else 0
        request = self._requests[index]
        if self._idle:
            conn = self._idle.pop()
            transport = conn.transport
            assert transport is not None
            transport.write(request)
        else:
            conn = _Connection(self)
            conn.pending = request
            self._connections += 1
            assert self._loop is not None
            task = self._loop.create_task(self._connect(conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        conn.due = due
        conn.sent = t
        conn.index = index
        conn.status = 0
        conn.head_only = self._heads[index]
        self._busy.add(conn)
        self._record_lag(t - due)

    async def _connect(self, conn: _Connection) -> None:
        assert self._loop is not None
        try:
            await self._loop.create_connection(lambda: conn, self._host, self._port)
        except OSError as exc:
            self._connections -= 1
            if conn.due:
                self.finish(conn, classify_exception(exc), reuse=False)
            return
        if self._closing and conn.transport is not None:
            conn.transport.abort()
            return
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self, conn: _Connection, outcome: str, *, reuse: bool) -> None:
        """The operation on ``conn`` ended with ``outcome``."""
        done = now()
        due, sent = conn.due, conn.sent
        conn.due = 0.0
        self._busy.discard(conn)
        if outcome == HTTP_OTHER and conn.status in _FOLLOW:
            self._follow(conn, due, sent, reuse=reuse)
            return
        if reuse and conn.transport is not None and not self._closing:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        self.stats.in_flight -= 1
        self._record(outcome, due, sent if outcome not in _NO_LATENCY else 0.0, done)
        if self._blocked:
            self._freed(done)
        elif self._next_due <= done + _EARLY_SECONDS:
            # Due while this reply was read: send it now, from this callback, not from the
            # timer at the next turn of the loop (after every other reply read in this one).
            self._arm()
        if self._idle_waiter is not None and not self._busy and not self._fallbacks:
            self._wake_idle()

    def forget(self, conn: _Connection) -> None:
        """``conn`` closed: it is no longer a connection of this scenario."""
        self._connections -= 1
        if conn in self._idle:
            self._idle.remove(conn)
        if self._idle_waiter is not None and not self._busy and not self._fallbacks:
            self._wake_idle()

    def _follow(self, conn: _Connection, due: float, sent: float, *, reuse: bool) -> None:
        """Hand a redirect to aiohttp, which follows it (as the aiohttp path does)."""
        if reuse and conn.transport is not None:
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        assert self._loop is not None
        task = self._loop.create_task(self._follow_with_aiohttp(conn.index, due, sent))
        self._fallbacks.add(task)
        task.add_done_callback(self._fallbacks.discard)

    async def _follow_with_aiohttp(self, index: int, due: float, sent: float) -> None:
        from soakwatch.load.deadlines import within
        from soakwatch.load.http import new_session, send

        if self._session is None:
            self._session = new_session(self._limit)
        outcome = CUT_SHORT
        try:
            left = max(self._timeout - (now() - sent), 0.001)
            outcome = await within(left, send(self._session, self.scenario.endpoints[index]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = classify_exception(exc)
            if outcome == "error":
                self._on_error(exc)
        finally:
            self.stats.in_flight -= 1
            if outcome == CUT_SHORT:
                self._record(CUT_SHORT, due, 0.0, 0.0)
            else:
                self._record(outcome, due, sent if outcome not in _NO_LATENCY else 0.0, now())
            if self._blocked:
                self._freed(now())
            if self._idle_waiter is not None and not self._busy and not self._fallbacks:
                self._wake_idle()

    # -- deadlines ---------------------------------------------------------------------------
    def _sweep_interval(self) -> float:
        return min(max(self._timeout / 20, 0.005), 0.1)

    def _sweep(self, interval: float) -> None:
        """End the operations past their deadline (one timer for all, not one each)."""
        cutoff = now() - self._timeout
        for conn in [c for c in self._busy if c.sent <= cutoff]:
            transport = conn.transport
            self.finish(conn, TIMEOUT, reuse=False)
            if transport is not None:
                transport.abort()
        if self._loop is not None and not self._closing:
            self._sweeper = self._loop.call_later(interval, self._sweep, interval)

    # -- the end -----------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self._busy) + len(self._fallbacks)

    def _wake_idle(self) -> None:
        if self._idle_waiter is not None and not self._idle_waiter.done():
            self._idle_waiter.set_result(None)

    async def wait_idle(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the operations in flight to end."""
        if not self._busy and not self._fallbacks:
            return
        self._idle_waiter = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._idle_waiter), timeout)

    def cut_short(self) -> None:
        """The run ended the operations still in flight: each counts as cut_short."""
        self._closing = True
        for conn in list(self._busy):
            self.finish(conn, CUT_SHORT, reuse=False)
        for task in (*self._fallbacks, *self._connecting):
            task.cancel()

    async def close(self) -> None:
        self.cut_short()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._fallbacks or self._connecting:
            await asyncio.gather(*self._fallbacks, *self._connecting, return_exceptions=True)
        for conn in list(self._idle):
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
        if self._session is not None:
            await self._session.close()

    def classify(self, exc: BaseException) -> str:
        return classify_exception(exc)
