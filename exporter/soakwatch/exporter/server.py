"""The sidecar exporter assembled from a config: one registry holding the process, pool and
probe collectors, a background scanner that notices restarts between scrapes, and the HTTP
server that serves ``/metrics`` (IPv4 or IPv6, port 0 for a free one, a listen backlog of
``LISTEN_BACKLOG``)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

# Not prometheus-client: importing it costs ~11 MB of RSS (http.server, urllib, ssl); the
# sidecar serves its registry with soakwatch.exporter.exposition (docs/metrics.md).
from soakwatch.exporter.config import ExporterConfig, ListenAddress
from soakwatch.exporter.exposition import (
    Collectable,
    Collector,
    CollectorRegistry,
    Metric,
    merge_families,
    start_http_server,
)
from soakwatch.exporter.matching import ExitWatch, ProcessTracker, matcher_for, scan_round
from soakwatch.exporter.pools import PoolCollector
from soakwatch.exporter.process import ProcessCollector

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "IDLE_LOOK_SECONDS",
    "LISTEN_BACKLOG",
    "MergedCollector",
    "MetricsServer",
    "SidecarExporter",
    "serve_metrics",
    "start_metrics_http_server",
]

log = logging.getLogger(__name__)

# Connections the kernel queues before the server thread accepts them. prometheus-client's
# start_http_server keeps socketserver's 5: 200 scrapers overflowed it (ListenOverflows, then
# 1 s and 7 s SYN retries). The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = max(128, socket.SOMAXCONN)

# The background scan's look while nothing has exited (see SidecarExporter._scan): a backstop,
# not the detector (that is the exit of a watched process, seen at once).
IDLE_LOOK_SECONDS = 60.0


def start_metrics_http_server(
    registry: Any, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Serve a prometheus-client ``registry`` with prometheus-client's WSGI app (OpenMetrics
    and gzip negotiation) on ``host:port`` (IPv4 or IPv6 by the address) from a daemon thread,
    with a listen backlog of ``LISTEN_BACKLOG``: the in-process mode's server, which has
    prometheus-client loaded anyway. Raises OSError if it cannot bind."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    class _QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """No access log line on stderr per scrape."""

    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingMixIn, WSGIServer):
        """A thread per request, as prometheus-client's server, with a real listen backlog."""

        daemon_threads = True  # a scrape in progress never holds up stop()
        request_queue_size = LISTEN_BACKLOG
        address_family = family

    app = make_wsgi_app(registry)
    httpd = make_server(str(address[0]), port, app, Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="soak-metrics-http", daemon=True)
    thread.start()
    return httpd, thread


class MetricsServer:
    """A running ``/metrics`` endpoint; ``port`` is the bound one (useful with port 0)."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host: str = httpd.server_address[0]
        self.port: int = httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: Collectable, listen: ListenAddress) -> MetricsServer:
    """Serve ``registry`` (this exporter's or a prometheus-client one) as text format 0.0.4 on
    ``listen`` in a daemon thread, with a listen backlog of ``LISTEN_BACKLOG``, without
    prometheus-client (soakwatch.exporter.exposition). Raises OSError if it cannot bind."""
    httpd, thread = start_http_server(registry, listen.host, listen.port, LISTEN_BACKLOG)
    return MetricsServer(httpd, thread)


class MergedCollector(Collector):
    """Several collectors publishing the same families (one probe runner per service) as one,
    so that each family appears once in the exposition."""

    def __init__(self, collectors: Sequence[Any]) -> None:
        self._collectors = list(collectors)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from merge_families(
            family for collector in self._collectors for family in collector.collect()
        )


def _probe_runners(config: ExporterConfig) -> list[Any]:
    services = [s for s in config.services if s.probes]
    if not services:
        return []
    from soakwatch.exporter.probes import ProbeRunner  # only when probes are configured

    return [ProbeRunner(s.name, s.probes, registry=None) for s in services]


def _pprof_collector(config: ExporterConfig, registry: CollectorRegistry) -> Any:
    targets = {s.name: s.pprof for s in config.services if s.pprof is not None}
    if not targets:
        return None
    from soakwatch.exporter.pprof import PprofCollector  # only when a Go target is configured

    return PprofCollector(targets, registry=registry)


class SidecarExporter:
    """Everything ``soak-exporter`` runs, built from a validated config. ``start()`` binds the
    port and starts the threads; ``stop()`` stops them."""

    def __init__(self, config: ExporterConfig, *, registry: CollectorRegistry | None = None):
        self.config = config
        self.registry = CollectorRegistry() if registry is None else registry
        self.trackers = {
            service.name: ProcessTracker(
                matcher_for(service.match), scan_interval_seconds=config.scan_interval_seconds
            )
            for service in config.services
        }
        self.process_collector = ProcessCollector(
            self.trackers,
            registry=self.registry,
            detail_interval_seconds=config.detail_interval_seconds,
        )
        self.pool_collector = PoolCollector(
            {s.name: (self.trackers[s.name], s.pools) for s in config.services},
            registry=self.registry,
        )
        self.probe_runners = _probe_runners(config)
        if self.probe_runners:
            self.registry.register(MergedCollector(self.probe_runners))
        self.pprof_collector = _pprof_collector(config, self.registry)
        self.server: MetricsServer | None = None
        self._stopping = threading.Event()
        self._exits = ExitWatch()
        #: background scan rounds so far (each reads the watched processes once)
        self.scan_rounds = 0
        self._scanner = threading.Thread(target=self._scan, name="soak-exporter-scan", daemon=True)

    def start(self) -> MetricsServer:
        with scan_round():
            for tracker in self.trackers.values():
                tracker.refresh()
        self.server = serve_metrics(self.registry, self.config.listen)
        self._scanner.start()
        for runner in self.probe_runners:
            runner.start()
        if self.pprof_collector is not None:
            self.pprof_collector.start()
        return self.server

    def _scan(self) -> None:
        # Look for exited and restarted processes between scrapes, so a restart is counted
        # even when it happens twice between two scrapes (a scrape only sees the latest).
        # While every service has its process and the last look changed nothing, sleep until
        # one of the watched processes exits (ExitWatch) or IDLE_LOOK_SECONDS pass; while one
        # is missing, or just after a change (a recycled worker's successor may not be up
        # yet), look every scan_interval as before.
        interval = self.config.scan_interval_seconds
        exits = self._exits
        last = [tracker.watched() for tracker in self.trackers.values()]  # as start() left them
        exits.track(identity for group in last for identity in group)
        busy = not all(last) or exits.exited_unseen
        while not self._stopping.is_set():
            idle = not busy and exits.available
            exits.wait(max(IDLE_LOOK_SECONDS, interval) if idle else interval)
            if self._stopping.is_set():
                return
            self.scan_rounds += 1
            with scan_round():
                for tracker in self.trackers.values():
                    try:
                        tracker.refresh()
                    except Exception:  # never let the scanner die; the scrape still works
                        log.exception("scan failed for %s", tracker.matcher.describe())
            seen = [tracker.watched() for tracker in self.trackers.values()]
            exits.track(identity for group in seen for identity in group)
            busy = seen != last or not all(seen) or exits.exited_unseen
            last = seen

    def stop(self) -> None:
        self._stopping.set()
        self._exits.wake()
        for runner in self.probe_runners:
            runner.stop()
        if self.pprof_collector is not None:
            self.pprof_collector.stop()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._scanner.is_alive():
            self._scanner.join(timeout=5)
        if not self._scanner.is_alive():
            self._exits.close()
