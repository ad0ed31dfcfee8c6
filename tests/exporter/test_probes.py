"""Each probe kind against a real server: success when healthy, failure within its timeout when
the target hangs, refuses or is stopped, and never a password in a log line."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import servers
from soakwatch.configfile import Section
from soakwatch.exporter.probes import ProbeResult, ProbeRunner, ProbeSpec, parse_probe

TIMEOUT = 1.0


def spec(kind: str, target: str, name: str = "p", **keys: Any) -> ProbeSpec:
    item = {"name": name, "kind": kind, "target": target, "timeout": TIMEOUT, **keys}
    return parse_probe(Section(item, source="test"))


def run(*specs: ProbeSpec) -> dict[str, ProbeResult]:
    return asyncio.run(ProbeRunner("svc", specs, registry=None).run_once())


def run_one(probe: ProbeSpec) -> ProbeResult:
    return run(probe)[probe.name]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(200, b"status: healthy\n")
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"all systems ", b"nominal"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/auth":
            ok = self.headers.get("Authorization") == "Basic dTpodW50ZXIy"  # u:hunter2
            self._reply(200 if ok else 401, b"")
        else:
            self._reply(404, b"no such page\n")

    def do_HEAD(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "16")
        self.end_headers()

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    # The default listen backlog of 5 drops the SYNs of a burst of concurrent probes (the
    # client then retries after 1 s, past the probe's timeout).
    request_queue_size = 64


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """A real HTTP/1.0 server from the standard library, on a free port."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def https_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same server behind TLS with a self-signed certificate made by openssl."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A socket that accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
def refused_port() -> int:
    return servers.free_port()


@pytest.fixture
def probe_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="soakwatch")
    return caplog


# -- success against real servers ------------------------------------------------------------
def test_the_redis_probe_succeeds_against_a_running_redis(
    redis_server: servers.RedisServer,
) -> None:
    assert run_one(spec("redis", f"{redis_server.host}:{redis_server.port}")).success
    assert run_one(spec("redis", redis_server.url)).success


def test_the_postgres_probe_succeeds_with_scram_authentication(
    postgres_server: servers.PostgresServer,
) -> None:
    result = run_one(spec("postgres", postgres_server.dsn))
    assert result.success
    keys_probe = spec(
        "postgres",
        f"{postgres_server.host}:{postgres_server.port}",
        user=postgres_server.user,
        password=postgres_server.password,
        dbname=postgres_server.dbname,
    )
    assert run_one(keys_probe).success


def test_the_clickhouse_probe_succeeds_against_a_running_clickhouse(
    clickhouse_server: servers.ClickHouseServer,
) -> None:
    assert run_one(spec("clickhouse", clickhouse_server.http_url)).success
    hostport = f"{clickhouse_server.host}:{clickhouse_server.http_port}"
    assert run_one(spec("clickhouse", hostport)).success


def test_the_http_probe_checks_status_and_body(http_url: str) -> None:
    results = run(
        spec("http", f"{http_url}/health", name="plain"),
        spec("http", f"{http_url}/health", name="body", body_regex="healthy"),
        spec("http", f"{http_url}/health", name="wrong-body", body_regex="degraded"),
        spec("http", f"{http_url}/chunked", name="chunked", body_regex="systems nominal"),
        spec("http", f"{http_url}/nope", name="404"),
        spec("http", f"{http_url}/nope", name="404-expected", expect_status=[404]),
        spec("http", f"{http_url}/health", name="head", method="HEAD"),
    )
    assert {name: r.success for name, r in results.items()} == {
        "plain": True,
        "body": True,
        "wrong-body": False,
        "chunked": True,
        "404": False,
        "404-expected": True,
        "head": True,
    }


