"""``soak run --demo``: from nothing to two verdicts and a report in about three minutes.

Starts Redis and PostgreSQL on free ports in temporary directories (PostgreSQL as an
unprivileged user when run as root, as it demands), two instances of the sample service
(``examples/sample_service``: one healthy, one leaking), fills their addresses into
``examples/demo.yaml`` and runs it as an ordinary soak with the demo profile. Everything it
started is stopped by PID at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import string
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from soakwatch import console
from soakwatch.errors import SoakwatchError
from soakwatch.profiles import resolve_profile
from soakwatch.run_config import parse_run_config
from soakwatch.run_processes import ChildProcess, free_port, wait_until

__all__ = ["DEMO_LEAK_BYTES_PER_SECOND", "checkout_root", "run_demo", "service_verdicts"]

DEMO_LEAK_BYTES_PER_SECOND = 256_000  # about 920 MB/h: steep enough to judge in minutes
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_OS_USER = "nobody"  # PostgreSQL refuses to run as root
START_TIMEOUT_SECONDS = 60.0


class DemoError(SoakwatchError):
    """Something the demo needs is missing (a binary, the source checkout)."""


def checkout_root() -> Path:
    """The source checkout holding ``examples/`` (the demo runs from a checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "examples" / "sample_service" / "app.py").is_file():
        raise DemoError(
            "the demo needs the soakwatch source checkout (examples/sample_service); "
            "run it with ./dev.sh demo from the repository"
        )
    return root


def _binary(path: str | Path, package: str) -> str:
    found = shutil.which(str(path)) or (str(path) if Path(path).is_file() else None)
    if found is None:
        raise DemoError(f"{path} not found: install the Debian package {package}")
    return found


@dataclass
class DemoServers:
    redis_port: int
    postgres_port: int
    postgres_dsn: str

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


def _start_redis(home: Path, stack: ExitStack) -> int:
    binary = _binary("redis-server", "redis-server")
    port = free_port()
    child = ChildProcess(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(home),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
        home / "redis.log",
    )
    stack.callback(child.stop)

    def ready() -> bool:
        import redis

        return bool(redis.Redis(port=port, socket_timeout=1).ping())

    wait_until(ready, timeout=START_TIMEOUT_SECONDS, what="redis-server", alive=child.running)
    return port


def _start_postgres(home: Path, stack: ExitStack) -> tuple[int, str]:
    import signal
    import subprocess

    initdb = _binary(POSTGRES_BIN / "initdb", "postgresql-15")
    postgres = _binary(POSTGRES_BIN / "postgres", "postgresql-15")
    user = POSTGRES_OS_USER if os.geteuid() == 0 else None
    password = secrets.token_hex(8)
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    pwfile = home / "pwfile"
    pwfile.write_text(password + "\n")
    if user is not None:
        os.chown(pwfile, entry.pw_uid, entry.pw_gid)
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TZ": "UTC"}
    from soakwatch.run_processes import _as_user

    init = subprocess.run(
        [
            initdb,
            "-D",
            str(home / "pgdata"),
            "-U",
            "soak",
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--encoding=UTF8",
        ],
        cwd=home,
        env=env,
        capture_output=True,
        preexec_fn=_as_user(user) if user else None,
        timeout=120,
    )
    if init.returncode != 0:
        output = (init.stdout + init.stderr).decode(errors="replace")
        raise DemoError(f"initdb failed ({init.returncode}):\n{output[-2000:]}")
    port = free_port()
    argv = [postgres, "-D", str(home / "pgdata"), "-p", str(port), "-h", "127.0.0.1"]
    argv += ["-k", str(home)]
    for setting in ("fsync=off", "synchronous_commit=off", "shared_buffers=16MB"):
        argv += ["-c", setting]
    # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
    child = ChildProcess(
        "postgres",
        argv,
        home / "postgres.log",
        env=env,
        cwd=home,
        user=user,
        stop_signal=signal.SIGINT,
    )
    stack.callback(child.stop)
    dsn = f"postgresql://soak:{password}@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    wait_until(ready, timeout=START_TIMEOUT_SECONDS, what="postgres", alive=child.running)
    return port, dsn


