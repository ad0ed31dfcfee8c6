"""The probe kind table and the config border for one probe.

Adding a protocol = one module with ``check_target``, a settings dataclass with
``from_section`` and ``async def probe(target, settings, log) -> bool``, plus one row here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from soakwatch.configfile import redact_url
from soakwatch.exporter.probes import clickhouse, http, postgres, redis, tcp
from soakwatch.exporter.probes.spec import ProbeKind, ProbeSpec

if TYPE_CHECKING:
    from soakwatch.configfile import Section

__all__ = ["DEFAULT_INTERVAL_SECONDS", "DEFAULT_TIMEOUT_SECONDS", "KINDS", "parse_probe"]

DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_INTERVAL_SECONDS = 15.0

KINDS: dict[str, ProbeKind] = {
    "http": ProbeKind(http.check_target, http.HttpProbe.from_section, http.probe),
    "tcp": ProbeKind(tcp.check_target, tcp.TcpProbe.from_section, tcp.probe),
    "redis": ProbeKind(redis.check_target, redis.RedisProbe.from_section, redis.probe),
    "postgres": ProbeKind(
        postgres.check_target, postgres.PostgresProbe.from_section, postgres.probe
    ),
    "clickhouse": ProbeKind(
        clickhouse.check_target, clickhouse.ClickHouseProbe.from_section, clickhouse.probe
    ),
}


def parse_probe(section: Section) -> ProbeSpec:
    """One item of a service's ``probes:`` list -> a validated ``ProbeSpec``.

    Keys: ``name``, ``kind`` (one of ``KINDS``), ``target``, ``timeout`` (default 5s),
    ``interval`` (default 15s), then the kind's own keys. Unknown keys are errors."""
    name = section.string("name")
    if not name.strip():
        raise section.error("name", "must not be empty")
    kind_name = section.string("kind", choices=tuple(KINDS))
    kind = KINDS[kind_name]
    target = section.convert("target", lambda value: _check_target(kind, value))
    timeout = section.duration("timeout", DEFAULT_TIMEOUT_SECONDS)
    interval = section.duration("interval", DEFAULT_INTERVAL_SECONDS)
    if timeout > interval:
        raise section.error(
            "timeout", f"must not exceed the interval ({interval:g}s), got {timeout:g}s"
        )
    settings = kind.parse_settings(section)
    section.finish()
    return ProbeSpec(
        name=name,
        kind=kind_name,
        target=target,
        timeout_seconds=timeout,
        interval_seconds=interval,
        settings=settings,
    )


def _check_target(kind: ProbeKind, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    try:
        return kind.check_target(value)
    except ValueError as exc:
        # The reason may quote the target; a target may hold a password.
        shown = redact_url(value) if "://" in value else ("<target>" if "@" in value else value)
        raise ValueError(str(exc).replace(value, shown)) from None
