"""``soak run --demo``: from nothing to two verdicts and a report in about three minutes.

Starts Redis and PostgreSQL on free ports in temporary directories (``soakwatch.run.localservers``,
the code the tests start them with; PostgreSQL as an unprivileged user when run as root, as it
demands), two instances of the sample service (``examples/sample_service``: one healthy, one
leaking), fills their addresses into ``examples/demo.yaml`` and runs it as an ordinary soak
with the demo profile. Everything it started is stopped by PID at the end, also after Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import shutil
import string
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from soakwatch import console
from soakwatch.errors import SoakwatchError
from soakwatch.profiles import resolve_profile
from soakwatch.run.children import ChildProcess
from soakwatch.run.config import parse_run_config
from soakwatch.run.localservers import PostgresServer, RedisServer, start_postgres, start_redis

__all__ = ["DEMO_LEAK_BYTES_PER_SECOND", "checkout_root", "run_demo", "service_verdicts"]

DEMO_LEAK_BYTES_PER_SECOND = 256_000  # about 920 MB/h: steep enough to judge in minutes
START_TIMEOUT_SECONDS = 60.0


class DemoError(SoakwatchError):
    """The demo runs only from the source checkout (missing servers raise
    ``soakwatch.run.localservers.MissingBinaryError``)."""


def checkout_root() -> Path:
    """The source checkout holding ``examples/`` (the demo runs from a checkout)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "examples" / "sample_service" / "app.py").is_file():
        raise DemoError(
            "the demo needs the soakwatch source checkout (examples/sample_service); "
            "run it with ./dev.sh demo from the repository"
        )
    return root


def _start_sample(
    name: str,
    leak: int,
    redis: RedisServer,
    postgres: PostgresServer,
    home: Path,
    stack: ExitStack,
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
            redis.url,
            "--postgres-dsn",
            postgres.dsn,
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
        redis = stack.enter_context(start_redis())
        postgres = stack.enter_context(start_postgres(password=secrets.token_hex(8)))
        console.status("demo: starting the sample service twice (healthy, leaking)", final=True)
        healthy, healthy_url = _start_sample("healthy", 0, redis, postgres, home, stack)
        leaky, leaky_url = _start_sample(
            "leaky", DEMO_LEAK_BYTES_PER_SECOND, redis, postgres, home, stack
        )
        yield {
            "healthy_url": healthy_url,
            "healthy_ws": healthy_url.replace("http://", "ws://", 1),
            "healthy_hostport": healthy_url.split("://", 1)[1],
            "healthy_pid": healthy.pid,
            "leaky_url": leaky_url,
            "leaky_pid": leaky.pid,
            "redis_url": redis.url,
            "redis_port": redis.port,
            "postgres_dsn": postgres.dsn,
            "postgres_port": postgres.port,
        }


def demo_config(values: dict[str, Any]) -> Any:
    """examples/demo.yaml with the demo's addresses filled in, as a RunConfig."""
    path = checkout_root() / "examples" / "demo.yaml"
    text = string.Template(path.read_text(encoding="utf-8")).substitute(values)
    return parse_run_config(yaml.safe_load(text), source=str(path), base_dir=path.parent)


def service_verdicts(verdict: dict[str, Any] | None, services: list[str]) -> dict[str, str]:
    """Per service, the worst status among the rule results about it.

    A result is about a service when its subject names the service, or names a load scenario
    of that service: the demo's scenarios end in the service they target (``http_healthy``,
    ``sessions_leaky``). Scenarios shared by both (``redis_ops``) count for the run only."""
    order = ["fail", "inconclusive", "pass", "not_applicable"]
    worst: dict[str, str] = {}
    for result in (verdict or {}).get("results", []) or []:
        labels = result.get("subject") or result.get("labels") or {}
        if not isinstance(labels, dict):
            continue
        service = labels.get("service")
        scenario = labels.get("scenario")
        if service is None and isinstance(scenario, str):
            service = scenario.rpartition("_")[2]
        status = str(result.get("status", "inconclusive"))
        if service in services and status in order:
            current = worst.get(service, "not_applicable")
            worst[service] = min(current, status, key=order.index)
    return {s: worst.get(s, "no verdict") for s in services}


def run_demo(args: argparse.Namespace, stop: threading.Event) -> int:
    """The body of ``soak run --demo``; returns 0 when the healthy service passed and the leaking
    one failed, as they should."""
    from soakwatch.run.core import RunRequest, _console_progress, execute, report

    profile = resolve_profile(args.profile or "demo")
    if args.duration:
        from soakwatch.durations import parse_duration

        profile = dataclasses.replace(profile, duration_seconds=parse_duration(args.duration))
    home = Path(tempfile.mkdtemp(prefix="soakwatch-demo-"))  # the sample services' logs
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
                    grafana_url=args.grafana_url,
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
