"""A small recording JSON HTTP server on 127.0.0.1, for APIs that cannot be installed here
(Grafana): every request is handed to ``record`` before ``answer`` decides the reply, so an
answer may depend on what came before (refuse the first call, say)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Record = Callable[[str, str, dict[str, str], Any], None]
Answer = Callable[[str, str, Any], tuple[int, Any]]


@contextmanager
def recording_json_server(record: Record, answer: Answer) -> Iterator[str]:
    """Serve until the block ends; yields the base URL. Bodies are JSON (None when empty);
    paths are given without their query string."""

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            path = self.path.split("?", 1)[0]
            record(self.command, path, dict(self.headers), body)
            status, reply = answer(self.command, path, body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test asserts on the recorded requests, not on a log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
