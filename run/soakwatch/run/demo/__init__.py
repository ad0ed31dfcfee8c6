"""``soak run --demo``: from nothing to two verdicts and a report in about three minutes.

Starts Redis and PostgreSQL on free ports in temporary directories (``soakwatch.run.localservers``,
the code the tests start them with; PostgreSQL as an unprivileged user when run as root, as it
demands), two instances of the sample service (``soakwatch.run.demo.sample_service``: one
healthy, one leaking), fills their addresses into ``demo.yaml`` and runs it as an ordinary soak
with the demo profile and ``demo-rules.yaml``. Everything it started is stopped by PID at the
end, also after Ctrl-C.

The sample service and both files are package data of this package, so the demo runs from an
installed wheel as from the checkout. What the demo needs that pip cannot bring (redis-server,
PostgreSQL 15) or that is an extra (analyzer, http, redis, postgres) is checked first, by
:func:`require_demo_tools`, before anything starts.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import string
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import yaml

from soakwatch import console
from soakwatch.extras import require_extra
from soakwatch.run.children import ChildProcess
from soakwatch.run.config import RunConfig, parse_run_config
from soakwatch.run.localservers import (
    POSTGRES_BIN,
    PostgresServer,
    RedisServer,
    find_binary,
    start_postgres,
    start_redis,
)

__all__ = [
    "DEMO_CONFIG",
    "DEMO_LEAK_BYTES_PER_SECOND",
    "DEMO_RULES",
    "DEMO_SERVICES",
    "SAMPLE_SERVICE_MODULE",
    "demo_environment",
    "demo_passed",
    "require_demo_tools",
    "sample_service_command",
    "service_verdicts",
]

DEMO_LEAK_BYTES_PER_SECOND = 256_000  # about 920 MB/h: steep enough to judge in minutes
START_TIMEOUT_SECONDS = 60.0
DEMO_CONFIG = "demo.yaml"
DEMO_RULES = "demo-rules.yaml"
DEMO_SERVICES = ("healthy", "leaky")
SAMPLE_SERVICE_MODULE = "soakwatch.run.demo.sample_service"
# What the demo runs, by extra: the analyzer for the verdict, aiohttp for the sample service and
# the HTTP/WebSocket load, redis-py and psycopg for the service's stores and the database load,
# asyncpg for the sample service's PostgreSQL pool (the demo extra brings them all).
DEMO_EXTRAS = ("analyzer", "http", "redis", "postgres", "demo")


def require_demo_tools() -> None:
    """Raise at once (exit 2, one line) when an extra or a server program the demo needs is
    missing: MissingExtraError naming the extra, MissingBinaryError naming the Debian package."""
    for extra in DEMO_EXTRAS:
        require_extra(extra)
    find_binary("redis-server", "redis-server")
    find_binary(POSTGRES_BIN / "initdb", "postgresql-15")
    find_binary(POSTGRES_BIN / "postgres", "postgresql-15")


def sample_service_command(*args: str) -> list[str]:
    """The command line that starts the sample service with this interpreter."""
    return [sys.executable, "-m", SAMPLE_SERVICE_MODULE, *args]


def _start_sample(
    name: str,
    leak: int,
    redis: RedisServer,
    postgres: PostgresServer,
    home: Path,
    stack: ExitStack,
) -> tuple[ChildProcess, str]:
    child = ChildProcess(
        name,
        sample_service_command(
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
        ),
        home / f"{name}.log",
    )
    stack.callback(child.stop)
    line = child.wait_for_line(" listening on ", START_TIMEOUT_SECONDS)
    url = line.split(" listening on ", 1)[1].split()[0]
    return child, url


def _demo_values(stack: ExitStack, home: Path) -> dict[str, Any]:
    """Start the servers and both sample services; the values for demo.yaml."""
    console.status("demo: starting Redis and PostgreSQL", final=True)
    redis = stack.enter_context(start_redis())
    postgres = stack.enter_context(start_postgres(password=secrets.token_hex(8)))
    console.status("demo: starting the sample service twice (healthy, leaking)", final=True)
    healthy, healthy_url = _start_sample("healthy", 0, redis, postgres, home, stack)
    leaky, leaky_url = _start_sample(
        "leaky", DEMO_LEAK_BYTES_PER_SECOND, redis, postgres, home, stack
    )
    return {
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


def demo_config(values: Mapping[str, Any], stack: ExitStack) -> RunConfig:
    """demo.yaml (package data) with the demo's addresses filled in, as a RunConfig whose
    rules are the packaged demo-rules.yaml (a real file while ``stack`` is open)."""
    package = files(__name__)
    config_path = stack.enter_context(as_file(package / DEMO_CONFIG))
    rules_path = stack.enter_context(as_file(package / DEMO_RULES))
    text = string.Template(config_path.read_text(encoding="utf-8")).substitute(values)
    config = parse_run_config(
        yaml.safe_load(text), source=str(config_path), base_dir=config_path.parent
    )
    return dataclasses.replace(config, rules_path=rules_path)


@contextmanager
def demo_environment() -> Iterator[RunConfig]:
    """Start everything the demo soaks; yield its RunConfig; stop it all by PID on exit."""
    home = Path(tempfile.mkdtemp(prefix="soakwatch-demo-"))  # the sample services' logs
    try:
        with ExitStack() as stack:
            values = _demo_values(stack, home)
            yield demo_config(values, stack)
    finally:
        shutil.rmtree(home, ignore_errors=True)


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


def demo_passed(verdicts: Mapping[str, str]) -> bool:
    """The demo shows what it should: the healthy service passed, the leaking one failed."""
    return dict(verdicts) == {"healthy": "pass", "leaky": "fail"}
