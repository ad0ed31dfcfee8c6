"""TCP probe: success when a connection to ``host:port`` is accepted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from soakwatch.exporter.probes.spec import split_host_port

if TYPE_CHECKING:
    from soakwatch.configfile import Section
    from soakwatch.exporter.probes.spec import ProbeLog

__all__ = ["TcpProbe", "check_target", "probe"]


@dataclass(frozen=True)
class TcpProbe:
    """A ``tcp`` probe has no keys of its own."""

    @classmethod
    def from_section(cls, section: Section) -> TcpProbe:
        return cls()


def check_target(target: str) -> str:
    split_host_port(target)
    return target


async def probe(target: str, settings: TcpProbe, log: ProbeLog) -> bool:
    host, port = split_host_port(target)
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        log.warning("tcp probe failed: %s", exc, extra={"error": str(exc)})
        return False
    writer.close()
    return True
