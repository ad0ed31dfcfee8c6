"""Connection pools seen from inside a Python service: what the pool object itself reports,
as ``soak_pool_connections{service,pool,state="in_use"|"idle"}``.

Adapters work by duck typing, so soakwatch depends on none of these libraries:

- SQLAlchemy: an ``Engine``/``AsyncEngine`` (its current ``.pool``, re-read on every scrape since
  ``dispose()`` replaces it) or a ``Pool`` with ``checkedout()`` / ``checkedin()``;
- redis-py: a client (its ``.connection_pool``), a ``ConnectionPool`` (sync or asyncio:
  ``_in_use_connections`` / ``_available_connections``) or a sync ``BlockingConnectionPool``
  (``_connections`` and the idle ones in its ``pool`` queue);
- asyncpg: a ``Pool`` (``get_size()``, ``get_idle_size()``);
- psycopg_pool: a pool with ``get_stats()`` (``pool_size``, ``pool_available``).

The redis-py attributes are private: they are read without the pool's lock (a scrape must
never wait on the service), and an adapter that fails drops its pool's series, never the scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from soakwatch.exporter.exposition import REGISTRY, GaugeMetricFamily, Metric
from soakwatch.exporter.exposition import Registry as CollectorRegistry
from soakwatch.exporter.pools import pool_connections_family

__all__ = ["InProcessPoolCollector", "PoolReading", "adapt_pool"]

logger = logging.getLogger(__name__)


class PoolReading(NamedTuple):
    in_use: int
    idle: int


PoolReader = Callable[[], PoolReading]


def adapt_pool(pool: Any) -> PoolReader:
    """A function reading ``pool`` now. Raises TypeError for an object no adapter knows."""
    if hasattr(pool, "sync_engine"):  # SQLAlchemy AsyncEngine
        pool = pool.sync_engine
    if _has_methods(pool, "checkedout", "checkedin"):  # SQLAlchemy Pool
        return lambda: PoolReading(int(pool.checkedout()), int(pool.checkedin()))
    if _has_methods(getattr(pool, "pool", None), "checkedout", "checkedin"):  # SQLAlchemy Engine
        engine = pool
        return lambda: PoolReading(int(engine.pool.checkedout()), int(engine.pool.checkedin()))
    if hasattr(pool, "connection_pool"):  # a redis-py client
        pool = pool.connection_pool
    if hasattr(pool, "_connections") and hasattr(getattr(pool, "pool", None), "queue"):
        return lambda: _redis_blocking(pool)  # redis-py sync BlockingConnectionPool
    if hasattr(pool, "_in_use_connections") and hasattr(pool, "_available_connections"):
        return lambda: PoolReading(len(pool._in_use_connections), len(pool._available_connections))
    if _has_methods(pool, "get_size", "get_idle_size"):  # asyncpg Pool
        return lambda: _asyncpg(pool)
    if _has_methods(pool, "get_stats"):  # psycopg_pool
        return lambda: _psycopg_pool(pool)
    raise TypeError(
        f"no pool adapter for {type(pool).__module__}.{type(pool).__qualname__}: expected a "
        "SQLAlchemy engine or QueuePool, a redis-py client or pool, an asyncpg or psycopg pool"
    )


def _has_methods(obj: Any, *names: str) -> bool:
    return obj is not None and all(callable(getattr(obj, name, None)) for name in names)


def _redis_blocking(pool: Any) -> PoolReading:
    idle = sum(1 for connection in list(pool.pool.queue) if connection is not None)
    return PoolReading(len(pool._connections) - idle, idle)


def _asyncpg(pool: Any) -> PoolReading:
    size, idle = int(pool.get_size()), int(pool.get_idle_size())
    return PoolReading(size - idle, idle)


def _psycopg_pool(pool: Any) -> PoolReading:
    stats = pool.get_stats()
    size, idle = int(stats.get("pool_size", 0)), int(stats.get("pool_available", 0))
    return PoolReading(size - idle, idle)


class InProcessPoolCollector:
    """``soak_pool_connections`` for named pool objects of this process."""

    def __init__(
        self,
        service: str,
        pools: Mapping[str, Any],
        registry: CollectorRegistry | None = REGISTRY,
        *,
        worker: str | None = None,
    ) -> None:
        self.service = service
        self._worker = {} if worker is None else {"worker": worker}  # one exporter per worker
        # Adapt at once: an unsupported object is an error at start-up, not a silent gap.
        self._readers = {name: adapt_pool(pool) for name, pool in pools.items()}
        if registry is not None:
            registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return pool_connections_family(
            "Connections of the pool, as the pool object reports them (in-process view)."
        )

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for name, read in self._readers.items():
            try:
                reading = read()
            except Exception as exc:  # one broken pool must not cost the others their series
                logger.debug("pool %r could not be read: %s", name, exc)
                continue
            for state, count in (("in_use", reading.in_use), ("idle", reading.idle)):
                labels = {"service": self.service, "pool": name, "state": state, **self._worker}
                family.add_sample(family.name, labels, count)
        yield family