def test_the_http_probe_sends_url_credentials_and_never_logs_them(
    http_url: str, probe_log: pytest.LogCaptureFixture
) -> None:
    with_password = http_url.replace("http://", "http://u:hunter2@")
    assert run_one(spec("http", f"{with_password}/auth")).success
    wrong = http_url.replace("http://", "http://u:wrong-hunter@")
    assert not run_one(spec("http", f"{wrong}/auth")).success
    assert "status 401" in probe_log.text
    assert "hunter" not in probe_log.text
    assert all("hunter" not in str(r.__dict__) for r in probe_log.records)


def test_the_https_probe_verifies_the_certificate_unless_told_not_to(
    https_url: str, probe_log: pytest.LogCaptureFixture
) -> None:
    results = run(
        spec("http", f"{https_url}/health", name="verified"),
        spec("http", f"{https_url}/health", name="unverified", tls_verify=False),
    )
    assert results["verified"].success is False
    assert "CERTIFICATE_VERIFY_FAILED" in probe_log.text
    assert results["unverified"].success is True


def test_the_tcp_probe_succeeds_when_the_port_accepts(redis_server: servers.RedisServer) -> None:
    assert run_one(spec("tcp", f"{redis_server.host}:{redis_server.port}")).success


# -- failures: wrong answers, refused, hung, stopped ------------------------------------------
def test_a_wrong_password_fails_and_no_log_line_shows_it(
    postgres_server: servers.PostgresServer,
    redis_server: servers.RedisServer,
    probe_log: pytest.LogCaptureFixture,
) -> None:
    bad_dsn = postgres_server.dsn.replace(postgres_server.password, "hunter2")
    results = run(
        spec("postgres", bad_dsn, name="pg"),
        spec("redis", f"redis://:hunter3@{redis_server.host}:{redis_server.port}", name="redis"),
    )
    assert not results["pg"].success and not results["redis"].success
    assert "password authentication failed" in probe_log.text
    assert "AUTH answered" in probe_log.text
    for record in probe_log.records:
        assert "hunter" not in record.getMessage() and "hunter" not in str(record.__dict__)
    assert any(getattr(r, "target", "").endswith("/soak") for r in probe_log.records)


@pytest.mark.parametrize("kind", ["http", "redis", "postgres", "clickhouse"])
def test_a_probe_reports_failure_within_its_timeout_when_the_server_hangs(
    kind: str, hung_port: int, probe_log: pytest.LogCaptureFixture
) -> None:
    target = f"127.0.0.1:{hung_port}"
    if kind == "http":
        target = f"http://{target}/"
    started = time.monotonic()
    result = run_one(spec(kind, target))
    elapsed = time.monotonic() - started
    assert not result.success
    assert TIMEOUT * 0.9 <= result.duration_seconds < TIMEOUT + 2.0
    assert elapsed < TIMEOUT + 2.0
    assert "timed out after 1s" in probe_log.text


@pytest.mark.parametrize("kind", ["http", "tcp", "redis", "postgres", "clickhouse"])
def test_a_probe_reports_failure_at_once_when_the_port_is_refused(
    kind: str, refused_port: int
) -> None:
    target = f"127.0.0.1:{refused_port}"
    if kind == "http":
        target = f"http://{target}/"
    result = run_one(spec(kind, target))
    assert not result.success
    assert result.duration_seconds < TIMEOUT


def test_a_probe_against_a_stopped_server_reports_zero_within_its_timeout() -> None:
    redis = servers.start_redis()
    registry = CollectorRegistry()
    runner = ProbeRunner(
        "svc", [spec("redis", f"{redis.host}:{redis.port}", name="cache")], registry
    )
    labels = {"service": "svc", "probe": "cache"}
    try:
        asyncio.run(runner.run_once())
        assert registry.get_sample_value("soak_probe_success", labels) == 1
    finally:
        redis.stop()
    asyncio.run(runner.run_once())
    assert registry.get_sample_value("soak_probe_success", labels) == 0
    duration = registry.get_sample_value("soak_probe_duration_seconds", labels)
    assert duration is not None and duration < TIMEOUT


