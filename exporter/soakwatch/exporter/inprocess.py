"""The exporter inside a Python service: GC hooks, pool adapters and the process's own
``soak_process_*`` series, served on ``/metrics`` from a daemon thread.

    from soakwatch.exporter import start_in_process
    exporter = start_in_process(port=9464, service="api", pools={"db": engine, "cache": redis})
    ...
    exporter.stop()

By default everything goes into prometheus-client's default ``REGISTRY``, next to the service's
own metrics; prometheus-client's ``process_*``, ``python_info`` and ``python_gc_*`` collectors are
kept as they are and only added to a registry that lacks them, so no series is duplicated.

Under a pre-fork server (gunicorn, uwsgi) every worker is its own process with its own GC,
pools and memory, so each worker runs its own exporter: ``workers=N`` makes ``port`` the first
of N ports, each worker binds the first one free and labels its series ``worker="K"`` (K = the
port's offset). A recycled worker frees its port and its replacement binds it again, so labels
and ports stay bounded and stable. (prometheus-client's multiprocess mode is no help here: it
aggregates only its own metric types through files and leaves custom collectors out, and every
soakwatch series comes from a custom collector.) Call it in gunicorn's ``post_fork`` hook, not
at import time, so that the master never holds a port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from prometheus_client import GCCollector, PlatformCollector
from prometheus_client import ProcessCollector as ClientProcessCollector
from prometheus_client.core import REGISTRY, CollectorRegistry

from soakwatch.errors import SoakwatchError
from soakwatch.exporter.attribution import AllocationSampler, AttributionConfig
from soakwatch.exporter.gc_collector import GcCollector
from soakwatch.exporter.pool_adapters import InProcessPoolCollector
from soakwatch.exporter.server import start_metrics_http_server

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
        worker: str | None = None,
    ) -> None:
        self.service = service
        #: the ``worker`` label of this process's series (``workers=N``), else None
        self.worker = worker
        self.registry = registry
        self._collectors = collectors
        self._gc_collector = gc_collector
        self._httpd = httpd
        self._thread = thread
        self.host: str | None = httpd.server_address[0] if httpd is not None else None
        self.port: int | None = httpd.server_address[1] if httpd is not None else None

    @property
    def sampler(self) -> AllocationSampler | None:
        """The allocation-site sampler (``attribution=``), else None."""
        return next((c for c in self._collectors if isinstance(c, AllocationSampler)), None)

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
            if isinstance(collector, AllocationSampler):
                collector.stop()
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
    workers: int | None = None,
    attribution: bool | AttributionConfig = False,
) -> InProcessExporter:
    """Publish this process's soak metrics under ``service`` and serve ``/metrics``.

    ``port=0`` binds a free port (see ``.port``); ``port=None`` serves nothing (the service
    already exposes ``registry``). ``pools`` maps a pool name to a pool object (see
    ``pool_adapters``). ``process_metrics`` adds ``soak_process_*`` for this PID. ``workers=N``
    (one exporter per pre-fork worker, see the module): serve on the first free port of
    ``port`` .. ``port + N - 1`` and label every soakwatch series ``worker="K"``, K the offset.
    ``attribution=True`` (or an ``AttributionConfig``) also samples allocation sites with
    tracemalloc in short windows and serves the top ones as ``soak_allocation_site_bytes``
    (see ``soakwatch.exporter.attribution``); where tracemalloc cannot run it logs a warning
    and serves ``soak_allocation_attribution_up 0`` instead of failing.
    Raises SoakwatchError when this registry already has a soakwatch in-process exporter or
    ``workers`` comes without a fixed port, TypeError for a pool object no adapter knows,
    OSError when the port (every one of the N) cannot be bound."""
    if not service:
        raise SoakwatchError("start_in_process needs a service name (service=...)")
    if workers is not None and (workers < 1 or not port):
        raise SoakwatchError(
            "start_in_process(workers=N) needs N >= 1 and a fixed first port (port=9464), "
            f"got workers={workers!r}, port={port!r}"
        )
    registry = REGISTRY if registry is None else registry
    collectors: list[Any] = []
    httpd, thread, worker = None, None, None
    if workers is not None:
        assert port is not None
        # bound before anything is registered: the port decides the worker label
        httpd, thread, worker = _bind_first_free(port, workers, host, registry)
    try:
        _ensure_client_collectors(registry, collectors)
        try:
            gc_collector = GcCollector(service, registry=registry, worker=worker)
        except ValueError:
            raise SoakwatchError(
                "a soakwatch in-process exporter is already running in this registry; "
                "stop() it before starting another"
            ) from None
        collectors.append(gc_collector)
        if pools:
            collectors.append(
                InProcessPoolCollector(service, pools, registry=registry, worker=worker)
            )
        if process_metrics:
            from soakwatch.exporter.process import ProcessCollector

            collectors.append(
                ProcessCollector({service: os.getpid}, registry=registry, worker=worker)
            )
        if attribution:
            config = attribution if isinstance(attribution, AttributionConfig) else None
            sampler = AllocationSampler(service, config, registry=registry, worker=worker)
            collectors.append(sampler)
            sampler.start()
        if port is not None and httpd is None:
            httpd, thread = start_metrics_http_server(registry, host, port)
    except BaseException:
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        for collector in reversed(collectors):
            if isinstance(collector, GcCollector):
                collector.close()
            else:
                if isinstance(collector, AllocationSampler):
                    collector.stop()
                registry.unregister(collector)
        raise
    return InProcessExporter(
        service, registry, collectors[:], gc_collector, httpd=httpd, thread=thread, worker=worker
    )


def _bind_first_free(
    first: int, count: int, host: str, registry: CollectorRegistry
) -> tuple[Any, threading.Thread, str]:
    """Serve on the first port of ``first`` .. ``first + count - 1`` that binds; the bind is
    the lock between workers (two listeners never share a port), so no file or master is
    needed. Returns the server, its thread and the worker label (the offset)."""
    for offset in range(count):
        try:
            httpd, thread = start_metrics_http_server(registry, host, first + offset)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return httpd, thread, str(offset)
    raise OSError(
        errno.EADDRINUSE,
        f"every port of {first}..{first + count - 1} is in use "
        f"(start_in_process(workers={count}) serves one worker per port)",
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
