"""PostgreSQL probe: connect, authenticate, ``SELECT 1`` must return one row holding ``1``.

Speaks the frontend/backend protocol (version 3.0) directly over an asyncio stream rather than
importing psycopg or asyncpg: the exporter must run with its core dependencies only, and the
probe needs five message types. Authentication: trust, cleartext password, MD5 and
SCRAM-SHA-256 (RFC 5802 / RFC 7677; PostgreSQL's default since version 14). TLS
(``sslmode: require``) goes through ``SSLRequest`` and a TLS upgrade of the same stream;
``prefer`` is not offered because a probe should test one known path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from soakwatch.exporter.probes.http import client_tls_context
from soakwatch.exporter.probes.spec import split_host_port

if TYPE_CHECKING:
    from soakwatch.configfile import Section
    from soakwatch.exporter.probes.spec import ProbeLog

__all__ = ["PostgresProbe", "check_target", "probe", "scram_client_final"]

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
AUTH_METHODS = {3: "cleartext password", 5: "MD5", 10: "SASL"}


@dataclass(frozen=True)
class PostgresProbe:
    """Keys of a ``postgres`` probe. User, password and database may also come in the target
    DSN (``postgresql://user:secret@host:5432/db``); the keys win when both are given."""

    user: str | None = None
    password: str | None = None
    dbname: str | None = None
    sslmode: str = "disable"
    tls_verify: bool = True

    @classmethod
    def from_section(cls, section: Section) -> PostgresProbe:
        return cls(
            user=section.string("user", None),
            password=section.string("password", None),
            dbname=section.string("dbname", None),
            sslmode=section.string("sslmode", "disable", choices=("disable", "require")),
            tls_verify=section.boolean("tls_verify", True),
        )

    def __repr__(self) -> str:
        return (
            f"PostgresProbe(user={self.user!r}, password=***, dbname={self.dbname!r}, "
            f"sslmode={self.sslmode!r}, tls_verify={self.tls_verify})"
        )


@dataclass(frozen=True)
class _Endpoint:
    host: str
    port: int
    user: str | None
    password: str | None
    dbname: str | None


def _endpoint(target: str) -> _Endpoint:
    if "://" not in target:
        host, port = split_host_port(target, default_port=5432)
        return _Endpoint(host, port, None, None, None)
    parts = urlsplit(target)
    if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
        raise ValueError("expected host:port or postgresql://user[:password]@host[:port]/dbname")
    _ = parts.port  # ValueError on a bad port
    if parse_qs(parts.query):
        raise ValueError("DSN query parameters are not supported; use the probe's keys")
    return _Endpoint(
        parts.hostname,
        parts.port or 5432,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
        unquote(parts.path.lstrip("/")) or None,
    )


def check_target(target: str) -> str:
    _endpoint(target)
    return target


class _ProbeFailed(Exception):
    """The server answered, but not as a healthy PostgreSQL does. The message is safe to log."""


async def probe(target: str, settings: PostgresProbe, log: ProbeLog) -> bool:
    endpoint = _endpoint(target)
    user = settings.user or endpoint.user or "postgres"
    password = settings.password if settings.password is not None else endpoint.password
    dbname = settings.dbname or endpoint.dbname or user
    try:
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    except OSError as exc:
        log.warning("postgres probe failed: %s", exc, extra={"error": str(exc)})
        return False
    try:
        if settings.sslmode == "require":
            writer = await _upgrade_to_tls(reader, writer, endpoint.host, settings.tls_verify)
        await _startup(reader, writer, user, password, dbname, log)
        await _select_one(reader, writer)
        writer.write(b"X" + struct.pack("!i", 4))  # Terminate
        return True
    except (_ProbeFailed, OSError, EOFError, ValueError, KeyError) as exc:
        reason = str(exc) or type(exc).__name__
        log.warning("postgres probe failed: %s", reason, extra={"error": reason})
        return False
    finally:
        writer.close()


async def _upgrade_to_tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, verify: bool
) -> asyncio.StreamWriter:
    writer.write(struct.pack("!ii", 8, SSL_REQUEST_CODE))
    await writer.drain()
    answer = await reader.readexactly(1)
    if answer != b"S":
        raise _ProbeFailed("server refused TLS (sslmode: require)")
    context = client_tls_context(verify)
    if hasattr(writer, "start_tls"):  # Python 3.11+
        await writer.start_tls(context, server_hostname=host)
        return writer
    # Python 3.10: swap the transport under the same protocol, as StreamWriter.start_tls does.
    loop = asyncio.get_running_loop()
    protocol = writer.transport.get_protocol()
    transport = await loop.start_tls(writer.transport, protocol, context, server_hostname=host)
    if transport is None:
        raise _ProbeFailed("TLS upgrade failed")
    return asyncio.StreamWriter(transport, protocol, reader, loop)


