"""Real servers for the tests: started on 127.0.0.1 at free ports, each in its own temporary
directory, stopped by PID.

The machinery, Redis and PostgreSQL live in ``soakwatch.run.localservers`` (``soak run --demo``
starts its servers with the same code), Prometheus in ``soakwatch.run.prometheus`` (the launcher
of ``soak run --local-prometheus`` and the benchmarks); this module adds the servers only the
tests need (ClickHouse, Alertmanager, VictoriaMetrics) and the pytest side. Every server runs
as a child of the test process with its output in ``<data_dir>/server.log``. Ports come from
binding port 0; if the chosen port is taken before the server binds it (another test session
raced us), the start is retried with fresh ports. On Linux the children get PR_SET_PDEATHSIG,
so a killed test session does not leave servers behind, and the next session's first start
removes the data dirs such a session left (marked with its PID).

A missing binary skips the test with the Debian package to install, or fails it when the
environment variable ``CI`` is set (CI must have every server). ``require_binary`` is that rule
for any program; a test that runs one itself (promtool, amtool, kubectl) carries
``@pytest.mark.requires_binary(name, package)``, which conftest.py checks with it.

Timing on this project's 2-core CI machine: Redis, ClickHouse, Prometheus, Alertmanager and
VictoriaMetrics are ready in well under a second, PostgreSQL (initdb included) in 1-2 s.
Prometheus 2.42 hands targets to its scrape loop on a fixed 5 s tick, so the first scrape of a
fresh Prometheus lands about 5 s after start whatever the scrape interval: use ``wait_for``.

The fixtures in ``conftest.py`` wrap these; use the functions here directly only for a server
that a fixture does not cover (e.g. one test that must stop a server mid-way).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests

from soakwatch.run import localservers, prometheus
from soakwatch.run.localservers import (
    HOST,
    MissingBinaryError,
    PortTakenError,
    PostgresServer,
    RedisServer,
    Server,
    ServerStartError,
    SinglePortServer,
    find_binary,
    free_port,
    launch,
    spawn,
    start_in_temp_dir,
    wait_for_port,
)
from soakwatch.run.prometheus import prometheus_config

__all__ = [
    "AlertmanagerServer",
    "ClickHouseServer",
    "PortTakenError",
    "PostgresServer",
    "PrometheusServer",
    "RedisServer",
    "Server",
    "ServerStartError",
    "VictoriaMetricsServer",
    "free_port",
    "prometheus_config",
    "require_binary",
    "start_alertmanager",
    "start_clickhouse",
    "start_postgres",
    "start_prometheus",
    "start_prometheus_on_tsdb",
    "start_redis",
    "start_victoriametrics",
    "wait_for_port",
]

# The OS user PostgreSQL runs as when the tests run as root (tests give it files they write).
POSTGRES_OS_USER = localservers.POSTGRES_OS_USER


# -- the pytest side: a missing binary skips the test (fails it under CI) ---------------------
def _skip_or_fail(missing: MissingBinaryError) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(str(missing), pytrace=False)
    pytest.skip(str(missing))


def require_binary(path: str | Path, package: str) -> str:
    """The full path of ``path`` (a name on PATH or an absolute path), or skip/fail the test."""
    try:
        return find_binary(path, package)
    except MissingBinaryError as missing:
        _skip_or_fail(missing)


def start_redis() -> RedisServer:
    """``soakwatch.run.localservers.start_redis``; skips/fails the test without redis-server."""
    try:
        return localservers.start_redis()
    except MissingBinaryError as missing:
        _skip_or_fail(missing)


def start_postgres() -> PostgresServer:
    """``soakwatch.run.localservers.start_postgres`` (password ``soak-secret``); skips/fails the
    test without PostgreSQL 15."""
    try:
        return localservers.start_postgres()
    except MissingBinaryError as missing:
        _skip_or_fail(missing)


# -- the servers only the tests need ----------------------------------------------------------
def _http_ok(url: str, body: bytes | None = None) -> Callable[[], bool]:
    def check() -> bool:
        response = requests.get(url, timeout=2)
        # Compare bytes: without a charset header requests guesses the encoding of .text.
        return response.status_code == 200 and (body is None or response.content == body)

    return check


# -- PromQL over the Prometheus HTTP API (Prometheus and VictoriaMetrics) ---------------------
class _PromQLMixin:
    @property
    def url(self) -> str:
        raise NotImplementedError

    def query(self, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
        """The ``result`` list of an instant query (``[]`` when nothing matches)."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        response = requests.get(f"{self.url}/api/v1/query", params=params, timeout=10)
        payload = response.json()
        if response.status_code != 200 or payload.get("status") != "success":
            raise AssertionError(f"query {promql!r} failed: {response.status_code} {payload}")
        result = payload["data"]["result"]
        # A scalar or string result is [time, value]: wrap it like one vector element.
        if payload["data"].get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def wait_for(
        self, promql: str, timeout: float = 30.0, *, interval: float = 0.25
    ) -> list[dict[str, Any]]:
        """Poll ``query(promql)`` until it returns something; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql!r} returned nothing for {timeout}s on {self.url}")
            time.sleep(interval)


# -- ClickHouse (Debian's 18.16 line) ---------------------------------------------------------
_CLICKHOUSE_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>{dir}/clickhouse-server.log</log>
        <errorlog>{dir}/clickhouse-server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
</yandex>
"""

