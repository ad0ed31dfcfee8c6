"""The one ``host:port`` grammar of soakwatch, for listen addresses and probe/check targets.

    address  = host ":" port | "[" ipv6 "]" ":" port | ":" port    (":" port: listen only)
    host     = a DNS name or an IPv4 address (an IPv6 address only in brackets)
    port     = 1..65535 (0 also, where the caller allows it: "pick a free port")

A bare IPv6 address (``::1:9102``) is refused with a hint, since its last group cannot be told
from a port; ``[zz]:9102`` is refused as not IPv6. A bare host is accepted only where the
caller gives a default port (a Redis target ``redis.local`` means port 6379).
"""

from __future__ import annotations

from soakwatch.records import Record

__all__ = ["Address", "parse_address"]


class Address(Record):
    """A host and a port; ``str()`` gives it back in the grammar above (IPv6 in brackets).
    A frozen ``Record``, not a dataclass: the sidecar exporter imports it (soakwatch.records)."""

    __slots__ = ("host", "port")
    host: str
    port: int

    def __init__(self, host: str, port: int) -> None:
        self._init(host=host, port=port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(
    text: object,
    *,
    default_port: int | None = None,
    any_host: str | None = None,
    allow_port_zero: bool = False,
) -> Address:
    """Parse ``text`` by the grammar above. ``any_host`` is the host an empty one (``":9464"``)
    stands for (None: an empty host is an error); ``default_port`` the port of a bare host
    (None: the port is required). Raises ValueError with a reason that quotes the input."""
    if not isinstance(text, str):
        raise ValueError(f"expected host:port, got {text!r}")
    value = text.strip()
    if not value:
        raise ValueError("expected host:port, got an empty string")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"expected [ipv6]:port, got {text!r}")
        import ipaddress  # only for a bracketed host: 0.45 MB a sidecar otherwise never needs

        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {text!r}") from None
        port_text = rest[1:]
        has_port = bool(rest)
    elif value.count(":") > 1:
        raise ValueError(f"an IPv6 address needs brackets, as in [::1]:9464, got {text!r}")
    else:
        host, sep, port_text = value.partition(":")
        has_port = bool(sep)
        if not host:
            if any_host is None or not has_port:
                raise ValueError(f"expected host:port (the host is missing), got {text!r}")
            host = any_host
    if not has_port:
        if default_port is None:
            raise ValueError(f"expected host:port (the port is missing), got {text!r}")
        return Address(host, default_port)
    lowest = 0 if allow_port_zero else 1
    if not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from {lowest} to 65535, got {text!r}")
    return Address(host, int(port_text))
