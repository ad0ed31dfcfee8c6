"""The sidecar's own metric families, registry, text exposition and ``/metrics`` HTTP server:
what a scrape needs and nothing more, so that ``soak-exporter`` never imports prometheus-client.

Why: importing prometheus-client loads its whole package (``prometheus_client/__init__``), which
imports http.server, urllib.request and ssl: about 11 MB of RSS in a process whose whole budget
is the ~18 MB of Debian's prometheus-process-exporter. The families here are duck-compatible
with prometheus-client's (``name``, ``documentation``, ``type``, ``unit``, ``samples`` of
``Sample`` tuples with the same fields), so a collector yielding them can be registered in a
prometheus-client registry (the in-process mode does), and ``generate_latest`` here exposes a
prometheus-client registry as well. The text is the Prometheus text format 0.0.4, written as
prometheus-client writes it (counters as ``NAME_total``, ``_created`` samples in a gauge after
the family, Go-style floats).

``REGISTRY`` is prometheus-client's default registry, imported the first time something is
registered in it (the default of the collectors' ``registry=`` arguments, as before).
"""

from __future__ import annotations

import contextlib
import math
import queue
import socket
import socketserver
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

__all__ = [
    "REGISTRY",
    "Collector",
    "CollectorRegistry",
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "Metric",
    "MetricsHTTPServer",
    "Registry",
    "Sample",
    "float_to_go",
    "generate_latest",
    "merge_families",
    "start_http_server",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds a ``/metrics`` worker thread waits for the next request before it exits.
WORKER_IDLE_SECONDS = 60.0


class Sample(NamedTuple):
    """One sample, with the fields of prometheus-client's ``Sample``."""

    name: str
    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    exemplar: Any = None
    native_histogram: Any = None


class Metric:
    """A metric family: a name, its help text, its type and its samples."""

    def __init__(self, name: str, documentation: str, typ: str, unit: str = "") -> None:
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.unit = unit
        self.samples: list[Sample] = []

    def add_sample(
        self, name: str, labels: dict[str, str], value: float, timestamp: float | None = None
    ) -> None:
        self.samples.append(Sample(name, labels, value, timestamp))

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, {self.type!r}, {len(self.samples)} samples)"


class GaugeMetricFamily(Metric):
    def __init__(
        self,
        name: str,
        documentation: str,
        value: float | None = None,
        labels: Sequence[str] | None = None,
        unit: str = "",
    ) -> None:
        super().__init__(name, documentation, "gauge", unit)
        if labels is not None and value is not None:
            raise ValueError("Can only specify at most one of value and labels.")
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value)

    def add_metric(
        self, labels: Sequence[str], value: float, timestamp: float | None = None
    ) -> None:
        self.samples.append(
            Sample(self.name, dict(zip(self._labelnames, labels, strict=False)), value, timestamp)
        )


class CounterMetricFamily(Metric):
    def __init__(
        self,
        name: str,
        documentation: str,
        value: float | None = None,
        labels: Sequence[str] | None = None,
        created: float | None = None,
        unit: str = "",
    ) -> None:
        super().__init__(name.removesuffix("_total"), documentation, "counter", unit)
        if labels is not None and value is not None:
            raise ValueError("Can only specify at most one of value and labels.")
        self._labelnames = tuple(labels or ())
        if value is not None:
            self.add_metric([], value, created)

    def add_metric(
        self,
        labels: Sequence[str],
        value: float,
        created: float | None = None,
        timestamp: float | None = None,
    ) -> None:
        values = dict(zip(self._labelnames, labels, strict=False))
        self.samples.append(Sample(self.name + "_total", values, value, timestamp))
        if created is not None:
            self.samples.append(Sample(self.name + "_created", dict(values), created, timestamp))


class Collector:
    """Something that yields metric families at each scrape."""

    def collect(self) -> Iterable[Any]:
        raise NotImplementedError

    def describe(self) -> Iterable[Any]:
        return []


class Registry(Protocol):
    """What the collectors need of a registry: this module's or prometheus-client's."""

    def register(self, collector: Any) -> None: ...

    def unregister(self, collector: Any) -> None: ...


class Collectable(Protocol):
    def collect(self) -> Iterable[Any]: ...


_TYPE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "info": ("_info",),
}


