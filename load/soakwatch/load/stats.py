"""What the driver counts while it runs: per scenario, outcomes and latencies, in fixed-size
structures (a count per outcome class, an HDR-style histogram, the Prometheus buckets). Nothing
here grows with the number of requests."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from soakwatch.load.histogram import LatencyHistogram
from soakwatch.load.outcomes import OUTCOMES

__all__ = ["ScenarioStats"]


@dataclass
class ScenarioStats:
    """Counters of one scenario. ``outcomes`` holds every class from the start (fixed keys)."""

    name: str
    kind: str
    buckets: tuple[float, ...]
    target_rate_per_second: float | None = None
    scheduled: int = 0  # operations that came due
    started: int = 0  # operations sent (scheduled minus dropped)
    in_flight: int = 0
    open_connections: int = 0  # WebSocket connections held, DB pool connections open
    reconnects: int = 0
    sessions_started: int = 0
    skipped_reason: str | None = None
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    bucket_counts: list[int] = field(default_factory=list)  # non-cumulative, +Inf last

    def __post_init__(self) -> None:
        self.bucket_counts = [0] * (len(self.buckets) + 1)

    def record(self, outcome: str, latency_seconds: float | None) -> None:
        """Count one finished operation; ``latency_seconds`` None when it never ran."""
        self.outcomes[outcome] += 1
        if latency_seconds is not None:
            self.histogram.record(latency_seconds)
            self.bucket_counts[bisect_left(self.buckets, latency_seconds)] += 1

    @property
    def completed(self) -> int:
        return sum(self.outcomes.values())

    @property
    def errors(self) -> int:
        return self.completed - self.outcomes["ok"]
