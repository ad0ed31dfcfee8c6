"""Pool adapters read real SQLAlchemy, redis-py and asyncpg pools by duck typing."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis
import sqlalchemy
from prometheus_client import CollectorRegistry

import servers
from soakwatch.exporter.inprocess import start_in_process
from soakwatch.exporter.pool_adapters import InProcessPoolCollector, PoolReading, adapt_pool


def reading(registry: CollectorRegistry, pool: str) -> tuple[float | None, float | None]:
    def get(state: str) -> float | None:
        labels = {"service": "api", "pool": pool, "state": state}
        return registry.get_sample_value("soak_pool_connections", labels)

    return get("in_use"), get("idle")


def test_a_sqlalchemy_engine_reports_checked_out_and_idle_connections(
    postgres_server: servers.PostgresServer,
) -> None:
    engine = sqlalchemy.create_engine(
        postgres_server.dsn.replace("postgresql://", "postgresql+psycopg://"), pool_size=3
    )
    registry = CollectorRegistry()
    InProcessPoolCollector("api", {"db": engine}, registry=registry)
    try:
        assert reading(registry, "db") == (0, 0)
        first, second = engine.connect(), engine.connect()
        assert reading(registry, "db") == (2, 0)
        second.close()
        assert reading(registry, "db") == (1, 1)
        first.close()
        assert reading(registry, "db") == (0, 2)
        engine.dispose()  # replaces engine.pool: the adapter must follow it
        with engine.connect():
            assert reading(registry, "db") == (1, 0)
    finally:
        engine.dispose()


def test_a_redis_client_reports_its_connection_pool(redis_server: servers.RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    registry = CollectorRegistry()
    InProcessPoolCollector("api", {"cache": client}, registry=registry)
    try:
        assert reading(registry, "cache") == (0, 0)
        assert client.ping()
        assert reading(registry, "cache") == (0, 1)
        held = client.connection_pool.get_connection()
        held2 = client.connection_pool.get_connection()
        assert reading(registry, "cache") == (2, 0)
        client.connection_pool.release(held)
        client.connection_pool.release(held2)
        assert reading(registry, "cache") == (0, 2)
    finally:
        client.close()


def test_a_redis_blocking_pool_counts_only_real_idle_connections(
    redis_server: servers.RedisServer,
) -> None:
    pool = redis.BlockingConnectionPool.from_url(redis_server.url, max_connections=4)
    client = redis.Redis(connection_pool=pool)
    read = adapt_pool(pool)
    try:
        assert read() == PoolReading(0, 0)  # the queue holds None placeholders, not connections
        assert client.ping()
        held = pool.get_connection()
        assert client.ping()
        assert read() == PoolReading(1, 1)
        pool.release(held)
        assert read() == PoolReading(0, 2)
    finally:
        pool.disconnect()


@pytest.mark.asyncio
async def test_an_asyncpg_pool_reports_in_use_and_idle(
    postgres_server: servers.PostgresServer,
) -> None:
    pool = await asyncpg.create_pool(postgres_server.dsn, min_size=2, max_size=4)
    registry = CollectorRegistry()
    InProcessPoolCollector("api", {"pg": pool}, registry=registry)
    try:
        assert reading(registry, "pg") == (0, 2)
        async with pool.acquire() as connection:
            assert await connection.fetchval("SELECT 1") == 1
            assert reading(registry, "pg") == (1, 1)
        assert reading(registry, "pg") == (0, 2)
    finally:
        await pool.close()


def test_an_object_no_adapter_knows_is_refused_at_start_up() -> None:
    with pytest.raises(TypeError, match=r"no pool adapter for builtins\.dict"):
        InProcessPoolCollector("api", {"odd": {}}, registry=None)


def test_a_pool_that_fails_to_read_drops_only_its_own_series(
    redis_server: servers.RedisServer,
) -> None:
    class BrokenPool:
        """A fake: a pool whose reading raises is a fault no real pool shows on demand."""

        def get_size(self) -> int:
            raise RuntimeError("pool is closing")

        def get_idle_size(self) -> int:
            return 0

    client = redis.Redis.from_url(redis_server.url)
    registry = CollectorRegistry()
    InProcessPoolCollector("api", {"broken": BrokenPool(), "cache": client}, registry=registry)
    try:
        assert reading(registry, "broken") == (None, None)
        assert reading(registry, "cache") == (0, 0)
    finally:
        client.close()


def test_start_in_process_publishes_the_pools_it_is_given(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(
        f"sqlite:///{tmp_path / 'app.db'}", poolclass=sqlalchemy.pool.QueuePool, pool_size=2
    )
    registry = CollectorRegistry()
    try:
        with start_in_process(port=0, service="api", registry=registry, pools={"db": engine}):
            with engine.connect():
                assert reading(registry, "db") == (1, 0)
            assert reading(registry, "db") == (0, 1)
        assert reading(registry, "db") == (None, None)  # stop() unregistered the pools too
    finally:
        engine.dispose()


def test_a_worker_label_goes_on_every_pool_series(redis_server: servers.RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    registry = CollectorRegistry()
    InProcessPoolCollector("api", {"cache": client}, registry=registry, worker="2")
    try:
        assert client.ping()
        labels = {"service": "api", "pool": "cache", "worker": "2"}
        assert registry.get_sample_value("soak_pool_connections", {**labels, "state": "idle"}) == 1
        assert (
            registry.get_sample_value("soak_pool_connections", {**labels, "state": "in_use"}) == 0
        )
        assert reading(registry, "cache") == (None, None)  # no series without the label
    finally:
        client.close()
