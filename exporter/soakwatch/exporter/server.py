"""The sidecar exporter assembled from a config: one registry holding the process, pool and
probe collectors, a background scanner that notices restarts between scrapes, and the HTTP
server that serves ``/metrics`` (IPv4 or IPv6, port 0 for a free one)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from soakwatch.exporter.config import ExporterConfig, ListenAddress
from soakwatch.exporter.matching import ProcessTracker, matcher_for, scan_round
from soakwatch.exporter.pools import PoolCollector
from soakwatch.exporter.process import ProcessCollector

__all__ = ["MergedCollector", "MetricsServer", "SidecarExporter", "serve_metrics"]

log = logging.getLogger(__name__)


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


def serve_metrics(registry: CollectorRegistry, listen: ListenAddress) -> MetricsServer:
    """Serve ``registry`` on ``listen`` in a daemon thread. Raises OSError if it cannot bind."""
    httpd, thread = start_http_server(listen.port, addr=listen.host, registry=registry)
    return MetricsServer(httpd, thread)


class MergedCollector(Collector):
    """Several collectors publishing the same families (one probe runner per service) as one,
    so that each family appears once in the exposition."""

    def __init__(self, collectors: Sequence[Any]) -> None:
        self._collectors = list(collectors)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for collector in self._collectors:
            for family in collector.collect():
                kept = merged.get(family.name)
                if kept is None:
                    merged[family.name] = family
                else:
                    kept.samples.extend(family.samples)
        yield from merged.values()


def _probe_runners(config: ExporterConfig) -> list[Any]:
    services = [s for s in config.services if s.probes]
    if not services:
        return []
    from soakwatch.exporter.probes import ProbeRunner  # only when probes are configured

    return [ProbeRunner(s.name, s.probes, registry=None) for s in services]


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
        self.server: MetricsServer | None = None
        self._stopping = threading.Event()
        self._scanner = threading.Thread(target=self._scan, name="soak-exporter-scan", daemon=True)

    def start(self) -> MetricsServer:
        with scan_round():
            for tracker in self.trackers.values():
                tracker.refresh()
        self.server = serve_metrics(self.registry, self.config.listen)
        self._scanner.start()
        for runner in self.probe_runners:
            runner.start()
        return self.server

    def _scan(self) -> None:
        # Look for exited and restarted processes between scrapes, so a restart is counted
        # even when it happens twice between two scrapes (a scrape only sees the latest).
        while not self._stopping.wait(self.config.scan_interval_seconds):
            with scan_round():
                for tracker in self.trackers.values():
                    try:
                        tracker.refresh()
                    except Exception:  # never let the scanner die; the scrape still works
                        log.exception("scan failed for %s", tracker.matcher.describe())

    def stop(self) -> None:
        self._stopping.set()
        for runner in self.probe_runners:
            runner.stop()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._scanner.is_alive():
            self._scanner.join(timeout=5)
