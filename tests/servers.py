"""Real servers for the tests: started on 127.0.0.1 at free ports, each in its own temporary
directory, stopped by PID.

Every server runs as a child of the test process with its output in ``<data_dir>/server.log``.
Ports come from binding port 0; if the chosen port is taken before the server binds it (another
test session raced us), the start is retried with fresh ports. On Linux the children get
PR_SET_PDEATHSIG, so a killed test session does not leave servers behind, and the next
session's first start removes the data dirs such a session left (marked with its PID).

A missing binary skips the test with the Debian package to install, or fails it when the
environment variable ``CI`` is set (CI must have every server).

Timing on this project's 2-core CI machine: Redis, ClickHouse, Prometheus, Alertmanager and
VictoriaMetrics are ready in well under a second, PostgreSQL (initdb included) in 1-2 s.
Prometheus 2.42 hands targets to its scrape loop on a fixed 5 s tick, so the first scrape of a
fresh Prometheus lands about 5 s after start whatever the scrape interval: use ``wait_for``.

The fixtures in ``conftest.py`` wrap these; use the functions here directly only for a server
that a fixture does not cover (e.g. one test that must stop a server mid-way).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests
import yaml

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
    "start_redis",
    "start_victoriametrics",
    "wait_for_port",
]

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
START_ATTEMPTS = 3
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
# PostgreSQL refuses to run as root; the tests do, so its files belong to this user.
POSTGRES_OS_USER = "nobody"


ServerT = TypeVar("ServerT", bound="Server")


class ServerStartError(RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


class PortTakenError(ServerStartError):
    """The server exited while starting because its port was taken: worth another attempt."""


# -- small public helpers ---------------------------------------------------------------------
def free_port(host: str = HOST) -> int:
    """A TCP port that was free a moment ago (bind to port 0). Racy by nature: callers retry."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Return once ``host:port`` accepts a TCP connection; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{host}:{port} did not accept connections in {timeout}s"
                ) from None
            time.sleep(0.05)


def require_binary(path: str | Path, package: str) -> str:
    """The full path of ``path`` (a name on PATH or an absolute path), or skip/fail the test."""
    found = shutil.which(str(path))
    if found:
        return found
    reason = f"{path} not found: install the Debian package {package!r} (./dev.sh setup)"
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


# -- the process wrapper ----------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the test process dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _as_user(user: str) -> Callable[[], None]:
    entry = pwd.getpwnam(user)

    def preexec() -> None:
        # Credentials first: changing the user clears the parent-death signal.
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        _die_with_parent()

    return preexec


def _log_tail(paths: Sequence[Path], lines: int = 30) -> str:
    chunks = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        tail = "\n".join(text.splitlines()[-lines:])
        if tail:
            chunks.append(f"--- {path} (last {lines} lines) ---\n{tail}")
    return "\n".join(chunks) or "(no log output)"


