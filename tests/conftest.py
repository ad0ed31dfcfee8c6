"""Fixtures that start real servers on 127.0.0.1 (see ``servers.py``; ``import servers`` works
in any test because tests/ is on the pythonpath).

Session-scoped, started on first use and shared by the whole session — do not stop them, and
use your own key prefix / table / database objects so tests do not see each other's data:

- ``redis_server``: ``.host .port .url`` (``redis://127.0.0.1:PORT/0``) ``.pid``
- ``postgres_server``: ``.host .port .user .password .dbname .dsn .pid``; ``.dsn`` is
  ``postgresql://soak:soak-secret@127.0.0.1:PORT/soak`` (psycopg 3, asyncpg; the user is a
  superuser; password auth over TCP, so a wrong password really fails)
- ``clickhouse_server`` (18.16): ``.host .http_port .tcp_port .http_url .pid``, ``.query(sql)``
  over HTTP. User ``default``, no password. clickhouse-driver (native TCP) works with 18.16.
  Compare HTTP bodies as bytes (``response.content == b"Ok.\\n"``): ClickHouse sends no
  charset, and requests' ``.text`` may guess a wrong encoding.
- ``victoriametrics_server``: ``.url .port .pid``, ``.query(promql)``, ``.wait_for(promql,
  timeout)``, ``.import_prometheus_text(text)``, ``.flush()``. Serves the Prometheus query API
  under ``/api/v1/...``; started with ``-search.latencyOffset=0s -search.disableCache``.

Function-scoped factories; everything they started is stopped at the end of the test:

- ``prometheus_factory(scrape_targets=None, rule_files=None, alertmanager_urls=None,
  scrape_interval="1s", evaluation_interval="1s", extra_scrape_configs=None, *,
  scrape_self=False, extra_args=())`` -> server with ``.url .port .pid .data_dir
  .storage_path .config_path``, ``.query(promql) -> list`` (the instant-query ``result``),
  ``.wait_for(promql, timeout=30) -> list`` (polls until non-empty, AssertionError on timeout),
  ``.reload(config_text=None)``. Targets are "host:port" (job ``soak``, path /metrics) or URLs
  ("http://127.0.0.1:PORT/path"); rule files are paths; Alertmanagers are URLs. Started with
  ``--web.enable-lifecycle --web.enable-admin-api --rules.alert.resend-delay=1s``.
- ``alertmanager_factory(config_text)`` -> server with ``.url .port .pid .data_dir``,
  ``.alerts()``; clustering disabled.

Every server object also has ``.stop()`` (idempotent: signal by PID, wait, SIGKILL after 15 s,
remove the data dir), ``.running()``, ``.data_dir`` and ``.log_tail()``. A missing binary skips
the test naming the Debian package (fails it when ``CI`` is set).

A test that runs a program itself (promtool, amtool, kubectl, ...) says so with
``@pytest.mark.requires_binary(name, package)``: the same rule, checked before the test starts,
so a CI without the program fails instead of passing silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import servers

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires_binary(name, package): the test runs program `name` (on PATH); without it the "
        "test is skipped naming the Debian `package`, or failed when CI is set",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("requires_binary"):
        servers.require_binary(*marker.args, **marker.kwargs)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[servers.RedisServer]:
    with servers.start_redis() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[servers.PostgresServer]:
    with servers.start_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def clickhouse_server() -> Iterator[servers.ClickHouseServer]:
    with servers.start_clickhouse() as server:
        yield server


@pytest.fixture(scope="session")
def victoriametrics_server() -> Iterator[servers.VictoriaMetricsServer]:
    with servers.start_victoriametrics() as server:
        yield server


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., servers.PrometheusServer]]:
    started: list[servers.PrometheusServer] = []

    def start(*args: Any, **kwargs: Any) -> servers.PrometheusServer:
        server = servers.start_prometheus(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def alertmanager_factory() -> Iterator[Callable[[str], servers.AlertmanagerServer]]:
    started: list[servers.AlertmanagerServer] = []

    def start(config_text: str) -> servers.AlertmanagerServer:
        server = servers.start_alertmanager(config_text)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