_CLICKHOUSE_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
"""


class ClickHouseServer(Server):
    name = "clickhouse"

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        log_path: Path,
        *,
        http_port: int,
        tcp_port: int,
    ) -> None:
        super().__init__(process, data_dir, log_path)
        self.http_port = http_port
        self.tcp_port = tcp_port
        self.extra_logs = [data_dir / "clickhouse-server.err.log"]

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def query(self, sql: str) -> str:
        """Run ``sql`` over the HTTP interface; the response body (TabSeparated)."""
        response = requests.post(self.http_url + "/", data=sql.encode(), timeout=10)
        if response.status_code != 200:
            raise AssertionError(f"ClickHouse {response.status_code}: {response.text.strip()}")
        return response.text


def start_clickhouse() -> ClickHouseServer:
    binary = require_binary("clickhouse-server", "clickhouse-server")

    def attempt(data_dir: Path) -> ClickHouseServer:
        http_port, tcp_port = free_port(), free_port()
        while tcp_port == http_port:
            tcp_port = free_port()
        config = data_dir / "config.xml"
        config.write_text(
            _CLICKHOUSE_CONFIG.format(dir=data_dir, http_port=http_port, tcp_port=tcp_port)
        )
        (data_dir / "users.xml").write_text(_CLICKHOUSE_USERS)
        process, log_path = spawn([binary, f"--config-file={config}"], data_dir)
        server = ClickHouseServer(
            process, data_dir, log_path, http_port=http_port, tcp_port=tcp_port
        )
        ping = _http_ok(f"http://{HOST}:{http_port}/ping", b"Ok.\n")

        def ready() -> bool:
            if not ping():
                return False
            wait_for_port(HOST, tcp_port, timeout=0)
            return True

        return launch(server, ready)

    return start_in_temp_dir("clickhouse", attempt)


# -- Prometheus: the launcher of soak run (soakwatch.run.prometheus) --------------------------
class PrometheusServer(prometheus.PrometheusServer, _PromQLMixin):
    """``soakwatch.run.prometheus.PrometheusServer`` with PromQL helpers for the tests."""


def start_prometheus(
    scrape_targets: Sequence[str] | None = None,
    rule_files: Sequence[str | os.PathLike[str]] | None = None,
    alertmanager_urls: Sequence[str] | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    extra_scrape_configs: Sequence[dict[str, Any]] | None = None,
    *,
    scrape_self: bool = False,
    extra_args: Sequence[str] = (),
) -> PrometheusServer:
    """Prometheus with a generated config; ``scrape_self`` adds a job "prometheus" for itself.
    Skips/fails the test without the prometheus binary."""
    require_binary("prometheus", "prometheus")

    def config(port: int) -> dict[str, Any]:
        extra = list(extra_scrape_configs or [])
        if scrape_self:
            extra.append(
                {"job_name": "prometheus", "static_configs": [{"targets": [f"{HOST}:{port}"]}]}
            )
        return prometheus_config(
            scrape_targets,
            rule_files,
            alertmanager_urls,
            scrape_interval,
            evaluation_interval,
            extra,
        )

    return prometheus.start_prometheus(
        config,
        extra_args=[
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            # Alerts reach the Alertmanager within a second instead of a minute.
            "--rules.alert.resend-delay=1s",
            *extra_args,
        ],
        server_class=PrometheusServer,
    )


def start_prometheus_on_tsdb(home: Path, storage_path: Path) -> PrometheusServer:
    """A Prometheus serving the blocks in ``storage_path`` (made by promtool; nothing scraped,
    kept for 100 years), its config and log in ``home``, which stays after stop."""
    require_binary("prometheus", "prometheus")
    return prometheus.start_prometheus(
        {"global": {"scrape_interval": "15s"}},
        home=home,
        storage_path=storage_path,
        retention="100y",
        server_class=PrometheusServer,
    )


# -- Alertmanager -----------------------------------------------------------------------------
class AlertmanagerServer(SinglePortServer):
    name = "alertmanager"

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        log_path: Path,
        *,
        port: int,
        config_path: Path,
    ) -> None:
        super().__init__(process, data_dir, log_path, port=port)
        self.config_path = config_path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts it holds now (``GET /api/v2/alerts``)."""
        response = requests.get(f"{self.url}/api/v2/alerts", timeout=10)
        response.raise_for_status()
        return list(response.json())


