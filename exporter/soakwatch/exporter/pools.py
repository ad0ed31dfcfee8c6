"""Connection pools seen from outside: the TCP connections a watched process holds to each
configured endpoint, counted by state (``soak_pool_connections{service,pool,state}``).

A pool is an endpoint (``port``, optionally ``host``); every TCP socket of the process whose
remote address is that endpoint counts. ``state="established"`` is always published (0 when
there are none) so a pool that drains to nothing stays visible; other states (``syn_sent``,
``close_wait``, ...) appear while they are non-zero. Nothing is published while the process
is down or the OS refuses to list its sockets.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psutil

from soakwatch.exporter.config import PoolSpec
from soakwatch.exporter.exposition import REGISTRY, Collector, GaugeMetricFamily, Metric
from soakwatch.exporter.exposition import Registry as CollectorRegistry
from soakwatch.exporter.matching import ProcessTracker

__all__ = ["PoolCollector", "count_pool_connections", "normalize_address"]

log = logging.getLogger(__name__)


_IPV4_MAPPED = bytes(10) + b"\xff\xff"


def normalize_address(address: str) -> str:
    """The canonical text of an IP address; an IPv4-mapped IPv6 address becomes IPv4.

    Through inet_pton/inet_ntop, which write what ``str(ipaddress.ip_address(...))`` does
    (RFC 5952 for IPv6), without importing ipaddress (0.45 MB) into the sidecar."""
    bare = address.split("%", 1)[0]
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    try:
        packed = socket.inet_pton(family, bare)
    except OSError:
        return address
    if family == socket.AF_INET6:
        if packed[:12] == _IPV4_MAPPED:
            return socket.inet_ntop(socket.AF_INET, packed[12:])
        if packed[:12] == bytes(12) and packed[12:14] != b"\0\0":
            # inet_ntop writes this (deprecated IPv4-compatible) form as ::a.b.c.d, ipaddress
            # and so the configured host (config.resolve_host) in hexadecimal
            high, low = packed[12] << 8 | packed[13], packed[14] << 8 | packed[15]
            return f"::{high:x}:{low:x}"
    return socket.inet_ntop(family, packed)


def count_pool_connections(
    connections: Iterable[Any], pools: Sequence[PoolSpec]
) -> dict[str, Counter[str]]:
    """For each pool name, the number of connections by lower-case state. ``connections`` are
    psutil connection tuples (``raddr`` empty for listening sockets)."""
    counts: dict[str, Counter[str]] = {pool.name: Counter() for pool in pools}
    by_port: dict[int, list[PoolSpec]] = {}
    for pool in pools:
        by_port.setdefault(pool.port, []).append(pool)
    for conn in connections:
        raddr = conn.raddr
        if not raddr:
            continue
        candidates = by_port.get(raddr.port)
        if not candidates:
            continue
        address = normalize_address(raddr.ip)
        for pool in candidates:
            if not pool.addresses or address in pool.addresses:
                counts[pool.name][str(conn.status).lower()] += 1
    return counts


def pool_connections_family(documentation: str) -> GaugeMetricFamily:
    """An empty ``soak_pool_connections{service,pool,state}`` family: one name and label set
    for the outside (sidecar) and the inside (in-process) view of a pool."""
    return GaugeMetricFamily(
        "soak_pool_connections", documentation, labels=["service", "pool", "state"]
    )


class PoolCollector(Collector):
    """``soak_pool_connections`` for each service's configured pools, from the sockets of the
    process its tracker currently watches."""

    def __init__(
        self,
        pools: Mapping[str, tuple[ProcessTracker, Sequence[PoolSpec]]],
        *,
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._pools = {
            service: (tracker, tuple(specs)) for service, (tracker, specs) in pools.items() if specs
        }
        # psutil >= 6 renamed Process.connections to net_connections: decide once.
        self._method = (
            "net_connections" if hasattr(psutil.Process, "net_connections") else "connections"
        )
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return pool_connections_family(
            "TCP connections from the process to the pool's endpoint, by state (sidecar view)."
        )

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for service, (tracker, specs) in self._pools.items():
            connections = self._group_connections(service, tracker)
            if connections is None:
                continue
            for pool_name, by_state in count_pool_connections(connections, specs).items():
                by_state.setdefault("established", 0)
                for state, count in sorted(by_state.items()):
                    family.add_metric([service, pool_name, state], count)
        if family.samples:
            yield family

    def _group_connections(self, service: str, tracker: ProcessTracker) -> list[Any] | None:
        """The TCP sockets of the service: of the matched process alone, or of it and its
        descendants for a process group (``children: sum | each``: a pre-fork server's
        database connections are held by its workers). None when the matched process cannot
        be read; a worker that exits while it is being read is left out of this scrape."""
        if tracker.children == "none":
            process = tracker.current(max_age_seconds=1.0)
            members = [process] if process is not None else []
        else:
            members = [m.process for m in tracker.members(max_age_seconds=1.0)]
        if not members:
            return None
        connections: list[Any] = []
        for index, process in enumerate(members):
            try:
                connections += getattr(process, self._method)(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
                if index == 0:
                    log.debug("cannot list sockets of %s: %s", service, exc)
                    return None
        return connections
