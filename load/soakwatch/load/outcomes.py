"""The outcome classes of one load operation: a fixed, small set, so label sets stay bounded.

Every scenario reports each operation as exactly one of these (docs/load.md says what each
means per scenario)."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["OUTCOMES", "classify_exception", "classify_status"]

OK = "ok"
HTTP_4XX = "http_4xx"
HTTP_5XX = "http_5xx"
HTTP_OTHER = "http_other"  # 1xx/3xx that the client did not follow
TIMEOUT = "timeout"
CONNECT_ERROR = "connect_error"
CLOSED = "closed"  # the server closed the connection before a full reply
PROTOCOL_ERROR = "protocol_error"  # a reply that does not parse (HTTP, WebSocket frame, JSON)
AUTH_ERROR = "auth_error"  # the auth service gave no token
DB_ERROR = "db_error"  # the database rejected the statement
DROPPED = "dropped"  # due but not sent: every in-flight slot was taken (driver saturated)
CUT_SHORT = "cut_short"  # sent, still in flight when the run ended it (stop_grace ran out)
ERROR = "error"  # anything else (logged)

OUTCOMES: tuple[str, ...] = (
    OK,
    HTTP_4XX,
    HTTP_5XX,
    HTTP_OTHER,
    TIMEOUT,
    CONNECT_ERROR,
    CLOSED,
    PROTOCOL_ERROR,
    AUTH_ERROR,
    DB_ERROR,
    DROPPED,
    CUT_SHORT,
    ERROR,
)


def classify_status(status: int) -> str:
    if 200 <= status < 300:
        return OK
    if 400 <= status < 500:
        return HTTP_4XX
    if status >= 500:
        return HTTP_5XX
    return HTTP_OTHER


def classify_exception(exc: BaseException) -> str:
    """The outcome of an operation that raised ``exc`` (aiohttp, OS and database errors)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return TIMEOUT
    # An aiohttp error can only come from a run that imported aiohttp: a Redis-only run on an
    # install without the http extra classifies its errors without it.
    if "aiohttp" in sys.modules:
        import aiohttp

        if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)):
            return CLOSED
        if isinstance(exc, aiohttp.ClientConnectorError):
            return CONNECT_ERROR
        if isinstance(exc, aiohttp.ClientOSError):
            return CLOSED
        if isinstance(exc, (aiohttp.ClientResponseError, aiohttp.WSServerHandshakeError)):
            return PROTOCOL_ERROR
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return CLOSED
    if isinstance(exc, ConnectionError | OSError):
        return CONNECT_ERROR
    return ERROR