def start_alertmanager(config_text: str) -> AlertmanagerServer:
    binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager")

    def attempt(data_dir: Path) -> AlertmanagerServer:
        port = free_port()
        config_path = data_dir / "alertmanager.yml"
        config_path.write_text(config_text)
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.path={data_dir / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            # Empty disables clustering: no gossip port to collide on, ready at once.
            "--cluster.listen-address=",
            "--log.level=warn",
        ]
        process, log_path = spawn(argv, data_dir)
        server = AlertmanagerServer(process, data_dir, log_path, port=port, config_path=config_path)
        return launch(server, _http_ok(f"http://{HOST}:{port}/-/ready"))

    return start_in_temp_dir("alertmanager", attempt)


# -- VictoriaMetrics --------------------------------------------------------------------------
class VictoriaMetricsServer(_PromQLMixin, SinglePortServer):
    name = "victoriametrics"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def import_prometheus_text(self, text: str) -> None:
        """Ingest Prometheus exposition text (``/api/v1/import/prometheus``; samples without a
        timestamp get "now") and make it searchable at once."""
        response = requests.post(
            f"{self.url}/api/v1/import/prometheus", data=text.encode(), timeout=10
        )
        if response.status_code not in (200, 204):
            raise AssertionError(f"import failed: {response.status_code} {response.text}")
        self.flush()

    def flush(self) -> None:
        """Make recently ingested samples visible to queries now (``/internal/force_flush``)."""
        requests.get(f"{self.url}/internal/force_flush", timeout=10).raise_for_status()


def start_victoriametrics() -> VictoriaMetricsServer:
    binary = require_binary("victoria-metrics", "victoria-metrics")

    def attempt(data_dir: Path) -> VictoriaMetricsServer:
        port = free_port()
        argv = [
            binary,
            f"-httpListenAddr={HOST}:{port}",
            f"-storageDataPath={data_dir / 'data'}",
            # Tests ingest and query within a second: no 30 s visibility delay, no stale cache.
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-retentionPeriod=100y",
            "-loggerLevel=WARN",
        ]
        process, log_path = spawn(argv, data_dir)
        server = VictoriaMetricsServer(process, data_dir, log_path, port=port)
        return launch(server, _http_ok(f"http://{HOST}:{port}/health"))

    return start_in_temp_dir("victoriametrics", attempt)