class Server:
    """A started server: its process, data directory and log. ``stop()`` is idempotent."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.log_path = log_path
        self.host = HOST
        self.extra_logs: list[Path] = []

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return _log_tail([self.log_path, *self.extra_logs], lines)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Signal the process by PID, wait, SIGKILL after ``timeout`` s; remove the data dir."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self: ServerT) -> ServerT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} dir={self.data_dir}>"


def _spawn(
    argv: Sequence[str],
    data_dir: Path,
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = data_dir / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            env=env,
            # Own session: a Ctrl-C in the terminal reaches pytest, which then stops us in order.
            start_new_session=True,
            preexec_fn=_as_user(user) if user else _die_with_parent,
        )
    return process, log_path


def _wait_ready(
    server: Server, ready: Callable[[], bool], timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Poll ``ready()`` (an exception or False means "not yet") with short, growing sleeps."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last_error = ""
    while True:
        if not server.running():
            tail = server.log_tail()
            # Another process bound the port between free_port() and the server's bind.
            kind = PortTakenError if "address already in use" in tail.lower() else ServerStartError
            raise kind(
                f"{server.name} exited with code {server.process.returncode} before it was "
                f"ready\n{tail}"
            )
        try:
            if ready():
                return
        except Exception as exc:  # not up yet: connection refused, 503, "starting up", ...
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"{server.name} not ready after {timeout:.0f}s "
                f"(last check: {last_error or 'not ready'})\n{server.log_tail()}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def _http_ok(url: str, body: bytes | None = None) -> Callable[[], bool]:
    def check() -> bool:
        response = requests.get(url, timeout=2)
        # Compare bytes: without a charset header requests guesses the encoding of .text.
        return response.status_code == 200 and (body is None or response.content == body)

    return check


_OWNER_FILE = ".soakwatch-test-owner"
_swept = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_dirs() -> None:
    """Once per process: remove the data dirs of test sessions that were killed (their servers
    died with them, see _die_with_parent). Only dirs carrying our owner file are touched."""
    global _swept
    if _swept:
        return
    _swept = True
    for marker in Path(tempfile.gettempdir()).glob(f"soakwatch-*/{_OWNER_FILE}"):
        try:
            owner = int(marker.read_text().strip())
        except (OSError, ValueError):
            continue
        if not _pid_alive(owner):
            shutil.rmtree(marker.parent, ignore_errors=True)


def _start_with_retries(
    name: str, attempt: Callable[[Path], ServerT], *, owner: str | None = None
) -> ServerT:
    """Run ``attempt(data_dir)`` in a fresh temporary directory, retrying with new ports when the
    server exits because its port was taken between choosing and binding it (another session).
    Any other failure is raised at once with the log tail."""
    _sweep_stale_dirs()
    last_error = ""
    for _ in range(START_ATTEMPTS):
        # Directly in the system temp dir, not under pytest's 0700 tree: PostgreSQL's user
        # must be able to reach it.
        data_dir = Path(tempfile.mkdtemp(prefix=f"soakwatch-{name}-"))
        (data_dir / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(data_dir, entry.pw_uid, entry.pw_gid)
        try:
            return attempt(data_dir)
        except PortTakenError as exc:
            last_error = str(exc)
            shutil.rmtree(data_dir, ignore_errors=True)
        except BaseException:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise
    raise ServerStartError(
        f"{name} failed to start {START_ATTEMPTS} times; last error:\n{last_error}"
    )


def _launch(server: ServerT, ready: Callable[[], bool]) -> ServerT:
    try:
        _wait_ready(server, ready)
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


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


# -- Redis ------------------------------------------------------------------------------------
class RedisServer(Server):
    name = "redis"

    def __init__(
        self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path, *, port: int
    ) -> None:
        super().__init__(process, data_dir, log_path)
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def start_redis() -> RedisServer:
    binary = require_binary("redis-server", "redis-server")

    def attempt(data_dir: Path) -> RedisServer:
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", HOST, "--dir", str(data_dir)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        process, log_path = _spawn(argv, data_dir)
        server = RedisServer(process, data_dir, log_path, port=port)

        def ready() -> bool:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        return _launch(server, ready)

    return _start_with_retries("redis", attempt)


# -- PostgreSQL -------------------------------------------------------------------------------
class PostgresServer(Server):
    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client to leave.
    stop_signal = signal.SIGINT
    user = "soak"
    password = "soak-secret"
    dbname = "soak"

    def __init__(
        self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path, *, port: int
    ) -> None:
        super().__init__(process, data_dir, log_path)
        self.port = port

    @property
    def dsn(self) -> str:
        """``postgresql://soak:soak-secret@127.0.0.1:PORT/soak`` for psycopg 3, asyncpg, SQLAlchemy
        (with the ``postgresql+psycopg://`` prefix)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"


def start_postgres() -> PostgresServer:
    initdb = require_binary(POSTGRES_BIN / "initdb", "postgresql-15")
    postgres = require_binary(POSTGRES_BIN / "postgres", "postgresql-15")
    run_as = POSTGRES_OS_USER if os.geteuid() == 0 else None
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}

    def attempt(data_dir: Path) -> PostgresServer:
        pgdata = data_dir / "pgdata"
        pwfile = data_dir / "pwfile"
        pwfile.write_text(PostgresServer.password + "\n")
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        initdb_argv = [initdb, "-D", str(pgdata), "-U", PostgresServer.user, f"--pwfile={pwfile}"]
        initdb_argv += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
        initdb_argv += ["--encoding=UTF8", "--no-instructions"]
        init = subprocess.run(
            initdb_argv,
            cwd=data_dir,
            env=env,
            capture_output=True,
            preexec_fn=_as_user(run_as) if run_as else None,
            timeout=120,
        )
        if init.returncode != 0:
            output = (init.stdout + init.stderr).decode(errors="replace")
            raise ServerStartError(f"initdb failed ({init.returncode}):\n{output[-3000:]}")
        port = free_port()
        argv = [postgres, "-D", str(pgdata), "-p", str(port), "-h", HOST, "-k", str(data_dir)]
        for setting in (
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "shared_buffers=16MB",
            "max_connections=100",
        ):
            argv += ["-c", setting]
        process, log_path = _spawn(argv, data_dir, user=run_as, env=env)
        server = PostgresServer(process, data_dir, log_path, port=port)

        def ready() -> bool:
            import psycopg

            with psycopg.connect(
                host=HOST,
                port=port,
                user=server.user,
                password=server.password,
                dbname="postgres",
                connect_timeout=2,
                autocommit=True,
            ) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (server.dbname,)
                ).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{server.dbname}"')
            return True

        return _launch(server, ready)

    return _start_with_retries("postgres", attempt, owner=run_as)


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
        process, log_path = _spawn([binary, f"--config-file={config}"], data_dir)
        server = ClickHouseServer(
            process, data_dir, log_path, http_port=http_port, tcp_port=tcp_port
        )
        ping = _http_ok(f"http://{HOST}:{http_port}/ping", b"Ok.\n")

        def ready() -> bool:
            if not ping():
                return False
            wait_for_port(HOST, tcp_port, timeout=0)
            return True

        return _launch(server, ready)

    return _start_with_retries("clickhouse", attempt)


