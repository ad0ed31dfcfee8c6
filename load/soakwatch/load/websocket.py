"""WebSocket scenario: hold up to ``connections`` open (following the stages), each sending
``message`` every ``interval`` and timing the reply; a dropped connection is re-opened after
``reconnect_delay`` and counted. With ``auth``, each connection first fetches a token from the
auth service and presents it (header or query parameter), so the auth path is soaked too.

Latency of a message is measured from the time it was due, not from when it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Any

import aiohttp
from yarl import URL

from soakwatch.configfile import redact_url
from soakwatch.errors import SourceError
from soakwatch.load.config import AuthSettings, WebSocketScenario
from soakwatch.load.deadlines import within
from soakwatch.load.http import GOLDEN, fetch
from soakwatch.load.outcomes import (
    AUTH_ERROR,
    CLOSED,
    CUT_SHORT,
    ERROR,
    OK,
    PROTOCOL_ERROR,
    TIMEOUT,
    classify_exception,
    classify_status,
)
from soakwatch.load.schedule import Stages, shard_share
from soakwatch.load.stats import ScenarioStats

__all__ = ["AuthUnavailable", "WebSocketLoad", "fetch_token"]

log = logging.getLogger(__name__)

MAX_TOKEN_REPLY_BYTES = 64 * 1024
MAX_NEW_CONNECTIONS_PER_TICK = 250  # connection storms overflow listen backlogs
TICK_SECONDS = 0.1
_REPLY_POLL_SECONDS = 0.01  # at the planned end, how often to look for the last replies


class AuthUnavailable(Exception):
    """The auth service gave no token; the message says why."""


async def fetch_token(session: aiohttp.ClientSession, auth: AuthSettings) -> str:
    """A token from the auth service, or AuthUnavailable with the reason."""
    if auth.url.startswith("skip://"):
        raise AuthUnavailable("auth disabled by SKIP_AUTH_TESTS")
    try:
        status, body = await within(
            auth.timeout_seconds, fetch(session, auth, MAX_TOKEN_REPLY_BYTES)
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise AuthUnavailable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
    if status != 200:
        raise AuthUnavailable(f"HTTP {status}")
    if not auth.token_field:
        token = body.decode("utf-8", errors="replace").strip()
    else:
        try:
            value = json.loads(body)[auth.token_field]
        except (ValueError, TypeError, KeyError):
            raise AuthUnavailable(f"reply has no JSON key {auth.token_field!r}") from None
        token = str(value)
    if not token:
        raise AuthUnavailable("empty token")
    return token


class WebSocketLoad:
    """Holds this shard's share of the scenario's connections for the length of the stages."""

    def __init__(
        self,
        scenario: WebSocketScenario,
        session: aiohttp.ClientSession,
        stats: ScenarioStats,
        shard: tuple[int, int],
    ) -> None:
        self.scenario = scenario
        self._session = session
        self._stats = stats
        self.connections = shard_share(scenario.connections, shard)
        self._closing = False  # the run is ending: no new message starts

    async def preflight(self) -> None:
        """Check the auth service once before the run. Its failure, per ``auth.on_failure``:
        ``skip`` marks the scenario skipped (returns), ``error`` raises SourceError."""
        auth = self.scenario.auth
        if auth is None:
            return
        try:
            await fetch_token(self._session, auth)
        except AuthUnavailable as exc:
            reason = f"auth service {redact_url(auth.url)} unavailable: {exc}"
            if auth.on_failure == "skip":
                log.warning("websocket scenario %r skipped: %s", self.scenario.name, reason)
                self._stats.skipped_reason = reason
                return
            raise SourceError(f"websocket scenario {self.scenario.name!r}: {reason}") from None

    @property
    def skipped(self) -> bool:
        return self._stats.skipped_reason is not None

    async def hold(self, start_time: float, stages: Stages) -> None:
        """Open and close connections to follow the stages until they end (or cancelled)."""
        if self.skipped:
            return
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []
        try:
            while True:
                elapsed = loop.time() - start_time
                if elapsed >= stages.total_seconds:
                    break
                target = math.ceil(self.connections * stages.fraction(elapsed) - 1e-9)
                for _ in range(min(target - len(tasks), MAX_NEW_CONNECTIONS_PER_TICK)):
                    tasks.append(asyncio.create_task(self._connection(len(tasks))))
                while len(tasks) > target:
                    tasks.pop().cancel()
                await asyncio.sleep(TICK_SECONDS)
            # The planned end: send no more, and let the replies in flight arrive (each within
            # its timeout), so that a clean run does not end by cutting its last messages.
            self._closing = True
            deadline = loop.time() + self.scenario.timeout_seconds
            while self._stats.in_flight > 0 and loop.time() < deadline:
                await asyncio.sleep(_REPLY_POLL_SECONDS)
        finally:
            self._closing = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, index: int) -> None:
        """One connection slot: connect, converse, and on any drop reconnect after a pause."""
        first = True
        while True:
            if not first:
                self._stats.reconnects += 1
                await asyncio.sleep(self.scenario.reconnect_delay_seconds)
            first = False
            try:
                await self._connect_and_converse(index)
            except Exception as exc:  # a bug must not silently lose a connection slot
                log.warning("websocket scenario %r: unexpected error %r", self.scenario.name, exc)
                self._stats.record(ERROR, None)

    async def _connect_and_converse(self, index: int) -> None:
        """Open one connection (with a fresh token) and converse until it is unusable."""
        scenario = self.scenario
        stats = self._stats
        url: str | URL = scenario.url
        headers: dict[str, str] = {}
        if scenario.auth is not None:
            try:
                token = await fetch_token(self._session, scenario.auth)
            except AuthUnavailable as exc:
                log.debug("auth failed for %r: %s", scenario.name, exc)
                stats.record(AUTH_ERROR, None)
                return
            if scenario.auth.present_as == "header":
                headers[scenario.auth.header] = scenario.auth.header_prefix + token
            else:
                url = URL(scenario.url).update_query({scenario.auth.query_param: token})
        try:
            ws = await within(
                scenario.timeout_seconds,
                self._session.ws_connect(
                    url, headers=headers or None, autoping=True, max_msg_size=1 << 20
                ),
            )
        except Exception as exc:  # every failure to connect is counted, then retried
            stats.record(_classify(exc), None)
            return
        stats.open_connections += 1
        try:
            await self._converse(ws, index)
        finally:
            stats.open_connections -= 1
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse[Any], index: int) -> None:
        """Send on the interval and time each reply; return when the connection is unusable."""
        loop = asyncio.get_running_loop()
        interval = self.scenario.interval_seconds
        timeout = self.scenario.timeout_seconds
        message = self.scenario.message
        stats = self._stats
        # Spread the connections' sends evenly over the interval.
        due = loop.time() + interval * ((index * GOLDEN) % 1.0)
        while True:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closing:
                return
            stats.scheduled += 1
            stats.started += 1
            stats.in_flight += 1
            try:
                await ws.send_str(message)
                reply = await within(timeout, ws.receive())
            except asyncio.CancelledError:
                # The run (or the ramp-down) closed this connection before the reply came.
                stats.record(CUT_SHORT, None)
                raise
            except TimeoutError:
                stats.record(TIMEOUT, loop.time() - due)
                return  # the reply may still come: a fresh connection keeps replies paired
            except Exception as exc:
                stats.record(_classify(exc), loop.time() - due)
                return
            finally:
                stats.in_flight -= 1
            if reply.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                stats.record(OK, loop.time() - due)
            elif reply.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
            ):
                stats.record(CLOSED, loop.time() - due)
                return
            else:
                stats.record(PROTOCOL_ERROR, loop.time() - due)
                return
            due += interval
            now = loop.time()
            if due < now - interval:
                due = now  # after a long stall, resume the beat instead of sending a burst

    def classify(self, exc: BaseException) -> str:
        return _classify(exc)

    async def close(self) -> None:
        await self._session.close()


def _classify(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError):
        # A 2xx without the upgrade is not a WebSocket server: that is a protocol error.
        return classify_status(exc.status) if exc.status >= 300 else PROTOCOL_ERROR
    if isinstance(exc, ConnectionResetError):
        return CLOSED
    return classify_exception(exc)
