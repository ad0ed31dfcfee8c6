"""Database operations straight against Redis (redis.asyncio), PostgreSQL (psycopg, async) and
ClickHouse (its HTTP interface, through aiohttp; works with servers as old as 18.x).

Statements run in turn, one per scheduled operation; ``{n}`` in a statement becomes the
operation number modulo ``key_space``, so the data a soak writes stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
from collections.abc import Awaitable, Callable
from typing import Any

from soakwatch.load.config import DatabaseScenario
from soakwatch.load.outcomes import (
    CLOSED,
    CONNECT_ERROR,
    DB_ERROR,
    OK,
    TIMEOUT,
    classify_exception,
)
from soakwatch.load.stats import ScenarioStats

__all__ = ["DATABASES", "ClickHouseLoad", "PostgresLoad", "RedisLoad"]

log = logging.getLogger(__name__)


class _Statements:
    def __init__(self, scenario: DatabaseScenario) -> None:
        self._statements = scenario.statements
        self._key_space = scenario.key_space

    def __call__(self, n: int) -> str:
        text = self._statements[n % len(self._statements)]
        return text.replace("{n}", str(n % self._key_space))


class _CommandLines:
    """Redis command lines split once (config checked they split), ``{n}`` filled per call:
    the number is digits only, so filling after the split gives the words splitting after
    the fill would."""

    def __init__(self, scenario: DatabaseScenario) -> None:
        self._commands = [
            (words, any("{n}" in word for word in words))
            for words in map(shlex.split, scenario.statements)
        ]
        self._key_space = scenario.key_space

    def __call__(self, n: int) -> list[str]:
        words, numbered = self._commands[n % len(self._commands)]
        if not numbered:
            return words
        key = str(n % self._key_space)
        return [word.replace("{n}", key) for word in words]


class RedisLoad:
    """Each statement is one Redis command line, split like a shell: ``SET soak:{n} hello``."""

    def __init__(self, scenario: DatabaseScenario, stats: ScenarioStats) -> None:
        import redis.asyncio

        self.scenario = scenario
        self._stats = stats
        self._commands = _CommandLines(scenario)
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(
            scenario.url, max_connections=scenario.pool_size, timeout=None
        )
        self._client = redis.asyncio.Redis(connection_pool=self._pool)
        # redis-py leaves execute_command untyped: give it its real shape once, here.
        self._execute: Callable[..., Awaitable[object]] = self._client.execute_command

    async def operate(self, n: int) -> str:
        await self._execute(*self._commands(n))
        self._stats.open_connections = len(getattr(self._pool, "_connections", ()))
        return OK

    def classify(self, exc: BaseException) -> str:
        import redis.exceptions

        if isinstance(exc, redis.exceptions.TimeoutError):
            return TIMEOUT
        if isinstance(exc, redis.exceptions.ConnectionError):
            return CONNECT_ERROR
        if isinstance(exc, redis.exceptions.RedisError):
            return DB_ERROR
        return classify_exception(exc)

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.disconnect()
        self._stats.open_connections = 0


class PostgresLoad:
    """SQL statements on a small pool of autocommit connections (psycopg 3, async)."""

    def __init__(self, scenario: DatabaseScenario, stats: ScenarioStats) -> None:
        self.scenario = scenario
        self._stats = stats
        self._statements = _Statements(scenario)
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(scenario.pool_size)

    async def operate(self, n: int) -> str:
        import psycopg

        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(self.scenario.url, autocommit=True)
                self._stats.open_connections += 1
            healthy = False
            try:
                async with conn.cursor() as cursor:
                    await cursor.execute(self._statements(n).encode())
                    if cursor.description is not None:
                        await cursor.fetchall()
                healthy = True
            except psycopg.errors.DatabaseError as exc:
                # A rejected statement leaves the connection usable; a broken one does not.
                healthy = not conn.broken and not isinstance(exc, psycopg.OperationalError)
                raise
            finally:
                # A cancelled (timed out) query may leave the connection mid-protocol: drop it.
                if healthy:
                    self._idle.append(conn)
                else:
                    self._stats.open_connections -= 1
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close())
        return OK

    def classify(self, exc: BaseException) -> str:
        import psycopg

        if isinstance(exc, psycopg.OperationalError):
            return CLOSED if "closed" in str(exc).lower() else CONNECT_ERROR
        if isinstance(exc, psycopg.Error):
            return DB_ERROR
        return classify_exception(exc)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
            self._stats.open_connections -= 1


class ClickHouseLoad:
    """Queries POSTed to ClickHouse's HTTP interface; a non-200 reply is a ``db_error``."""

    def __init__(self, scenario: DatabaseScenario, stats: ScenarioStats) -> None:
        from soakwatch.load.http import new_session  # aiohttp: only a ClickHouse run needs it

        self.scenario = scenario
        self._stats = stats
        self._statements = _Statements(scenario)
        self._session = new_session(scenario.pool_size)

    async def operate(self, n: int) -> str:
        from soakwatch.load.http import drain

        async with self._session.post(self.scenario.url, data=self._statements(n)) as response:
            await drain(response)
            return OK if response.status == 200 else DB_ERROR

    def classify(self, exc: BaseException) -> str:
        return classify_exception(exc)

    async def close(self) -> None:
        await self._session.close()


DATABASES: dict[str, type[RedisLoad] | type[PostgresLoad] | type[ClickHouseLoad]] = {
    "redis": RedisLoad,
    "postgres": PostgresLoad,
    "clickhouse": ClickHouseLoad,
}