def _names(collector: Any) -> list[str]:
    describe = getattr(collector, "describe", None)
    families = list(describe()) if describe is not None else []
    if not families:
        families = list(collector.collect())
    names = []
    for family in families:
        names.append(family.name)
        names += [family.name + suffix for suffix in _TYPE_SUFFIXES.get(family.type, ())]
    return names


class CollectorRegistry:
    """The collectors of one exporter; refuses two collectors publishing the same series."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._collectors: dict[Any, list[str]] = {}

    def register(self, collector: Any) -> None:
        with self._lock:
            names = _names(collector)
            taken = {n for known in self._collectors.values() for n in known}
            duplicates = sorted(taken.intersection(names))
            if duplicates:
                raise ValueError(f"Duplicated timeseries in CollectorRegistry: {duplicates}")
            self._collectors[collector] = names

    def unregister(self, collector: Any) -> None:
        with self._lock:
            del self._collectors[collector]

    def collect(self) -> Iterator[Any]:
        with self._lock:
            collectors = list(self._collectors)
        for collector in collectors:
            yield from collector.collect()

    def get_sample_value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        wanted = labels or {}
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == wanted:
                    return float(sample.value)
        return None


class _ClientRegistry:
    """prometheus-client's default registry, imported at the first registration."""

    def _target(self) -> Any:
        from prometheus_client import REGISTRY as client_registry

        return client_registry

    def register(self, collector: Any) -> None:
        self._target().register(collector)

    def unregister(self, collector: Any) -> None:
        self._target().unregister(collector)

    def collect(self) -> Iterable[Any]:
        return self._target().collect()  # type: ignore[no-any-return]  # prometheus-client's


REGISTRY = _ClientRegistry()


def merge_families(families: Iterable[Any]) -> Iterator[Any]:
    """Families of the same name as one (their samples in order): several services' series of
    one metric must be exposed as one family, which a text exposition may not repeat."""
    merged: dict[str, Any] = {}
    for family in families:
        kept = merged.get(family.name)
        if kept is None:
            merged[family.name] = family
        else:
            kept.samples.extend(family.samples)
    yield from merged.values()


def float_to_go(value: float) -> str:
    """A float as Go (and Prometheus) writes it: ``+Inf``, ``NaN``, ``1e+06`` not ``1000000.0``."""
    value = float(value)
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# The text of a label set, by its items: a scrape writes the same few hundred label sets as the
# last one (a service's series keep their labels), so each is escaped and joined once. Cleared
# when it grows past _LABEL_TEXTS_MAX, so workers recycled for days keep it bounded.
_label_texts: dict[tuple[tuple[str, str], ...], str] = {}
_LABEL_TEXTS_MAX = 10_000


def _label_text(labels: dict[str, str]) -> str:
    key = tuple(labels.items())
    text = _label_texts.get(key)
    if text is None:
        text = "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items())) + "}"
        if len(_label_texts) >= _LABEL_TEXTS_MAX:
            _label_texts.clear()
        _label_texts[key] = text
    return text


def _line(sample: Any) -> str:
    labels = _label_text(sample.labels) if sample.labels else ""
    timestamp = "" if sample.timestamp is None else f" {int(float(sample.timestamp) * 1000):d}"
    return f"{sample.name}{labels} {float_to_go(sample.value)}{timestamp}\n"


_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}


