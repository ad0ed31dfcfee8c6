"""Retries with backoff on 5xx and on answers cut short. A real Prometheus does not answer 503
(or break off a body) on demand, so this test uses a small local HTTP server that fails a set
number of times, then answers like the API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from soakwatch.analyzer.sources import PrometheusSource
from soakwatch.errors import SourceError
from soakwatch.rules.model import MetricSelector

BODY = {
    "status": "success",
    "data": {
        "resultType": "matrix",
        "result": [{"metric": {"__name__": "m", "service": "a"}, "values": [[10, "1"], [25, "2"]]}],
    },
}


class FlakyAPI(ThreadingHTTPServer):
    failures_left = 0
    cut_short_left = 0  # answers that promise 1,000 bytes and close after a few
    seen_auth: list[str | None]


class Handler(BaseHTTPRequestHandler):
    server: FlakyAPI

    def do_GET(self) -> None:
        self.server.seen_auth.append(self.headers.get("Authorization"))
        if self.server.failures_left > 0:
            self.server.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        payload = json.dumps(BODY).encode()
        if self.server.cut_short_left > 0:
            self.server.cut_short_left -= 1
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(payload[:27])
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_api() -> Iterator[FlakyAPI]:
    server = FlakyAPI(("127.0.0.1", 0), Handler)
    server.seen_auth = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def source(server: FlakyAPI, **kwargs: Any) -> PrometheusSource:
    host, port = server.server_address[:2]
    return PrometheusSource(f"http://{host!s}:{port}", backoff_seconds=0.01, **kwargs)


def test_two_503s_are_retried_and_the_third_answer_is_used(flaky_api: FlakyAPI) -> None:
    flaky_api.failures_left = 2
    api = source(flaky_api, bearer_token="s3cret")
    series = api.fetch(MetricSelector("m"), 0, 30)
    assert api.requests_made == 3
    assert [(s.labels, s.t.tolist(), s.v.tolist()) for s in series] == [
        ({"service": "a"}, [10.0, 25.0], [1.0, 2.0])
    ]
    assert flaky_api.seen_auth == ["Bearer s3cret"] * 3


def test_a_server_that_keeps_failing_is_a_source_error_after_the_retries(
    flaky_api: FlakyAPI,
) -> None:
    flaky_api.failures_left = 100
    api = source(flaky_api, retries=2)
    with pytest.raises(SourceError, match=r"HTTP 503 after 3 attempts"):
        api.fetch(MetricSelector("m"), 0, 30)


def test_the_backoff_comes_from_the_environment_unless_given(
    flaky_api: FlakyAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port = flaky_api.server_address[:2]
    url = f"http://{host!s}:{port}"
    assert PrometheusSource(url).backoff_seconds == 0.5
    monkeypatch.setenv("SOAK_PROMETHEUS_BACKOFF", "20ms")
    assert PrometheusSource(url).backoff_seconds == 0.02
    assert PrometheusSource(url, backoff_seconds=0.0).backoff_seconds == 0.0

    flaky_api.failures_left = 3
    started = time.monotonic()
    series = PrometheusSource(url, retries=3).fetch(MetricSelector("m"), 0, 30)
    waited = time.monotonic() - started

    assert len(series) == 1
    assert 0.02 + 0.04 + 0.08 <= waited < 1.5  # 20, 40, 80 ms, not 0.5 + 1 + 2 s


def test_an_answer_cut_short_is_retried_and_the_next_whole_one_is_used(flaky_api: FlakyAPI) -> None:
    flaky_api.cut_short_left = 1
    api = source(flaky_api)
    series = api.fetch(MetricSelector("m"), 0, 30)
    assert api.requests_made == 2
    assert [s.v.tolist() for s in series] == [[1.0, 2.0]]


def test_answers_that_keep_breaking_off_are_a_source_error_not_a_traceback(
    flaky_api: FlakyAPI,
) -> None:
    flaky_api.cut_short_left = 100
    api = source(flaky_api, retries=2)
    with pytest.raises(SourceError, match=r"after 3 attempts"):
        api.fetch(MetricSelector("m"), 0, 30)
    assert api.requests_made == 3
