"""Service availability, checked once before a soak starts (``soak run``, the pytest plugin).

A check is one probe of the exporter's probe table (``soakwatch.exporter.probes.kinds.KINDS``:
``http``, ``tcp``, ``redis``, ``postgres``, ``clickhouse``), run once with its deadline applied
the way the exporter's runner applies it (``asyncio.wait_for`` around the probe), so a service
is "up" for ``soak run`` exactly when the exporter's ``soak_probe_success`` would say 1. All
checks of a run go at once on one event loop; a hung dependency costs one timeout, not a hang.
Required services down stop the run (exit 2, each listed); optional ones down only skip the
scenarios that need them.

A DOWN reason says why, from the cause the probe logged: ``ConnectionRefusedError: ...`` for a
``tcp`` check (the connection is all it asks), ``ConnectionError: ...`` for a protocol check that
could not reach its server, ``TimeoutError: ...`` past the deadline, or what the server answered
(``PING answered '-NOAUTH ...'``). Passwords never appear in a reason."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from soakwatch.addresses import parse_address
from soakwatch.configfile import Section, check_url, redact_url
from soakwatch.errors import SoakwatchError
from soakwatch.exporter.probes.kinds import KINDS

if TYPE_CHECKING:
    from soakwatch.run.config import RunConfig

__all__ = [
    "Availability",
    "AvailabilityError",
    "ServiceCheck",
    "check_all",
    "check_availability",
    "check_service",
    "describe_down",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 3.0
MAX_REASON_CHARS = 200
# The URL schemes a check target may use, per kind (a tcp target is host:port).
_SCHEMES: Mapping[str, tuple[str, ...]] = {
    "http": ("http", "https"),
    "clickhouse": ("http", "https"),
    "redis": ("redis", "rediss"),
    "postgres": ("postgresql", "postgres"),
}
# Probe settings of a check, per kind (as a probe's keys in the exporter config): an HTTP check
# accepts any status below 400, as a health check behind a redirect answers 3xx.
_PROBE_KEYS: Mapping[str, Mapping[str, object]] = {"http": {"expect_status": ["2xx", "3xx"]}}


class AvailabilityError(SoakwatchError):
    """A required service is down before the run starts."""


@dataclass(frozen=True)
class ServiceCheck:
    """How to tell that one service is up. ``target`` is a URL, a DSN or ``host:port``."""

    name: str
    kind: str
    target: str
    required: bool = True
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def from_section(cls, section: Section) -> ServiceCheck:
        name = section.string("name")
        kind = section.string("kind", choices=tuple(KINDS))
        target = section.string("target")
        if kind == "tcp":
            section.convert("target", parse_address)
        else:
            check_url(target, schemes=_SCHEMES[kind], fail=lambda msg: section.error("target", msg))
        try:
            KINDS[kind].check_target(target)
        except ValueError as exc:
            raise section.error("target", str(exc).replace(target, _shown(target))) from None
        check = cls(
            name=name,
            kind=kind,
            target=target,
            required=section.boolean("required", True),
            timeout_seconds=section.duration("timeout", DEFAULT_TIMEOUT_SECONDS, maximum=300.0),
        )
        section.finish()
        return check

    @property
    def shown_target(self) -> str:
        """The target with any password hidden: safe for logs, reports and errors."""
        return _shown(self.target)

    @cached_property
    def probe_settings(self) -> Any:
        """The settings dataclass of this kind's probe (``HttpProbe``, ``RedisProbe``, ...)."""
        keys = dict(_PROBE_KEYS.get(self.kind, {}))
        return KINDS[self.kind].parse_settings(Section(keys, source=f"check {self.name}"))


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


def _shown(target: str) -> str:
    return redact_url(target) if "://" in target else target


