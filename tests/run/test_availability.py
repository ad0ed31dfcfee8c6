"""Availability checks run the exporter's probes (one implementation of each kind) against real
servers: up, down on a closed port with the cause, down past the deadline, and up without the
client libraries of the load extra."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import servers
from soakwatch.configfile import Section
from soakwatch.errors import ConfigError
from soakwatch.run.availability import ServiceCheck, check_all, check_service, describe_down


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_a_real_redis_is_up_through_the_redis_probe(redis_server: servers.RedisServer) -> None:
    result = check_service(ServiceCheck("cache", "redis", redis_server.url))
    assert (result.up, result.reason) == (True, "ok")
    assert result.duration_seconds < 3.0


def test_a_real_postgres_with_a_password_is_up_through_the_postgres_probe(
    postgres_server: servers.PostgresServer,
) -> None:
    result = check_service(ServiceCheck("db", "postgres", postgres_server.dsn))
    assert (result.up, result.reason) == (True, "ok")


def test_a_wrong_postgres_password_is_down_with_the_servers_answer_and_no_password(
    postgres_server: servers.PostgresServer,
) -> None:
    dsn = postgres_server.dsn.replace(postgres_server.password, "wrong-secret")
    result = check_service(ServiceCheck("db", "postgres", dsn))
    assert not result.up
    assert result.reason.startswith("server error 28P01: password authentication failed")
    assert "wrong-secret" not in json.dumps(result.to_json())


def test_redis_on_a_closed_port_is_down_with_a_connection_error_as_its_reason() -> None:
    port = closed_port()
    result = check_service(ServiceCheck("cache", "redis", f"redis://127.0.0.1:{port}/0"))
    assert not result.up
    assert result.reason.startswith("ConnectionError: [Errno 111]"), result.reason
    assert describe_down([result]) == (
        f"  cache (redis redis://127.0.0.1:{port}/0): {result.reason}"
    )


def test_a_tcp_check_on_a_closed_port_names_the_refusal() -> None:
    result = check_service(ServiceCheck("auth", "tcp", f"127.0.0.1:{closed_port()}"))
    assert not result.up
    assert result.reason.startswith("ConnectionRefusedError: "), result.reason


def test_a_server_that_never_answers_is_down_within_the_checks_timeout(silent_port: int) -> None:
    check = ServiceCheck(
        "cache", "redis", f"redis://127.0.0.1:{silent_port}/0", timeout_seconds=0.5
    )
    started = time.monotonic()
    [result] = check_all([check])
    assert not result.up
    assert result.reason == "TimeoutError: no answer within 0.5s"
    assert 0.4 < time.monotonic() - started < 2.0


def test_checks_run_at_once_so_two_hung_services_cost_one_timeout(silent_port: int) -> None:
    checks = [ServiceCheck(name, "tcp", f"127.0.0.1:{closed_port()}") for name in ("a", "b")] + [
        ServiceCheck(name, "redis", f"redis://127.0.0.1:{silent_port}/0", timeout_seconds=1.0)
        for name in ("c", "d")
    ]
    started = time.monotonic()
    results = check_all(checks)
    assert [r.service.name for r in results] == ["a", "b", "c", "d"]
    assert not any(r.up for r in results)
    assert time.monotonic() - started < 1.9


def test_redis_and_postgres_are_up_without_redis_py_and_psycopg(
    redis_server: servers.RedisServer, postgres_server: servers.PostgresServer
) -> None:
    code = (
        "import sys; sys.modules['redis'] = None; sys.modules['psycopg'] = None\n"
        "from soakwatch.run.availability import ServiceCheck, check_all\n"
        f"results = check_all([ServiceCheck('cache', 'redis', {redis_server.url!r}),"
        f" ServiceCheck('db', 'postgres', {postgres_server.dsn!r})])\n"
        "print([(r.up, r.reason) for r in results])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[(True, 'ok'), (True, 'ok')]"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"name": "auth", "kind": "tcp", "target": "::1:9102"},
            "checks[0].target: an IPv6 address needs brackets, as in [::1]:9464, got '::1:9102'",
        ),
        (
            {"name": "cache", "kind": "redis", "target": "unix://localhost/run/redis.sock"},
            "checks[0].target: URL scheme must be one of redis, rediss: 'unix://localhost/run/redis.sock'",
        ),
    ],
)
def test_a_target_the_probe_cannot_reach_is_a_config_error(
    item: dict[str, str], message: str
) -> None:
    section = Section({"checks": [item]}, source="soak.yaml")
    with pytest.raises(ConfigError) as caught:
        [ServiceCheck.from_section(s) for s in section.sections("checks")]
    assert str(caught.value) == f"soak.yaml: {message}"
