"""The server fixtures start real servers that answer, and stop them by PID."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from clickhouse_driver import Client as ClickHouseClient
from prometheus_client import CollectorRegistry, Gauge, start_http_server

import servers
from soakwatch.run import localservers

pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).parent


def _pid_gone(pid: int) -> bool:
    """True when no process (or only a zombie awaiting its reaper) has this PID."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not _pid_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_redis_answers_ping_through_redis_py(redis_server: servers.RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        assert client.ping() is True
        client.set("test_servers:key", "value")
        assert client.get("test_servers:key") == b"value"
    finally:
        client.close()
    assert redis_server.host == "127.0.0.1"


def test_postgres_answers_select_1_with_the_password_in_the_dsn(
    postgres_server: servers.PostgresServer,
) -> None:
    with psycopg.connect(postgres_server.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == (postgres_server.user, postgres_server.dbname)


def test_postgres_rejects_a_wrong_password(postgres_server: servers.PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user=postgres_server.user,
            password="wrong",
            dbname=postgres_server.dbname,
            connect_timeout=5,
        )


def test_postgres_accepts_the_same_dsn_through_asyncpg(
    postgres_server: servers.PostgresServer,
) -> None:
    import asyncpg

    async def select_one() -> int:
        conn = await asyncpg.connect(postgres_server.dsn, timeout=5)
        try:
            return int(await conn.fetchval("SELECT 1"))
        finally:
            await conn.close()

    assert asyncio.run(select_one()) == 1


def test_postgres_runs_as_a_non_root_user(postgres_server: servers.PostgresServer) -> None:
    status = Path(f"/proc/{postgres_server.pid}/status").read_text()
    real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert real_uid != 0


def test_postgres_started_with_its_own_password_accepts_that_one_only() -> None:
    # soak run --demo starts its PostgreSQL with a random password through the same code.
    with localservers.start_postgres(password="demo-only-secret") as server:
        assert server.password == "demo-only-secret"
        assert ":demo-only-secret@" in server.dsn
        with psycopg.connect(server.dsn, connect_timeout=5) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("soak",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(
                server.dsn.replace("demo-only-secret", "soak-secret"), connect_timeout=5
            )


def test_clickhouse_answers_ping_and_a_query_over_http(
    clickhouse_server: servers.ClickHouseServer,
) -> None:
    ping = requests.get(f"{clickhouse_server.http_url}/ping", timeout=5)
    assert ping.content == b"Ok.\n"
    assert clickhouse_server.query("SELECT 40 + 2") == "42\n"
    assert clickhouse_server.query("SELECT version()").startswith("18.16.")


def test_clickhouse_answers_the_native_protocol_through_clickhouse_driver(
    clickhouse_server: servers.ClickHouseServer,
) -> None:
    client = ClickHouseClient(
        clickhouse_server.host, port=clickhouse_server.tcp_port, connect_timeout=5
    )
    try:
        assert client.execute("SELECT 1") == [(1,)]
        client.execute("CREATE TABLE IF NOT EXISTS test_servers_t (x UInt32) ENGINE = Memory")
        client.execute("INSERT INTO test_servers_t (x) VALUES", [(1,), (2,), (3,)])
        assert client.execute("SELECT sum(x) FROM test_servers_t") == [(6,)]
        client.execute("DROP TABLE test_servers_t")
    finally:
        client.disconnect()


def test_prometheus_scrapes_itself_and_reports_up(prometheus_factory) -> None:  # type: ignore[no-untyped-def]
    prometheus = prometheus_factory(scrape_self=True)
    result = prometheus.wait_for('up{job="prometheus"} == 1', timeout=30)
    assert result[0]["metric"]["instance"] == f"127.0.0.1:{prometheus.port}"
    assert prometheus.data_dir.is_dir()


def test_prometheus_scrapes_a_given_target_and_its_metrics(prometheus_factory) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    Gauge("soak_fixture_probe_value", "a value the test checks", registry=registry).set(7)
    port = servers.free_port()
    http_server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prometheus = prometheus_factory(scrape_targets=[f"127.0.0.1:{port}"])
        up = prometheus.wait_for('up{job="soak"} == 1', timeout=30)
        assert up[0]["metric"]["instance"] == f"127.0.0.1:{port}"
        value = prometheus.wait_for("soak_fixture_probe_value", timeout=30)
        assert float(value[0]["value"][1]) == 7.0
        assert prometheus.query("absent_metric_that_nobody_exports") == []
    finally:
        http_server.shutdown()
        thread.join(5)


def test_prometheus_sends_a_firing_rule_to_the_alertmanager(  # type: ignore[no-untyped-def]
    prometheus_factory, alertmanager_factory, tmp_path: Path
) -> None:
    alertmanager = alertmanager_factory(
        textwrap.dedent(
            """\
            route:
              receiver: sink
              group_wait: 0s
            receivers:
              - name: sink
            """
        )
    )
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        textwrap.dedent(
            """\
            groups:
              - name: fixture
                rules:
                  - alert: FixtureAlwaysFires
                    expr: vector(1)
                    labels: {severity: test}
            """
        )
    )
    prometheus = prometheus_factory(rule_files=[rules], alertmanager_urls=[alertmanager.url])
    prometheus.wait_for('ALERTS{alertname="FixtureAlwaysFires",alertstate="firing"}', timeout=30)
    deadline = time.monotonic() + 30
    while not any(a["labels"]["alertname"] == "FixtureAlwaysFires" for a in alertmanager.alerts()):
        assert time.monotonic() < deadline, "the alert never reached the Alertmanager"
        time.sleep(0.25)


def test_alertmanager_is_ready_and_reports_its_status(alertmanager_factory) -> None:  # type: ignore[no-untyped-def]
    alertmanager = alertmanager_factory("route:\n  receiver: sink\nreceivers:\n  - name: sink\n")
    assert requests.get(f"{alertmanager.url}/-/ready", timeout=5).status_code == 200
    status = requests.get(f"{alertmanager.url}/api/v2/status", timeout=5).json()
    assert status["cluster"]["status"] == "disabled"
    assert "receiver: sink" in status["config"]["original"]


def test_victoriametrics_ingests_prometheus_text_and_answers_promql(
    victoriametrics_server: servers.VictoriaMetricsServer,
) -> None:
    requests.get(f"{victoriametrics_server.url}/health", timeout=5).raise_for_status()
    victoriametrics_server.import_prometheus_text(
        'soak_fixture_vm_value{service="a"} 3\nsoak_fixture_vm_value{service="b"} 4\n'
    )
    result = victoriametrics_server.wait_for("sum(soak_fixture_vm_value)", timeout=30)
    assert float(result[0]["value"][1]) == 7.0


def test_a_stopped_server_is_gone_by_pid_and_its_directory_removed() -> None:
    server = servers.start_redis()
    pid, data_dir = server.pid, server.data_dir
    assert not _pid_gone(pid)
    server.stop()
    assert _pid_gone(pid)
    assert not data_dir.exists()
    server.stop()  # idempotent


@pytest.mark.parametrize("start", [servers.start_redis, servers.start_victoriametrics])
def test_a_port_taken_between_choosing_and_binding_is_retried_with_a_fresh_port(
    start: Callable[[], servers.Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The race itself cannot be timed reliably, so the first "free" port handed out is one
    # this test holds: exactly what a concurrent session binding it first looks like.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        fresh_port = servers.free_port
        handed_out = iter([taken_port])

        def racy_free_port() -> int:
            return next(handed_out, None) or fresh_port()

        # Redis starts in soakwatch.run.localservers, VictoriaMetrics in servers: patch both.
        monkeypatch.setattr(localservers, "free_port", racy_free_port)
        monkeypatch.setattr(servers, "free_port", racy_free_port)
        with start() as server:
            port = server.port  # type: ignore[attr-defined]
            assert port != taken_port
            servers.wait_for_port("127.0.0.1", port, timeout=5)
        assert next(handed_out, None) is None, "the taken port was never handed out"


def test_a_start_failure_reports_the_tail_of_the_server_log() -> None:
    with pytest.raises(servers.ServerStartError, match=r"(?s)exited with code 1.*Loading config"):
        servers.start_alertmanager("route: [this is not a route\n")


def test_fixtures_stop_every_server_they_started_when_the_session_ends(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text())
    pytester.makepyfile(servers=(TESTS_DIR / "servers.py").read_text())
    pids = pytester.path / "pids"
    pytester.makepyfile(
        test_inner=f"""
        def test_uses_servers(redis_server, prometheus_factory, alertmanager_factory):
            prometheus = prometheus_factory()
            config = "route:\\n  receiver: a\\nreceivers:\\n- name: a\\n"
            alertmanager = alertmanager_factory(config)
            with open({str(pids)!r}, "w") as f:
                for server in (redis_server, prometheus, alertmanager):
                    f.write(f"{{server.pid}} {{server.data_dir}}\\n")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--import-mode=importlib")
    result.assert_outcomes(passed=1)
    entries = [line.split(" ", 1) for line in pids.read_text().splitlines()]
    assert len(entries) == 3
    for pid, data_dir in entries:
        assert _pid_gone(int(pid))
        assert not Path(data_dir).exists()


def test_servers_die_with_a_killed_test_process_and_the_next_session_removes_their_dirs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); import servers; "
        "s = servers.start_redis(); print(s.pid, s.data_dir, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(TESTS_DIR)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        pid_text, data_dir = child.stdout.readline().split(" ", 1)
        pid = int(pid_text)
        assert not _pid_gone(pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        assert _wait_gone(pid), f"redis (pid {pid}) outlived the killed test process"
        assert Path(data_dir.strip()).is_dir()
        # The first start in a new session sweeps the dirs of dead sessions.
        monkeypatch.setattr(localservers, "_swept", False)
        servers.start_redis().stop()
        assert not Path(data_dir.strip()).exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
