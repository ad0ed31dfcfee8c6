"""What every probe kind shares: the parsed probe (`ProbeSpec`), the kind entry of the table
(`ProbeKind`), the logger type a probe receives, and the ``host:port`` target parser."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

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
    """``"host:port"``, ``"[::1]:port"`` (or a bare host with ``default_port``) -> (host, port).
    Raises ValueError with a reason."""
    text = target.strip()
    if not text:
        raise ValueError("expected host:port, got an empty string")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [ipv6]:port, got {target!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif ":" in text:
        raise ValueError(f"an IPv6 address needs brackets, as in [::1]:6379, got {target!r}")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"expected host:port, got {target!r}")
    if not port_text:
        if default_port is None:
            raise ValueError(f"expected host:port (the port is missing), got {target!r}")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port must be a number from 1 to 65535, got {port_text!r}")
    return host, int(port_text)