async def _read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    kind, length = header[:1], struct.unpack("!i", header[1:])[0]
    if length < 4 or length > 1 << 24:
        raise _ProbeFailed(f"not a PostgreSQL server (message length {length})")
    payload = await reader.readexactly(length - 4)
    if kind == b"E":
        raise _ProbeFailed(_error_text(payload))
    return kind, payload


def _error_text(payload: bytes) -> str:
    fields = {}
    for item in payload.split(b"\0"):
        if item:
            fields[item[:1]] = item[1:].decode("utf-8", errors="replace")
    code = fields.get(b"C", "?")
    return f"server error {code}: {fields.get(b'M', 'unknown error')}"


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


async def _startup(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    user: str,
    password: str | None,
    dbname: str,
    log: ProbeLog,
) -> None:
    params = b"".join(
        key + b"\0" + value.encode() + b"\0"
        for key, value in (
            (b"user", user),
            (b"database", dbname),
            (b"application_name", "soakwatch-probe"),
        )
    )
    body = struct.pack("!i", PROTOCOL_3_0) + params + b"\0"
    writer.write(struct.pack("!i", len(body) + 4) + body)
    await writer.drain()
    scram: _Scram | None = None
    while True:
        kind, payload = await _read_message(reader)
        if kind == b"Z":  # ReadyForQuery
            return
        if kind != b"R":  # ParameterStatus, BackendKeyData, notices: not needed
            continue
        code = struct.unpack("!i", payload[:4])[0]
        if code == 0:  # AuthenticationOk
            continue
        if code in AUTH_METHODS:
            log.debug("postgres asks for %s authentication", AUTH_METHODS[code])
        if code in (3, 5, 10) and password is None:
            raise _ProbeFailed("server asks for a password and none is configured")
        if code == 3:  # cleartext
            writer.write(_message(b"p", (password or "").encode() + b"\0"))
        elif code == 5:  # MD5 with a 4-byte salt
            inner = hashlib.md5(((password or "") + user).encode()).hexdigest()
            outer = hashlib.md5(inner.encode() + payload[4:8]).hexdigest()
            writer.write(_message(b"p", b"md5" + outer.encode() + b"\0"))
        elif code == 10:  # SASL: a list of mechanisms
            mechanisms = [m.decode() for m in payload[4:].split(b"\0") if m]
            if "SCRAM-SHA-256" not in mechanisms:
                raise _ProbeFailed(f"no supported SASL mechanism in {mechanisms}")
            scram = _Scram(password or "")
            first = scram.client_first().encode()
            writer.write(_message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
        elif code == 11 and scram is not None:  # SASLContinue: server-first-message
            writer.write(_message(b"p", scram.client_final(payload[4:].decode()).encode()))
        elif code == 12 and scram is not None:  # SASLFinal: server signature
            scram.verify_server(payload[4:].decode())
        else:
            raise _ProbeFailed(f"unsupported authentication request {code}")
        await writer.drain()


async def _select_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(_message(b"Q", b"SELECT 1\0"))
    await writer.drain()
    values: list[bytes] = []
    while True:
        kind, payload = await _read_message(reader)
        if kind == b"D":  # DataRow: int16 count, then int32 length + bytes per column
            (count,) = struct.unpack("!h", payload[:2])
            if count == 1:
                (length,) = struct.unpack("!i", payload[2:6])
                values.append(payload[6 : 6 + length])
        elif kind == b"Z":
            break
    if values != [b"1"]:
        raise _ProbeFailed(f"SELECT 1 returned {values!r}")


class _Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802 section 3, RFC 7677). PostgreSQL takes the
    user name from the startup message, so the SCRAM user name is empty; no channel binding."""

    def __init__(self, password: str, nonce: str | None = None) -> None:
        self.password = password
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n=,r={self.nonce}"
        self.server_signature = b""

    def client_first(self) -> str:
        return "n,," + self.client_first_bare

    def client_final(self, server_first: str) -> str:
        final, self.server_signature = scram_client_final(
            self.password, self.client_first_bare, server_first, self.nonce
        )
        return final

    def verify_server(self, server_final: str) -> None:
        attributes = dict(item.split("=", 1) for item in server_final.split(",") if "=" in item)
        received = base64.b64decode(attributes.get("v", ""))
        if not hmac.compare_digest(received, self.server_signature):
            raise _ProbeFailed("SCRAM server signature does not match")


def scram_client_final(
    password: str, client_first_bare: str, server_first: str, client_nonce: str
) -> tuple[str, bytes]:
    """(client-final-message, expected server signature) for a server-first-message."""
    attributes = dict(item.split("=", 1) for item in server_first.split(",") if "=" in item)
    server_nonce, salt, iterations = attributes["r"], attributes["s"], int(attributes["i"])
    if not server_nonce.startswith(client_nonce):
        raise _ProbeFailed("SCRAM server nonce does not extend the client nonce")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={server_nonce}"  # biws = base64("n,,")
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    client_signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    return f"{without_proof},p={base64.b64encode(proof).decode()}", server_signature