# -- the runner ------------------------------------------------------------------------------
def test_the_runner_probes_in_the_background_and_a_scrape_reads_the_last_results(
    redis_server: servers.RedisServer, refused_port: int
) -> None:
    registry = CollectorRegistry()
    up = f"{redis_server.host}:{redis_server.port}"
    hung_timeout = 3.0
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(4)
        probes = [
            spec("redis", up, name="up", interval=0.3, timeout=0.3),
            spec("redis", f"127.0.0.1:{refused_port}", name="refused", interval=0.3, timeout=0.3),
            spec(
                "redis",
                f"127.0.0.1:{hung.getsockname()[1]}",
                name="hung",
                interval=30,
                timeout=hung_timeout,
            ),
        ]
        runner = ProbeRunner("svc", probes, registry=registry)

        def value(name: str, probe: str) -> float | None:
            return registry.get_sample_value(name, {"service": "svc", "probe": probe})

        assert value("soak_probe_success", "up") is None  # no result yet: absent, not 0
        runner.start()
        try:
            hung.settimeout(10)
            connection, _ = hung.accept()  # the hung probe has connected; it waits for +PONG
            with connection:
                accepted = time.monotonic()
                # a scrape while the hung probe is in flight returns at once, without its result
                started = time.monotonic()
                assert value("soak_probe_success", "hung") is None
                assert time.monotonic() - started < 1.0
                deadline = time.monotonic() + 10
                while value("soak_probe_success", "up") is None:
                    assert time.monotonic() < deadline, "the up probe never reported"
                    time.sleep(0.05)
                assert value("soak_probe_success", "up") == 1
                assert value("soak_probe_success", "hung") is None
                assert time.monotonic() - accepted < hung_timeout, "too slow to tell"
                while value("soak_probe_success", "hung") is None:
                    assert time.monotonic() < deadline, "the hung probe never reported"
                    time.sleep(0.05)
            assert value("soak_probe_success", "refused") == 0
            assert value("soak_probe_success", "hung") == 0
            hung_duration = value("soak_probe_duration_seconds", "hung")
            assert hung_duration is not None and hung_duration >= hung_timeout * 0.9
            first_run = value("soak_probe_last_run_timestamp_seconds", "up")
            time.sleep(1.0)
            later_run = value("soak_probe_last_run_timestamp_seconds", "up")
            assert first_run is not None and later_run is not None and later_run > first_run
        finally:
            runner.stop()
    assert not any(t.name == "soakwatch-probes-svc" for t in threading.enumerate())


def test_a_probe_that_raises_fails_alone_and_the_others_still_report(
    redis_server: servers.RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soakwatch.exporter.probes import kinds

    async def broken(target: str, settings: object, log: object) -> bool:
        """A fake: a probe with a bug (a real server cannot make our code raise TypeError)."""
        raise TypeError("bug in a probe")

    monkeypatch.setitem(kinds.KINDS, "tcp", kinds.KINDS["tcp"]._replace(probe=broken))
    results = run(
        spec("tcp", "127.0.0.1:1", name="broken"),
        spec("redis", f"{redis_server.host}:{redis_server.port}", name="fine"),
    )
    assert results["broken"].success is False
    assert results["fine"].success is True


def test_a_probe_that_keeps_failing_warns_once_and_says_when_it_recovers(
    refused_port: int, probe_log: pytest.LogCaptureFixture
) -> None:
    runner = ProbeRunner("svc", [spec("tcp", f"127.0.0.1:{refused_port}")], registry=None)

    def levels() -> list[str]:
        return [r.levelname for r in probe_log.records if r.name == "soakwatch.exporter.probes"]

    asyncio.run(runner.run_once())
    asyncio.run(runner.run_once())
    assert levels() == ["WARNING", "DEBUG"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", refused_port))
        listener.listen(1)
        asyncio.run(runner.run_once())
    assert levels() == ["WARNING", "DEBUG", "INFO"]
    assert "succeeds again" in probe_log.records[-1].getMessage()
