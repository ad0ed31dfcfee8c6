"""HTTP(S) probe: one request; success when the status is expected and, if configured, the
body matches a regular expression.

The client is a minimal HTTP/1.1 one over asyncio streams (``Connection: close``, Content-Length,
chunked or read-to-EOF bodies, at most ``MAX_BODY_BYTES``). Why not aiohttp or requests: the
exporter runs beside every service with only its core dependencies, a probe makes one request
every interval, and a cancelled coroutine here closes its socket at once, which is what the
runner's deadline needs. Redirects are not followed: a 3xx is a status like any other.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from soakwatch.configfile import check_one_credential, check_url, redact_url

if TYPE_CHECKING:
    from soakwatch.configfile import Section
    from soakwatch.exporter.probes.spec import ProbeLog

__all__ = [
    "HttpProbe",
    "HttpResponse",
    "check_target",
    "client_tls_context",
    "fetch",
    "parse_status_ranges",
    "probe",
]

MAX_BODY_BYTES = 1 << 20
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


@dataclass(frozen=True)
class HttpProbe:
    """The keys of an ``http`` probe."""

    method: str = "GET"
    # Inclusive (low, high) ranges; the default accepts any 2xx.
    expect_status: tuple[tuple[int, int], ...] = ((200, 299),)
    body_regex: re.Pattern[str] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tls_verify: bool = True

    @classmethod
    def from_section(cls, section: Section) -> HttpProbe:
        method = section.string("method", "GET", choices=METHODS)
        expect = section.convert("expect_status", parse_status_ranges, ((200, 299),))
        body_regex = section.convert("body_regex", _compile_regex, None)
        header_section = section.section("headers")
        headers = tuple((key, header_section.string(key)) for key in header_section.keys())  # noqa: SIM118
        header_section.finish()
        for key, value in headers:
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", key) or "\n" in value:
                raise header_section.error(key, "not a valid HTTP header")
        target = section.raw("target", None)  # read and checked by the probe table first
        if isinstance(target, str):
            check_one_credential(section, "target", target, "headers", (k for k, _ in headers))
        return cls(
            method=method,
            expect_status=expect,
            body_regex=body_regex,
            headers=headers,
            tls_verify=section.boolean("tls_verify", True),
        )

    def __repr__(self) -> str:  # header values may be tokens: show the names only
        return (
            f"HttpProbe(method={self.method!r}, expect_status={self.expect_status!r}, "
            f"body_regex={self.body_regex!r}, headers={[k for k, _ in self.headers]!r}, "
            f"tls_verify={self.tls_verify!r})"
        )

    def accepts(self, status: int) -> bool:
        return any(low <= status <= high for low, high in self.expect_status)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def check_target(target: str) -> str:
    check_url(target, schemes=("http", "https"), fail=ValueError)
    return target


def parse_status_ranges(value: object) -> tuple[tuple[int, int], ...]:
    """``200``, ``"2xx"`` or a list of them -> inclusive ranges. Raises ValueError."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("expected at least one status code")
    ranges = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            ranges.append((item, item))
        elif isinstance(item, str) and re.fullmatch(r"[1-5]xx", item.lower()):
            low = int(item[0]) * 100
            ranges.append((low, low + 99))
        elif isinstance(item, str) and item.isdigit() and 100 <= int(item) <= 599:
            ranges.append((int(item), int(item)))
        else:
            raise ValueError(f"expected a status code (100-599) or a class like 2xx, got {item!r}")
    return tuple(ranges)


def _compile_regex(value: object) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression string, got {type(value).__name__}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None


async def probe(target: str, settings: HttpProbe, log: ProbeLog) -> bool:
    try:
        response = await fetch(
            target,
            method=settings.method,
            headers=settings.headers,
            tls_verify=settings.tls_verify,
            read_body=settings.body_regex is not None,
        )
    except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
        log.warning("http probe failed: %s", _reason(exc), extra={"error": _reason(exc)})
        return False
    if not settings.accepts(response.status):
        log.warning(
            "http probe failed: unexpected status %d",
            response.status,
            extra={"status": response.status},
        )
        return False
    if settings.body_regex is not None:
        text = response.body.decode("utf-8", errors="replace")
        if not settings.body_regex.search(text):
            log.warning(
                "http probe failed: body does not match %r",
                settings.body_regex.pattern,
                extra={"status": response.status},
            )
            return False
    return True


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@functools.lru_cache(maxsize=2)
def client_tls_context(verify: bool) -> ssl.SSLContext:
    """One client context per verification mode: loading the CA store costs milliseconds."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    tls_verify: bool = True,
    read_body: bool = True,
) -> HttpResponse:
    """One HTTP/1.1 request with ``Connection: close``. Raises OSError, EOFError or ValueError."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = client_tls_context(tls_verify) if secure else None
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if secure else None
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            host_header += f":{parts.port}"
        lines = [
            f"{method} {target} HTTP/1.1",
            f"Host: {host_header}",
            "User-Agent: soakwatch-probe",
            "Accept: */*",
            "Connection: close",
        ]
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
        lines.extend(f"{key}: {value}" for key, value in headers)
        if method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status, response_headers = await _read_head(reader, redact_url(url))
        body = b""
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if read_body and not no_body:
            body = await _read_body(reader, response_headers)
        return HttpResponse(status=status, headers=response_headers, body=body)
    finally:
        writer.close()


async def _read_head(reader: asyncio.StreamReader, shown_url: str) -> tuple[int, dict[str, str]]:
    status_line = (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: .*)?", status_line)
    if not match:
        raise ValueError(f"not an HTTP/1.x response from {shown_url}: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    while True:
        line = (await reader.readuntil(b"\r\n")).decode("latin-1").rstrip("\r\n")
        if not line:
            break
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return int(match.group(1)), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = bytearray()
        while len(chunks) < MAX_BODY_BYTES:
            size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
            size = int(size_line, 16)
            if size == 0:
                break
            chunks += await reader.readexactly(size)
            await reader.readexactly(2)
        return bytes(chunks[:MAX_BODY_BYTES])
    length = headers.get("content-length")
    if length is not None and length.isdigit():
        return await reader.readexactly(min(int(length), MAX_BODY_BYTES))
    body = bytearray()
    while len(body) < MAX_BODY_BYTES:
        data = await reader.read(MAX_BODY_BYTES - len(body))
        if not data:
            break
        body += data
    return bytes(body)
