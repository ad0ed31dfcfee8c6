"""ClickHouse probe: ``GET /ping`` on the HTTP interface must answer 200 with ``Ok.``.

``/ping`` needs no credentials and works on every ClickHouse line, Debian's 18.16 included."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from soakwatch.addresses import parse_address
from soakwatch.configfile import check_url
from soakwatch.exporter.probes.http import fetch
from soakwatch.exporter.probes.spec import split_host_port

if TYPE_CHECKING:
    from soakwatch.configfile import Section
    from soakwatch.exporter.probes.spec import ProbeLog

__all__ = ["ClickHouseProbe", "check_target", "ping_url", "probe"]


@dataclass(frozen=True)
class ClickHouseProbe:
    """Keys of a ``clickhouse`` probe."""

    tls_verify: bool = True

    @classmethod
    def from_section(cls, section: Section) -> ClickHouseProbe:
        return cls(tls_verify=section.boolean("tls_verify", True))


def ping_url(target: str) -> str:
    """``host:port`` (the HTTP port, default 8123) or ``http(s)://host:port[/base]`` -> the
    /ping URL."""
    if "://" not in target:
        return f"http://{parse_address(target, default_port=8123)}/ping"  # IPv6 in brackets
    return target.rstrip("/") + "/ping"


def check_target(target: str) -> str:
    if "://" in target:
        check_url(target, schemes=("http", "https"), fail=ValueError)
    else:
        split_host_port(target, default_port=8123)
    return target


async def probe(target: str, settings: ClickHouseProbe, log: ProbeLog) -> bool:
    try:
        response = await fetch(ping_url(target), tls_verify=settings.tls_verify)
    except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
        log.warning("clickhouse probe failed: %s", exc, extra={"error": str(exc)})
        return False
    if response.status != 200 or response.body.strip() != b"Ok.":
        log.warning(
            "clickhouse probe failed: /ping answered %d %r",
            response.status,
            response.body[:60].decode("utf-8", errors="replace"),
            extra={"status": response.status},
        )
        return False
    return True
