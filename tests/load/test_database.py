"""Database load straight against real Redis, PostgreSQL and ClickHouse (shared fixtures)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import redis

from soakwatch.load.config import LoadConfig, load_config
from soakwatch.load.driver import Driver


def db_config(
    kind: str, url: str, statements: list[str], rate: str = "20/s", **extra: Any
) -> LoadConfig:
    scenario = {"kind": kind, "url": url, "rate": rate, "statements": statements, **extra}
    return load_config(flags={"duration": "1s"}, flag_scenarios=[scenario], environ={})


@pytest.mark.asyncio
async def test_redis_commands_run_in_turn_on_a_bounded_key_space(redis_server: Any) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.delete(*[f"soak-load:{i}" for i in range(5)], "soak-load:counter")
    config = db_config(
        "redis",
        redis_server.url,
        ["SET soak-load:{n} x", "GET soak-load:{n}", "INCR soak-load:counter"],
        rate="30/s",
        key_space=5,
    )
    driver = Driver(config)
    part = (await driver.run())["scenarios"]["redis"]
    assert part["outcomes"]["ok"] == 30 and part["errors"] == 0
    assert int(client.get("soak-load:counter") or 0) == 10  # every third operation
    assert sorted(client.keys("soak-load:[0-9]*")) == [f"soak-load:{i}".encode() for i in range(5)]
    ok = driver.registry.get_sample_value(
        "soak_load_db_operations_total", {"db": "redis", "outcome": "ok", "shard": "0/1"}
    )
    assert ok == 30


@pytest.mark.asyncio
async def test_a_command_redis_rejects_is_a_db_error(redis_server: Any) -> None:
    config = db_config("redis", redis_server.url, ["PING", "NOSUCHCOMMAND soak"])
    part = (await Driver(config).run())["scenarios"]["redis"]
    assert (part["outcomes"]["ok"], part["outcomes"]["db_error"]) == (10, 10)


@pytest.mark.asyncio
async def test_postgres_statements_run_on_a_small_pool_that_is_closed_at_the_end(
    postgres_server: Any,
) -> None:
    with psycopg.connect(postgres_server.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS soak_load_rows")
        conn.execute("CREATE TABLE soak_load_rows (n integer)")
    config = db_config(
        "postgres",
        postgres_server.dsn,
        ["SELECT {n}", "INSERT INTO soak_load_rows (n) VALUES ({n})", "SELECT * FROM nope"],
        rate="30/s",
    )
    part = (await Driver(config).run())["scenarios"]["postgres"]
    assert (part["outcomes"]["ok"], part["outcomes"]["db_error"]) == (20, 10)
    assert part["open_connections"] == 0
    with psycopg.connect(postgres_server.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM soak_load_rows").fetchone()
    assert row is not None and row[0] == 10


@pytest.mark.asyncio
async def test_a_wrong_postgres_password_is_a_connect_error(postgres_server: Any) -> None:
    dsn = postgres_server.dsn.replace(postgres_server.password, "wrong-password")
    part = (await Driver(db_config("postgres", dsn, ["SELECT 1"], rate="5/s")).run())["scenarios"][
        "postgres"
    ]
    assert part["outcomes"]["connect_error"] == 5


@pytest.mark.asyncio
async def test_clickhouse_queries_go_over_http_and_a_rejected_one_is_a_db_error(
    clickhouse_server: Any,
) -> None:
    config = db_config(
        "clickhouse", clickhouse_server.http_url, ["SELECT {n}", "SELECT no_such_function()"]
    )
    driver = Driver(config)
    part = (await driver.run())["scenarios"]["clickhouse"]
    assert (part["outcomes"]["ok"], part["outcomes"]["db_error"]) == (10, 10)
    errors = driver.registry.get_sample_value(
        "soak_load_db_operations_total",
        {"db": "clickhouse", "outcome": "db_error", "shard": "0/1"},
    )
    assert errors == 10
