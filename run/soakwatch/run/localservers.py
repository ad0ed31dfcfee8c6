"""Throw-away Redis and PostgreSQL servers on 127.0.0.1, for ``soak run --demo`` and the tests.

Each server runs as a child of this process, in its own temporary directory (its output in
``<data_dir>/server.log``), on a port chosen by binding port 0, and is stopped by its PID.
If the chosen port is taken before the server binds it (another process raced us), the start
is retried with a fresh port. On Linux the children get SIGTERM when this process dies, even by
SIGKILL; the first start of a later process removes the data directories such a process left
(each is marked with its owner's PID).

The machinery (``spawn``, ``launch``, ``start_in_temp_dir``, ``Server``) is public so that
``tests/servers.py`` builds its other servers (ClickHouse, Prometheus, ...) on it.
Timing on a 2-core machine: Redis is ready in well under a second, PostgreSQL (initdb
included) in 1-2 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from soakwatch.errors import SoakwatchError
from soakwatch.run.children import ChildProcess, free_port, stop_process, wait_until

__all__ = [
    "HOST",
    "POSTGRES_BIN",
    "POSTGRES_OS_USER",
    "MissingBinaryError",
    "PortTakenError",
    "PostgresServer",
    "RedisServer",
    "Server",
    "ServerStartError",
    "SinglePortServer",
    "find_binary",
    "free_port",
    "launch",
    "spawn",
    "start_in_temp_dir",
    "start_postgres",
    "start_redis",
    "wait_for_port",
]

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
START_ATTEMPTS = 3
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
# PostgreSQL refuses to run as root; when we are root, its files belong to this user.
POSTGRES_OS_USER = "nobody"
# Marks a data dir with the PID of the process that made it (name kept from the test servers,
# so that directories left by older sessions are swept too).
_OWNER_FILE = ".soakwatch-test-owner"

ServerT = TypeVar("ServerT", bound="Server")


class ServerStartError(SoakwatchError, RuntimeError):
    """A server did not become ready; the message carries the tail of its log."""


class PortTakenError(ServerStartError):
    """The server exited while starting because its port was taken: worth another attempt."""


class MissingBinaryError(ServerStartError):
    """The server's program is not installed; ``package`` is the Debian package that has it."""

    def __init__(self, path: str | Path, package: str) -> None:
        self.path = str(path)
        self.package = package
        super().__init__(
            f"{path} not found: install the Debian package {package!r} (./dev.sh setup)"
        )


# -- small helpers ----------------------------------------------------------------------------
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


def find_binary(path: str | Path, package: str) -> str:
    """The full path of ``path`` (a name on PATH or an absolute path); MissingBinaryError
    naming the Debian ``package`` when it is not there."""
    found = shutil.which(str(path))
    if found is None:
        raise MissingBinaryError(path, package)
    return found


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


# -- a started server -------------------------------------------------------------------------
class Server:
    """A started server: its process, data directory and log. ``stop()`` is idempotent."""

    name = "server"
    stop_signal: int = signal.SIGTERM

    def __init__(self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path) -> None:
        self.process = process
        self.data_dir = data_dir
        self.log_path = log_path
        self.host = HOST
        self.extra_logs: list[Path] = []
        # False for a server whose data outlives it (the Prometheus of a run, in its run dir)
        self.remove_data_dir = True

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server's log files, each under a header."""
        return _log_tail([self.log_path, *self.extra_logs], lines)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Signal the process by PID, wait, SIGKILL after ``timeout`` s; remove the data dir
        (unless ``remove_data_dir`` is False)."""
        stop_process(self.process, self.stop_signal, timeout, self.name)
        if self.remove_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self: ServerT) -> ServerT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} dir={self.data_dir}>"


class SinglePortServer(Server):
    """A server listening on one TCP port of ``host``: ``.port``."""

    def __init__(
        self, process: subprocess.Popen[bytes], data_dir: Path, log_path: Path, *, port: int
    ) -> None:
        super().__init__(process, data_dir, log_path)
        self.port = port


# -- starting one -----------------------------------------------------------------------------
def spawn(
    argv: Sequence[str],
    data_dir: Path,
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``argv`` in ``data_dir`` with its output in ``log_path`` (default
    ``data_dir/server.log``; its own session, dies with this process, runs as ``user`` if
    given); the process and the log."""
    log_path = log_path or data_dir / "server.log"
    child = ChildProcess(Path(argv[0]).name, argv, log_path, env=env, cwd=data_dir, user=user)
    return child.process, log_path


