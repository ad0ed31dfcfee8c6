"""Service availability, checked once before a soak starts (``soak run``, the pytest plugin).

Each kind of check is one function of the same shape, ``check(service) -> None`` that raises with
the cause, looked up by kind in ``CHECKS``; an unknown kind is a config error. All checks of a run
go in parallel, each bounded by its own timeout, so a hung dependency costs one timeout, not a
hang. Required services down stop the run (exit 2, each listed); optional ones down only skip the
scenarios that need them."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from soakwatch.configfile import Section, check_url, redact_url

__all__ = [
    "CHECKS",
    "Availability",
    "ServiceCheck",
    "check_all",
    "check_service",
    "describe_down",
]


@dataclass(frozen=True)
class ServiceCheck:
    """How to tell that one service is up. ``target`` is a URL, a DSN or ``host:port``."""

    name: str
    kind: str
    target: str
    required: bool = True
    timeout_seconds: float = 3.0

    @classmethod
    def from_section(cls, section: Section) -> ServiceCheck:
        name = section.string("name")
        kind = section.string("kind", choices=tuple(CHECKS))
        target = section.string("target")
        if kind == "tcp":
            section.convert("target", _host_port)
        else:
            schemes = {
                "http": ("http", "https"),
                "clickhouse": ("http", "https"),
                "redis": ("redis", "rediss", "unix"),
                "postgres": ("postgresql", "postgres"),
            }[kind]
            check_url(target, schemes=schemes, fail=lambda msg: section.error("target", msg))
        check = cls(
            name=name,
            kind=kind,
            target=target,
            required=section.boolean("required", True),
            timeout_seconds=section.duration("timeout", 3.0, maximum=300.0),
        )
        section.finish()
        return check

    @property
    def shown_target(self) -> str:
        """The target with any password hidden: safe for logs, reports and errors."""
        return redact_url(self.target) if "://" in self.target else self.target


@dataclass(frozen=True)
class Availability:
    """The outcome of one check."""

    service: ServiceCheck
    up: bool
    reason: str
    duration_seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.service.name,
            "kind": self.service.kind,
            "target": self.service.shown_target,
            "required": self.service.required,
            "up": self.up,
            "reason": self.reason,
            "duration_seconds": round(self.duration_seconds, 4),
        }


def _host_port(text: object) -> tuple[str, int]:
    if not isinstance(text, str):
        raise ValueError(f"expected host:port, got {text!r}")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def _check_tcp(service: ServiceCheck) -> None:
    host, port = _host_port(service.target)
    with socket.create_connection((host, port), timeout=service.timeout_seconds):
        pass


def _check_http(service: ServiceCheck) -> None:
    response = requests.get(service.target, timeout=service.timeout_seconds)
    if response.status_code >= 400:
        raise RuntimeError(f"HTTP {response.status_code}")


def _check_clickhouse(service: ServiceCheck) -> None:
    parts = urlsplit(service.target)
    url = service.target if parts.path.rstrip("/") else service.target.rstrip("/") + "/ping"
    response = requests.get(url, timeout=service.timeout_seconds)
    if response.status_code != 200 or not response.text.startswith("Ok."):
        raise RuntimeError(f"HTTP {response.status_code} {response.text[:40]!r} from /ping")


def _check_redis(service: ServiceCheck) -> None:
    import redis

    client = redis.Redis.from_url(
        service.target,
        socket_timeout=service.timeout_seconds,
        socket_connect_timeout=service.timeout_seconds,
    )
    try:
        if client.ping() is not True:
            raise RuntimeError("PING did not answer PONG")
    finally:
        client.close()


def _check_postgres(service: ServiceCheck) -> None:
    import psycopg

    timeout = max(1, round(service.timeout_seconds))
    with psycopg.connect(service.target, connect_timeout=timeout) as conn:
        conn.execute("SELECT 1").fetchone()


CHECKS: dict[str, Callable[[ServiceCheck], None]] = {
    "http": _check_http,
    "tcp": _check_tcp,
    "redis": _check_redis,
    "postgres": _check_postgres,
    "clickhouse": _check_clickhouse,
}


def _reason(exc: BaseException, service: ServiceCheck) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    password = urlsplit(service.target).password if "://" in service.target else None
    if password:
        text = text.replace(password, "***")
    name = type(exc).__name__
    return f"{name}: {text}"[:200] if text else name


def check_service(service: ServiceCheck) -> Availability:
    """Run the check of ``service``; never raises for a down service."""
    started = time.monotonic()
    try:
        CHECKS[service.kind](service)
    except Exception as exc:
        return Availability(service, False, _reason(exc, service), time.monotonic() - started)
    return Availability(service, True, "ok", time.monotonic() - started)


def check_all(services: Sequence[ServiceCheck]) -> list[Availability]:
    """Check every service at once; results in the order given."""
    if not services:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(services))) as pool:
        return list(pool.map(check_service, services))


def describe_down(results: Iterable[Availability]) -> str:
    """One line per service that is down: name, kind, target and the cause."""
    return "\n".join(
        f"  {r.service.name} ({r.service.kind} {r.service.shown_target}): {r.reason}"
        for r in results
        if not r.up
    )