class _Causes(logging.Handler):
    """Keeps the records a probe logs: its failure causes."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _probe_logger(service: ServiceCheck) -> tuple[logging.Logger, _Causes]:
    """A logger of our own per check (outside the logging tree: nothing propagates to the
    application's handlers), and the handler that keeps what the probe logs."""
    probe_log = logging.Logger(f"{__name__}.{service.name}", logging.DEBUG)
    causes = _Causes()
    probe_log.addHandler(causes)
    return probe_log, causes


def _reason(service: ServiceCheck, records: Sequence[logging.LogRecord]) -> str:
    """One line from the probe's last logged cause (see the module docstring)."""
    failures = [r for r in records if r.levelno >= logging.WARNING] or list(records)
    if not failures:
        return "down (the probe gave no reason)"
    record = failures[-1]
    args = record.args if isinstance(record.args, tuple) else ()
    error = next((arg for arg in args if isinstance(arg, OSError)), None)
    if error is not None:
        name = type(error).__name__ if service.kind == "tcp" else "ConnectionError"
        return f"{name}: {error}" if str(error) else name
    text = record.getMessage()
    prefix = f"{service.kind} probe failed: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _redacted(text: str, service: ServiceCheck) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "down"
    password = urlsplit(service.target).password if "://" in service.target else None
    if password:
        text = text.replace(password, "***")
    return text.replace(service.target, service.shown_target)[:MAX_REASON_CHARS]


async def _check(service: ServiceCheck) -> Availability:
    probe_log, causes = _probe_logger(service)
    probe = KINDS[service.kind].probe
    started = time.perf_counter()
    try:
        up = bool(
            await asyncio.wait_for(
                probe(service.target, service.probe_settings, probe_log), service.timeout_seconds
            )
        )
        reason = "ok" if up else _reason(service, causes.records)
    except asyncio.TimeoutError:
        up, reason = False, f"TimeoutError: no answer within {service.timeout_seconds:g}s"
    except Exception as exc:  # a probe's bug is a DOWN with its cause, as in the runner
        up, reason = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    took = time.perf_counter() - started
    if not up:
        reason = _redacted(reason, service)
        log.info(
            "check %s (%s %s) down: %s", service.name, service.kind, service.shown_target, reason
        )
    return Availability(service, up, reason, took)


async def _check_all(services: Sequence[ServiceCheck]) -> list[Availability]:
    return list(await asyncio.gather(*(_check(service) for service in services)))


def check_all(services: Sequence[ServiceCheck]) -> list[Availability]:
    """Check every service at once; results in the order given. Never raises for a service
    that is down. Callable from inside a running event loop too (it then uses a thread)."""
    if not services:
        return []
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_check_all(services))
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _check_all(services)).result()


def check_service(service: ServiceCheck) -> Availability:
    """Run the check of ``service``; never raises for a down service."""
    [result] = check_all([service])
    return result


def describe_down(results: Iterable[Availability]) -> str:
    """One line per service that is down: name, kind, target and the cause."""
    return "\n".join(
        f"  {r.service.name} ({r.service.kind} {r.service.shown_target}): {r.reason}"
        for r in results
        if not r.up
    )


def check_availability(
    config: RunConfig, only: tuple[str, ...] | None
) -> tuple[list[Availability], dict[str, str]]:
    """Check every service; raise AvailabilityError listing each required one that is down.
    Returns the results and the scenarios to leave out, each with its reason."""
    results = check_all(config.checks)
    required_down = [r for r in results if not r.up and r.service.required]
    if required_down:
        raise AvailabilityError(
            "required service(s) unavailable, not starting the run:\n"
            + describe_down(required_down)
        )
    down = {r.service.name: r.reason for r in results if not r.up}
    skipped: dict[str, str] = {}
    for scenario in config.scenario_names:
        if only is not None and scenario not in only:
            skipped[scenario] = "not selected"
            continue
        missing = [name for name in config.scenario_requires.get(scenario, ()) if name in down]
        if missing:
            skipped[scenario] = "; ".join(f"{name} unavailable ({down[name]})" for name in missing)
    return results, skipped
