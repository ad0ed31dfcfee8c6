"""Redis probe: ``PING`` must answer ``+PONG`` (after ``AUTH`` when a password is set).

Speaks RESP directly over an asyncio stream: two commands do not justify importing redis-py
into the exporter, and a cancelled coroutine closes its socket at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from soakwatch.exporter.probes.http import client_tls_context
from soakwatch.exporter.probes.spec import split_host_port

if TYPE_CHECKING:
    from soakwatch.configfile import Section
    from soakwatch.exporter.probes.spec import ProbeLog

__all__ = ["RedisProbe", "check_target", "probe"]


@dataclass(frozen=True)
class RedisProbe:
    """Keys of a ``redis`` probe. A password may also come in the target URL
    (``redis://:secret@host:6379``); the key wins when both are given."""

    username: str | None = None
    password: str | None = None
    tls_verify: bool = True

    @classmethod
    def from_section(cls, section: Section) -> RedisProbe:
        return cls(
            username=section.string("username", None),
            password=section.string("password", None),
            tls_verify=section.boolean("tls_verify", True),
        )

    def __repr__(self) -> str:
        return f"RedisProbe(username={self.username!r}, password=***, tls_verify={self.tls_verify})"


@dataclass(frozen=True)
class _Endpoint:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def _endpoint(target: str) -> _Endpoint:
    if "://" not in target:
        host, port = split_host_port(target, default_port=6379)
        return _Endpoint(host, port, False, None, None)
    parts = urlsplit(target)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("expected host:port or redis://[:password@]host[:port]")
    _ = parts.port  # ValueError on a bad port
    return _Endpoint(
        parts.hostname,
        parts.port or 6379,
        parts.scheme == "rediss",
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
    )


def check_target(target: str) -> str:
    try:
        _endpoint(target)
    except ValueError as exc:
        raise ValueError(str(exc).replace(target, "<target>")) from None
    return target


def _command(*args: str) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def probe(target: str, settings: RedisProbe, log: ProbeLog) -> bool:
    endpoint = _endpoint(target)
    password = settings.password if settings.password is not None else endpoint.password
    username = settings.username or endpoint.username
    context = client_tls_context(settings.tls_verify) if endpoint.tls else None
    try:
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=context)
    except OSError as exc:
        log.warning("redis probe failed: %s", exc, extra={"error": str(exc)})
        return False
    try:
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            writer.write(_command(*auth))
            reply = await reader.readline()
            if not reply.startswith(b"+OK"):
                log.warning("redis probe failed: AUTH answered %r", _shown(reply))
                return False
        writer.write(_command("PING"))
        await writer.drain()
        reply = await reader.readline()
        if reply.rstrip(b"\r\n") != b"+PONG":
            log.warning("redis probe failed: PING answered %r", _shown(reply))
            return False
        return True
    except OSError as exc:
        log.warning("redis probe failed: %s", exc, extra={"error": str(exc)})
        return False
    finally:
        writer.close()


def _shown(reply: bytes) -> str:
    return reply.rstrip(b"\r\n").decode("utf-8", errors="replace")[:120] or "<connection closed>"
