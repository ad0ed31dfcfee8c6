"""Between scrapes the sidecar does nothing it need not do: its ``/metrics`` loop does not wake
up on a timer, yet stops at once when asked; a finished worker serves the next request."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

from soakwatch.exporter.exposition import CollectorRegistry, MetricsHTTPServer, start_http_server


class CountingServer(MetricsHTTPServer):
    loops = 0

    def service_actions(self) -> None:  # called after every wake-up of the serve loop
        type(self).loops += 1


def start(server_class: type[MetricsHTTPServer]) -> MetricsHTTPServer:
    httpd = server_class(("127.0.0.1", 0), CollectorRegistry(), socket.AF_INET, 16)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def get(httpd: MetricsHTTPServer) -> int:
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return int(response.status)


def test_the_serve_loop_sleeps_until_a_connection_and_stops_at_once():
    httpd = start(CountingServer)
    time.sleep(1.2)  # socketserver's default loop would have woken twice

    assert CountingServer.loops == 0
    assert get(httpd) == 200
    started = time.monotonic()
    httpd.shutdown()
    httpd.server_close()
    assert time.monotonic() - started < 1.0


def test_one_worker_serves_request_after_request_and_leaves_at_close():
    before = set(threading.enumerate())  # threads, not idents: an ident is reused once free
    httpd = start(MetricsHTTPServer)

    assert [get(httpd) for _ in range(20)] == [200] * 20
    time.sleep(0.1)  # the last worker back in the queue
    workers = [
        t for t in threading.enumerate() if t.name == "soak-metrics-worker" and t not in before
    ]
    # one request after the other: the worker is reused (a thread per request would make 20;
    # a request that arrives while the worker is still closing the last one may start a
    # second on a loaded machine)
    assert 1 <= len(workers) <= 3
    httpd.shutdown()
    httpd.server_close()
    for worker in workers:
        worker.join(timeout=5)
    assert not any(w.is_alive() for w in workers)


def test_a_request_that_hangs_holds_up_no_other():
    httpd, _ = start_http_server(CollectorRegistry(), "127.0.0.1", 0, 16)
    port = httpd.server_address[1]
    with socket.create_connection(("127.0.0.1", port)) as silent:  # sends nothing
        silent.sendall(b"GET")
        started = time.monotonic()
        assert get(httpd) == 200
        assert time.monotonic() - started < 2.0
    httpd.shutdown()
    httpd.server_close()
