"""What every probe kind shares: the parsed probe (`ProbeSpec`), the kind entry of the table
(`ProbeKind`), the logger type a probe receives, and the ``host:port`` target parser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from soakwatch.addresses import parse_address
from soakwatch.configfile import redact_url

if TYPE_CHECKING:
    import logging
    from typing import TypeAlias

    from soakwatch.configfile import Section

__all__ = ["ProbeKind", "ProbeSpec", "split_host_port"]

# A probe logs through the runner's adapter, which adds the structured fields
# ``service``, ``probe`` and ``target`` (redacted) to every record.
if TYPE_CHECKING:
    ProbeLog: TypeAlias = "logging.Logger | logging.LoggerAdapter[logging.Logger]"


@dataclass(frozen=True)
class ProbeSpec:
    """One item of a service's ``probes:`` list, validated. ``settings`` is the frozen
    dataclass of the kind (``HttpProbe``, ``RedisProbe``, …)."""

    name: str
    kind: str
    target: str
    timeout_seconds: float
    interval_seconds: float
    settings: Any

    @property
    def shown_target(self) -> str:
        """The target with any password replaced by ``***``: the only form that is logged."""
        return redact_url(self.target) if "://" in self.target else self.target

    def __repr__(self) -> str:  # a spec may hold a password: never print it
        return (
            f"ProbeSpec(name={self.name!r}, kind={self.kind!r}, target={self.shown_target!r}, "
            f"timeout_seconds={self.timeout_seconds}, interval_seconds={self.interval_seconds})"
        )


class ProbeKind(NamedTuple):
    """One row of the kind table: how to check a target and read the kind's own keys, and the
    probe function itself (``async def probe(target, settings, log) -> bool``)."""

    check_target: Callable[[str], str]  # raises ValueError with a reason
    parse_settings: Callable[[Section], Any]
    probe: Callable[[str, Any, Any], Awaitable[bool]]


def split_host_port(target: str, default_port: int | None = None) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"`` (or a bare host with ``default_port``) -> (host, port),
    by the one grammar of ``soakwatch.addresses``. Raises ValueError with a reason."""
    address = parse_address(target, default_port=default_port)
    return address.host, address.port