# -- Prometheus -------------------------------------------------------------------------------
class PrometheusServer(_PromQLMixin, Server):
    name = "prometheus"

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        log_path: Path,
        *,
        port: int,
        config_path: Path,
        storage_path: Path,
    ) -> None:
        super().__init__(process, data_dir, log_path)
        self.port = port
        self.config_path = config_path
        self.storage_path = storage_path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reload(self, config_text: str | None = None) -> None:
        """Re-read the config and the rule files (optionally writing a new config first)."""
        if config_text is not None:
            self.config_path.write_text(config_text)
        response = requests.post(f"{self.url}/-/reload", timeout=30)
        if response.status_code != 200:
            raise AssertionError(f"reload failed: {response.status_code} {response.text}")


def prometheus_config(
    scrape_targets: Sequence[str] | None = None,
    rule_files: Sequence[str | os.PathLike[str]] | None = None,
    alertmanager_urls: Sequence[str] | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    extra_scrape_configs: Sequence[dict[str, Any]] | None = None,
    *,
    job_name: str = "soak",
) -> dict[str, Any]:
    """The prometheus.yml the factory writes: ``scrape_targets`` ("host:port" or a URL with a
    metrics path) in one job, rule files by absolute path, Alertmanagers by URL."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [],
    }
    by_path: dict[tuple[str, str], list[str]] = {}
    for target in scrape_targets or []:
        if "://" in target:
            parts = urlsplit(target)
            key = (parts.scheme, parts.path or "/metrics")
            by_path.setdefault(key, []).append(parts.netloc)
        else:
            by_path.setdefault(("http", "/metrics"), []).append(target)
    for index, ((scheme, path), targets) in enumerate(by_path.items()):
        config["scrape_configs"].append(
            {
                "job_name": job_name if index == 0 else f"{job_name}-{index}",
                "scheme": scheme,
                "metrics_path": path,
                "static_configs": [{"targets": targets}],
            }
        )
    config["scrape_configs"].extend(extra_scrape_configs or [])
    if rule_files:
        config["rule_files"] = [str(Path(path).resolve()) for path in rule_files]
    if alertmanager_urls:
        alertmanagers = []
        for url in alertmanager_urls:
            parts = urlsplit(url)
            entry: dict[str, Any] = {
                "scheme": parts.scheme or "http",
                "static_configs": [{"targets": [parts.netloc]}],
            }
            if parts.path.strip("/"):
                entry["path_prefix"] = parts.path
            alertmanagers.append(entry)
        config["alerting"] = {"alertmanagers": alertmanagers}
    return config


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
    """Prometheus with a generated config; ``scrape_self`` adds a job "prometheus" for itself."""
    binary = require_binary("prometheus", "prometheus")

    def attempt(data_dir: Path) -> PrometheusServer:
        port = free_port()
        extra = list(extra_scrape_configs or [])
        if scrape_self:
            extra.append(
                {"job_name": "prometheus", "static_configs": [{"targets": [f"{HOST}:{port}"]}]}
            )
        config = prometheus_config(
            scrape_targets,
            rule_files,
            alertmanager_urls,
            scrape_interval,
            evaluation_interval,
            extra,
        )
        config_path = data_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        storage_path = data_dir / "tsdb"
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={storage_path}",
            f"--web.listen-address={HOST}:{port}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            # Alerts reach the Alertmanager within a second instead of a minute.
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
            *extra_args,
        ]
        process, log_path = _spawn(argv, data_dir)
        server = PrometheusServer(
            process,
            data_dir,
            log_path,
            port=port,
            config_path=config_path,
            storage_path=storage_path,
        )
        return _launch(server, _http_ok(f"http://{HOST}:{port}/-/ready"))

    return _start_with_retries("prometheus", attempt)


# -- Alertmanager -----------------------------------------------------------------------------
class AlertmanagerServer(Server):
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
        super().__init__(process, data_dir, log_path)
        self.port = port
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
        process, log_path = _spawn(argv, data_dir)
        server = AlertmanagerServer(process, data_dir, log_path, port=port, config_path=config_path)
        return _launch(server, _http_ok(f"http://{HOST}:{port}/-/ready"))

    return _start_with_retries("alertmanager", attempt)


# -- VictoriaMetrics --------------------------------------------------------------------------
class VictoriaMetricsServer(_PromQLMixin, Server):
    name = "victoriametrics"

    def __init__(
        self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path, *, port: int
    ) -> None:
        super().__init__(process, data_dir, log_path)
        self.port = port

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
        process, log_path = _spawn(argv, data_dir)
        server = VictoriaMetricsServer(process, data_dir, log_path, port=port)
        return _launch(server, _http_ok(f"http://{HOST}:{port}/health"))

    return _start_with_retries("victoriametrics", attempt)
