"""A tiny WSGI app for the pre-fork tests (gunicorn, uwsgi): ``/leak`` keeps
``LEAK_BYTES`` more bytes alive in the worker that served it (pages written, so resident and
private), ``/pid`` names the worker, anything else answers ``ok``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

LEAK_BYTES = int(os.environ.get("SOAK_TEST_LEAK_BYTES", str(256 * 1024)))
_kept: list[bytes] = []


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/leak":
        _kept.append(os.urandom(16) * (LEAK_BYTES // 16))  # written pages: private, resident
        body = f"{os.getpid()} {len(_kept)}".encode()
    elif path == "/pid":
        body = str(os.getpid()).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
