"""The load driver's own /metrics: the contract's ``soak_load_*`` series (docs/metrics.md),
built fresh from the driver's counters on every scrape, each with a ``shard`` label.

Label sets are bounded: scenario names come from the config, outcomes from a fixed set."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from soakwatch.load.config import DATABASE_KINDS
from soakwatch.load.histogram import BucketedHistogram, Timings
from soakwatch.load.outcomes import OUTCOMES
from soakwatch.load.stats import ScenarioStats

__all__ = ["LoadCollector", "RunInfoCollector"]


class LoadCollector(Collector):
    """Reads ``stats()`` at each scrape; keeps nothing between scrapes."""

    def __init__(
        self,
        stats: Callable[[], Sequence[ScenarioStats]],
        *,
        shard: tuple[int, int] = (0, 1),
        registry: CollectorRegistry | None = None,
        timings: Callable[[], Sequence[Timings]] | None = None,
    ) -> None:
        self._stats = stats
        self._timings = timings
        self._shard = f"{shard[0]}/{shard[1]}"
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        shard = self._shard
        all_stats = list(self._stats())
        requests = CounterMetricFamily(
            "soak_load_requests",
            "Load operations by scenario and outcome class",
            labels=["scenario", "outcome", "shard"],
        )
        duration = HistogramMetricFamily(
            "soak_load_request_duration_seconds",
            "Latency of load operations, measured from the time each was due",
            labels=["scenario", "shard"],
        )
        scheduled = CounterMetricFamily(
            "soak_load_scheduled",
            "Load operations that came due by the schedule (sent or dropped)",
            labels=["scenario", "shard"],
        )
        connections = GaugeMetricFamily(
            "soak_load_open_connections",
            "Connections the driver holds open (websocket, database pools) or uses (http)",
            labels=["kind", "shard"],
        )
        reconnects = CounterMetricFamily(
            "soak_load_reconnects",
            "WebSocket connections re-opened after a drop or failure",
            labels=["scenario", "shard"],
        )
        sessions = CounterMetricFamily(
            "soak_load_sessions_started",
            "Sessions created by the session churn scenarios",
            labels=["shard"],
        )
        db_ops = CounterMetricFamily(
            "soak_load_db_operations",
            "Database operations by database kind and outcome class",
            labels=["db", "outcome", "shard"],
        )
        open_by_kind: dict[str, float] = {}
        db_by_outcome: dict[tuple[str, str], float] = {}
        sessions_total = 0
        for stats in all_stats:
            for outcome in OUTCOMES:
                requests.add_metric([stats.name, outcome, shard], stats.outcomes[outcome])
            cumulative = 0
            buckets = []
            bounds = (*stats.buckets, float("inf"))
            for bound, count in zip(bounds, stats.bucket_counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), float(cumulative)))
            duration.add_metric(
                [stats.name, shard], buckets=buckets, sum_value=stats.histogram.sum_seconds
            )
            scheduled.add_metric([stats.name, shard], stats.scheduled)
            # HTTP connections come and go with the pool: count the ones carrying a request.
            http_like = stats.kind in ("http", "sessions")
            kind = "http" if http_like else stats.kind
            in_use = stats.in_flight if http_like else stats.open_connections
            open_by_kind[kind] = open_by_kind.get(kind, 0) + in_use
            if stats.kind == "websocket":
                reconnects.add_metric([stats.name, shard], stats.reconnects)
            if stats.kind == "sessions":
                sessions_total += stats.sessions_started
            if stats.kind in DATABASE_KINDS:
                for outcome in OUTCOMES:
                    key = (stats.kind, outcome)
                    db_by_outcome[key] = db_by_outcome.get(key, 0) + stats.outcomes[outcome]
        for kind, value in open_by_kind.items():
            connections.add_metric([kind, shard], value)
        for (db, outcome), value in db_by_outcome.items():
            db_ops.add_metric([db, outcome, shard], value)
        sessions.add_metric([shard], sessions_total)
        yield from (requests, duration, scheduled, connections, reconnects, sessions, db_ops)
        if self._timings is not None:
            lag = HistogramMetricFamily(
                "soak_load_schedule_lag_seconds",
                "The driver's own lag: from the time each operation was due to its sending",
                labels=["scenario", "shard"],
            )
            service = HistogramMetricFamily(
                "soak_load_service_duration_seconds",
                "Service time of load operations: from sending each to its reply",
                labels=["scenario", "shard"],
            )
            for stats, timing in zip(all_stats, self._timings(), strict=True):
                lag.add_metric([stats.name, shard], **_histogram(timing.lag))
                service.add_metric([stats.name, shard], **_histogram(timing.service))
            yield from (lag, service)


class RunInfoCollector(Collector):
    """``soak_run_info{run_id,profile,shard} 1`` while ``running()`` is true, nothing otherwise:
    an info series is there or not (never 0), so ``soak_run_info == 1`` means "a run is on"."""

    def __init__(
        self,
        run_id: str,
        profile: str | None,
        running: Callable[[], bool],
        *,
        shard: tuple[int, int] = (0, 1),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._labels = [run_id, profile or "", f"{shard[0]}/{shard[1]}"]
        self._running = running
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "soak_run_info",
            "The soak run this load belongs to (1 while it runs)",
            labels=["run_id", "profile", "shard"],
        )
        if self._running():
            info.add_metric(self._labels, 1.0)
        yield info


def _histogram(hist: BucketedHistogram) -> dict[str, Any]:
    cumulative = 0
    buckets = []
    for bound, count in zip((*hist.bounds, float("inf")), hist.bucket_counts, strict=True):
        cumulative += count
        buckets.append((_le(bound), float(cumulative)))
    return {"buckets": buckets, "sum_value": hist.histogram.sum_seconds}


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