def generate_latest(registry: Collectable) -> bytes:
    """The text exposition (format 0.0.4) of every family ``registry`` collects."""
    output: list[str] = []
    for family in registry.collect():
        name, kind = family.name, family.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
        kind = _TEXT_TYPES.get(kind, "untyped" if kind == "unknown" else kind)
        help_text = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
        output.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        extra: dict[str, list[str]] = {}
        apart = {family.name + suffix: suffix for suffix in ("_created", "_gsum", "_gcount")}
        for sample in family.samples:
            suffix = apart.get(sample.name)
            if suffix is None:
                output.append(_line(sample))
            else:
                extra.setdefault(suffix, []).append(_line(sample))
        for suffix, lines in sorted(extra.items()):
            output.append(
                f"# HELP {family.name}{suffix} {help_text}\n# TYPE {family.name}{suffix} gauge\n"
            )
            output.extend(lines)
    return "".join(output).encode("utf-8")


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.0-style: one request per connection, any path but /favicon.ico is /metrics."""

    timeout = 30  # a client that sends nothing is dropped

    def handle(self) -> None:
        try:
            request = self.rfile.readline(8192).decode("latin-1")
            while True:  # the headers: nothing in them changes the answer
                header = self.rfile.readline(8192)
                if header in (b"\r\n", b"\n", b""):
                    break
        except (OSError, UnicodeDecodeError):
            return
        parts = request.split()
        if len(parts) < 2:
            self._reply(400, "Bad Request", b"bad request\n", "text/plain")
            return
        method, path = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            self._reply(405, "Method Not Allowed", b"method not allowed\n", "text/plain")
            return
        if path.split("?", 1)[0] == "/favicon.ico":
            self._reply(200, "OK", b"", "text/plain", head=method == "HEAD")
            return
        server: Any = self.server
        try:
            body = generate_latest(server.registry)
        except Exception as error:  # a failing collector answers 500, the server stays up
            self._reply(500, "Internal Server Error", f"{error}\n".encode(), "text/plain")
            return
        self._reply(200, "OK", body, CONTENT_TYPE, head=method == "HEAD")

    def _reply(
        self, status: int, reason: str, body: bytes, content_type: str, *, head: bool = False
    ) -> None:
        headers = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        with contextlib.suppress(OSError):  # the scraper went away
            self.wfile.write(headers if head else headers + body)


class MetricsHTTPServer(socketserver.TCPServer):
    """Each request on a worker thread, so a slow scraper never holds up another; a worker
    that finished waits ``WORKER_IDLE_SECONDS`` for the next request before it exits. Why not
    socketserver's ThreadingMixIn: a thread started per request more than doubles the CPU of a
    one-process scrape (0.54 against 0.23 ms per request on a 2-core VM, scraped every
    50 ms). Workers are daemon threads: a scrape in progress never holds up stop()."""

    allow_reuse_address = True

    def __init__(
        self, address: tuple[Any, ...], registry: Collectable, family: int, backlog: int
    ) -> None:
        self.address_family = family
        self.request_queue_size = backlog
        self.registry = registry
        self._requests: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._workers_lock = threading.Lock()
        self._idle_workers = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._workers_lock:
            start = self._idle_workers == 0
            if not start:
                self._idle_workers -= 1  # that worker takes this request
        self._requests.put((request, client_address))
        if start:
            threading.Thread(target=self._work, name="soak-metrics-worker", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                item = self._requests.get(timeout=WORKER_IDLE_SECONDS)
            except queue.Empty:
                with self._workers_lock:
                    if self._idle_workers > 0:  # no request was promised to this worker
                        self._idle_workers -= 1
                        return
                continue  # one was, and is on its way into the queue
            if item is None:  # server_close()
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
            with self._workers_lock:
                self._idle_workers += 1

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """socketserver's loop, by default without its wake-up every 0.5 s (CPU of a sidecar
        idle between scrapes): select() waits for a connection, and shutdown() makes one."""
        super().serve_forever(poll_interval)  # type: ignore[arg-type]  # None: no timeout

    def shutdown(self) -> None:
        stopper = threading.Thread(target=super().shutdown, name="soak-metrics-stop")
        stopper.start()  # asks the loop to stop, then waits for it
        while stopper.is_alive():
            self._wake()
            stopper.join(0.05)

    def _wake(self) -> None:
        address: Any = self.server_address
        host, port = str(address[0]), int(address[1])
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        with contextlib.suppress(OSError):  # the loop may have closed already
            socket.create_connection((host, port), timeout=1).close()

    def server_close(self) -> None:
        super().server_close()
        with self._workers_lock:
            idle, self._idle_workers = self._idle_workers, 0
        for _ in range(idle):
            self._requests.put(None)


def start_http_server(
    registry: Collectable, host: str, port: int, backlog: int
) -> tuple[MetricsHTTPServer, threading.Thread]:
    """Serve ``registry`` on ``host:port`` (IPv4 or IPv6 by the address) from a daemon thread.
    Raises OSError if it cannot bind."""
    # An ASCII host as bytes: a str is encoded with the idna codec, which loads stringprep
    # and unicodedata (~0.4 MB) for nothing.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    family, _, _, _, address = socket.getaddrinfo(
        name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    httpd = MetricsHTTPServer((str(address[0]), port, *address[2:]), registry, family, backlog)
    thread = threading.Thread(target=httpd.serve_forever, name="soak-metrics-http", daemon=True)
    thread.start()
    return httpd, thread
