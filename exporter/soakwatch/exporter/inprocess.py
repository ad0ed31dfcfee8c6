"""The exporter inside a Python service: GC hooks, pool adapters and the process's own
``soak_process_*`` series, served on ``/metrics`` from a daemon thread.

    from soakwatch.exporter import start_in_process
    exporter = start_in_process(port=9464, service="api", pools={"db": engine, "cache": redis})
    ...
    exporter.stop()

By default everything goes into prometheus-client's default ``REGISTRY``, next to the service's
own metrics; prometheus-client's ``process_*``, ``python_info`` and ``python_gc_*`` collectors are
kept as they are and only added to a registry that lacks them, so no series is duplicated.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    start_http_server,
)
from prometheus_client import ProcessCollector as ClientProcessCollector
from prometheus_client.core import REGISTRY, CollectorRegistry

from soakwatch.errors import SoakwatchError
from soakwatch.exporter.gc_collector import GcCollector
from soakwatch.exporter.pool_adapters import InProcessPoolCollector

__all__ = ["DEFAULT_PORT", "InProcessExporter", "start_in_process"]

DEFAULT_PORT = 9464


class InProcessExporter:
    """What ``start_in_process`` started; ``stop()`` undoes all of it (also as a context
    manager). ``port`` is the port actually bound (useful with ``port=0``)."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        collectors: list[Any],
        gc_collector: GcCollector,
        httpd: Any | None,
        thread: threading.Thread | None,
    ) -> None:
        self.service = service
        self.registry = registry
        self._collectors = collectors
        self._gc_collector = gc_collector
        self._httpd = httpd
        self._thread = thread
        self.host: str | None = httpd.server_address[0] if httpd is not None else None
        self.port: int | None = httpd.server_address[1] if httpd is not None else None

    @property
    def url(self) -> str | None:
        """``http://host:port/metrics``, or None when not serving."""
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving, remove the GC callback, unregister what was registered. Idempotent."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._gc_collector.close()
        for collector in self._collectors:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)
        self._collectors = []

    def __enter__(self) -> InProcessExporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_process(
    port: int | None = DEFAULT_PORT,
    service: str = "",
    host: str = "127.0.0.1",
    registry: CollectorRegistry | None = None,
    pools: Mapping[str, Any] | None = None,
    *,
    process_metrics: bool = True,
) -> InProcessExporter:
    """Publish this process's soak metrics under ``service`` and serve ``/metrics``.

    ``port=0`` binds a free port (see ``.port``); ``port=None`` serves nothing (the service
    already exposes ``registry``). ``pools`` maps a pool name to a pool object (see
    ``pool_adapters``). ``process_metrics`` adds ``soak_process_*`` for this PID. Raises
    SoakwatchError when this registry already has a soakwatch in-process exporter, TypeError for
    a pool object no adapter knows, OSError when the port cannot be bound."""
    if not service:
        raise SoakwatchError("start_in_process needs a service name (service=...)")
    registry = REGISTRY if registry is None else registry
    collectors: list[Any] = []
    try:
        _ensure_client_collectors(registry, collectors)
        try:
            gc_collector = GcCollector(service, registry=registry)
        except ValueError:
            raise SoakwatchError(
                "a soakwatch in-process exporter is already running in this registry; "
                "stop() it before starting another"
            ) from None
        collectors.append(gc_collector)
        if pools:
            collectors.append(InProcessPoolCollector(service, pools, registry=registry))
        if process_metrics:
            from soakwatch.exporter.process import ProcessCollector

            collectors.append(ProcessCollector({service: os.getpid}, registry=registry))
        httpd, thread = (None, None)
        if port is not None:
            httpd, thread = start_http_server(port, addr=host, registry=registry)
    except BaseException:
        for collector in reversed(collectors):
            if isinstance(collector, GcCollector):
                collector.close()
            else:
                registry.unregister(collector)
        raise
    return InProcessExporter(
        service, registry, collectors[:], gc_collector, httpd=httpd, thread=thread
    )


def _ensure_client_collectors(registry: CollectorRegistry, added: list[Any]) -> None:
    """Add prometheus-client's process, platform and GC collectors where they are missing.

    In the default registry they are there already (unless the service removed them on
    purpose): keep them and add nothing. A registry rejects a duplicate series with
    ValueError, which is how "already there" is detected without private attributes."""
    if registry is REGISTRY:
        return
    for factory in (
        lambda: ClientProcessCollector(registry=registry),
        lambda: PlatformCollector(registry=registry),
        lambda: GCCollector(registry=registry),
    ):
        with contextlib.suppress(ValueError):
            added.append(factory())