def _start_sample(
    name: str, leak: int, servers: DemoServers, home: Path, stack: ExitStack
) -> tuple[ChildProcess, str]:
    app = checkout_root() / "examples" / "sample_service" / "app.py"
    child = ChildProcess(
        name,
        [
            sys.executable,
            str(app),
            "--port",
            "0",
            "--name",
            name,
            "--redis-url",
            servers.redis_url,
            "--postgres-dsn",
            servers.postgres_dsn,
            "--ws-token-secret",
            secrets.token_hex(8),
            "--leak-bytes-per-second",
            str(leak),
        ],
        home / f"{name}.log",
    )
    stack.callback(child.stop)
    line = child.wait_for_line(" listening on ", START_TIMEOUT_SECONDS)
    url = line.split(" listening on ", 1)[1].split()[0]
    return child, url


@contextmanager
def demo_environment(home: Path) -> Iterator[dict[str, Any]]:
    """Start the servers and both sample services; yield the values for demo.yaml."""
    with ExitStack() as stack:
        console.status("demo: starting Redis and PostgreSQL", final=True)
        (home / "redis").mkdir()
        (home / "postgres").mkdir()
        redis_port = _start_redis(home / "redis", stack)
        postgres_port, dsn = _start_postgres(home / "postgres", stack)
        servers = DemoServers(redis_port, postgres_port, dsn)
        console.status("demo: starting the sample service twice (healthy, leaking)", final=True)
        healthy, healthy_url = _start_sample("healthy", 0, servers, home, stack)
        leaky, leaky_url = _start_sample("leaky", DEMO_LEAK_BYTES_PER_SECOND, servers, home, stack)
        yield {
            "healthy_url": healthy_url,
            "healthy_ws": healthy_url.replace("http://", "ws://", 1),
            "healthy_hostport": healthy_url.split("://", 1)[1],
            "healthy_pid": healthy.pid,
            "leaky_url": leaky_url,
            "leaky_pid": leaky.pid,
            "redis_url": servers.redis_url,
            "redis_port": redis_port,
            "postgres_dsn": dsn,
            "postgres_port": postgres_port,
        }


def demo_config(values: dict[str, Any]) -> Any:
    """examples/demo.yaml with the demo's addresses filled in, as a RunConfig."""
    path = checkout_root() / "examples" / "demo.yaml"
    text = string.Template(path.read_text(encoding="utf-8")).substitute(values)
    return parse_run_config(yaml.safe_load(text), source=str(path), base_dir=path.parent)


def service_verdicts(verdict: dict[str, Any] | None, services: list[str]) -> dict[str, str]:
    """Per service, the worst status among the rule results about it."""
    order = ["fail", "inconclusive", "pass", "not_applicable"]
    worst: dict[str, str] = {}
    for result in (verdict or {}).get("results", []) or []:
        labels = result.get("subject") or result.get("labels") or {}
        service = labels.get("service") if isinstance(labels, dict) else None
        status = str(result.get("status", "inconclusive"))
        if service in services and status in order:
            current = worst.get(service, "not_applicable")
            worst[service] = min(current, status, key=order.index)
    return {s: worst.get(s, "no verdict") for s in services}


def run_demo(args: argparse.Namespace, stop: threading.Event) -> int:
    """The body of ``soak run --demo``; returns 0 when the healthy service passed and the leaking
    one failed, as they should."""
    from soakwatch.run import RunRequest, _console_progress, execute, report

    profile = resolve_profile(args.profile or "demo")
    if args.duration:
        from soakwatch.durations import parse_duration

        profile = dataclasses.replace(profile, duration_seconds=parse_duration(args.duration))
    home = Path(tempfile.mkdtemp(prefix="soakwatch-demo-"))
    home.chmod(0o711)  # PostgreSQL's unprivileged user must reach its folder inside
    try:
        with demo_environment(home) as values:
            config = demo_config(values)
            out = Path(args.out) if args.out else None
            result = execute(
                RunRequest(
                    config=config,
                    profile=profile,
                    out_dir=out,
                    fail_fast=args.fail_fast,
                    progress=_console_progress,
                    stop_event=stop,
                )
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    report(result)
    verdicts = service_verdicts(result.verdict, ["healthy", "leaky"])
    console.out("")
    console.out(f"healthy service: {verdicts['healthy'].upper()}")
    console.out(
        f"leaking service: {verdicts['leaky'].upper()}  "
        f"(leaks {DEMO_LEAK_BYTES_PER_SECOND * 3600 / 1e6:.0f} MB/h on purpose)"
    )
    expected = verdicts == {"healthy": "pass", "leaky": "fail"}
    return 0 if expected else 1