def _wait_ready(
    server: Server, ready: Callable[[], bool], timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Poll ``ready()`` (an exception or False means "not yet") with ``wait_until``; raise
    ServerStartError with the log's tail, PortTakenError when the server exited because its
    port was taken."""
    try:
        wait_until(ready, timeout=timeout, what=server.name, alive=server.running)
    except RuntimeError as exc:
        tail = server.log_tail()
        if server.running():
            raise ServerStartError(f"{exc}\n{tail}") from None
        # Another process bound the port between free_port() and the server's bind.
        kind = PortTakenError if "address already in use" in tail.lower() else ServerStartError
        raise kind(
            f"{server.name} exited with code {server.process.returncode} before it was "
            f"ready\n{tail}"
        ) from None


def launch(server: ServerT, ready: Callable[[], bool]) -> ServerT:
    """Wait until ``ready()`` holds for the just-spawned ``server`` and return it; on failure
    stop it and raise ServerStartError (PortTakenError when its port was taken)."""
    try:
        _wait_ready(server, ready)
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


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
    """Once per process: remove the data dirs of processes that were killed (their servers
    died with them). Only dirs carrying our owner file are touched."""
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


def start_in_temp_dir(
    name: str, attempt: Callable[[Path], ServerT], *, owner: str | None = None
) -> ServerT:
    """Run ``attempt(data_dir)`` in a fresh temporary directory (given to the OS user ``owner``
    if set), retrying with a new directory when it raises PortTakenError. Any other failure is
    raised at once, the directory removed."""
    _sweep_stale_dirs()
    last_error = ""
    for _ in range(START_ATTEMPTS):
        # Directly in the system temp dir: PostgreSQL's user must be able to reach it.
        data_dir = Path(tempfile.mkdtemp(prefix=f"soakwatch-{name}-"))
        (data_dir / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        if owner is not None:
            _chown(data_dir, owner)
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


def _chown(path: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


# -- Redis ------------------------------------------------------------------------------------
class RedisServer(SinglePortServer):
    """redis-server without persistence; ``.port``, ``.url``, ``.password`` (None: no AUTH)."""

    name = "redis"
    password: str | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``redis://:PASSWORD@...`` with a password)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"


def start_redis(*, password: str | None = None) -> RedisServer:
    """A Redis ready to answer PING (with ``requirepass password`` if given: it then answers
    only after AUTH); MissingBinaryError without redis-server."""
    binary = find_binary("redis-server", "redis-server")

    def attempt(data_dir: Path) -> RedisServer:
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", HOST, "--dir", str(data_dir)]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        if password is not None:
            # From a config file, not argv: a password on a command line is public (ps)
            conf = data_dir / "redis.conf"
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as out:
                out.write(f'requirepass "{password}"\n')
            argv.insert(1, str(conf))
        process, log_path = spawn(argv, data_dir)
        server = RedisServer(process, data_dir, log_path, port=port)
        server.password = password

        def ready() -> bool:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                if password is not None:
                    sock.sendall(f"AUTH {password}\r\n".encode())
                    if not sock.recv(16).startswith(b"+OK"):
                        return False
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        return launch(server, ready)

    return start_in_temp_dir("redis", attempt)


# -- PostgreSQL -------------------------------------------------------------------------------
class PostgresServer(SinglePortServer):
    """PostgreSQL 15 with a superuser ``soak`` (password auth over TCP) and a database
    ``soak``; ``.port``, ``.user``, ``.password``, ``.dbname``, ``.dsn``."""

    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") waits for every client to leave.
    stop_signal = signal.SIGINT
    user = "soak"
    password = "soak-secret"
    dbname = "soak"

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        log_path: Path,
        *,
        port: int,
        password: str | None = None,
    ) -> None:
        super().__init__(process, data_dir, log_path, port=port)
        if password is not None:
            self.password = password

    @property
    def dsn(self) -> str:
        """``postgresql://soak:PASSWORD@127.0.0.1:PORT/soak`` for psycopg 3, asyncpg, SQLAlchemy
        (with the ``postgresql+psycopg://`` prefix)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"


def start_postgres(*, password: str = PostgresServer.password) -> PostgresServer:
    """A PostgreSQL accepting ``password`` for user ``soak``, its database ``soak`` created;
    run as POSTGRES_OS_USER when we are root. MissingBinaryError without PostgreSQL 15."""
    initdb = find_binary(POSTGRES_BIN / "initdb", "postgresql-15")
    postgres = find_binary(POSTGRES_BIN / "postgres", "postgresql-15")
    run_as = POSTGRES_OS_USER if os.geteuid() == 0 else None
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}

    def attempt(data_dir: Path) -> PostgresServer:
        pgdata = data_dir / "pgdata"
        pwfile = data_dir / "pwfile"
        pwfile.write_text(password + "\n")
        if run_as is not None:
            _chown(pwfile, run_as)
        initdb_argv = [initdb, "-D", str(pgdata), "-U", PostgresServer.user, f"--pwfile={pwfile}"]
        initdb_argv += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"]
        initdb_argv += ["--encoding=UTF8", "--no-instructions"]
        init = ChildProcess(
            "initdb", initdb_argv, data_dir / "initdb.log", env=env, cwd=data_dir, user=run_as
        )
        try:
            code = init.process.wait(120)
        except subprocess.TimeoutExpired:
            init.stop(timeout=5)
            raise ServerStartError(f"initdb did not finish in 120s:\n{init.log_tail()}") from None
        if code != 0:
            raise ServerStartError(f"initdb failed ({code}):\n{init.log_text()[-3000:]}")
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
        process, log_path = spawn(argv, data_dir, user=run_as, env=env)
        server = PostgresServer(process, data_dir, log_path, port=port, password=password)

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

        return launch(server, ready)

    return start_in_temp_dir("postgres", attempt, owner=run_as)
