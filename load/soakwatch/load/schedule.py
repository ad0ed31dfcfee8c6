"""When each request of an open-model load is due: a constant arrival rate shaped by stages.

The rate rises linearly from 0 over the ramp-up, holds during the steady stage and falls
linearly to 0 over the ramp-down. Event ``k`` (counting from 0) is due at the time ``t`` where
the expected number of arrivals, the integral of the rate, reaches ``k + 1/2``. The schedule is
fixed before the run starts: a slow server never delays it, and latency is measured from the
time an event was due, not from when it was sent (no coordinated omission, see Gil Tene,
"How NOT to measure latency", 2015).

Sharding: with ``shard=(i, n)``, an instance takes the events ``i, i+n, i+2n, ...`` of the full
schedule, so n instances together send exactly the full schedule, interleaved.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Schedule", "Stages", "shard_share"]


@dataclass(frozen=True)
class Stages:
    """Ramp-up, steady and ramp-down lengths of a run, in seconds."""

    ramp_up_seconds: float
    steady_seconds: float
    ramp_down_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.ramp_up_seconds + self.steady_seconds + self.ramp_down_seconds

    def fraction(self, elapsed_seconds: float) -> float:
        """The share (0..1) of the full rate or connection count at ``elapsed_seconds``."""
        t = elapsed_seconds
        if t < 0 or t >= self.total_seconds:
            return 0.0
        if t < self.ramp_up_seconds:
            return t / self.ramp_up_seconds
        t -= self.ramp_up_seconds
        if t < self.steady_seconds:
            return 1.0
        t -= self.steady_seconds
        return 1.0 - t / self.ramp_down_seconds

    def area(self, elapsed_seconds: float) -> float:
        """The integral of ``fraction`` from 0 to ``elapsed_seconds`` (full-rate seconds)."""
        up, steady, down = self.ramp_up_seconds, self.steady_seconds, self.ramp_down_seconds
        t = min(max(elapsed_seconds, 0.0), self.total_seconds)
        if t <= up:
            return t * t / (2 * up) if up else 0.0
        area = up / 2
        t -= up
        if t <= steady:
            return area + t
        area += steady
        t -= steady
        return area + t - t * t / (2 * down)

    def time_at_area(self, area: float) -> float:
        """The inverse of ``area``: when the integral of ``fraction`` reaches ``area``."""
        up, steady, down = self.ramp_up_seconds, self.steady_seconds, self.ramp_down_seconds
        if area <= 0:
            return 0.0
        if area <= up / 2:
            return math.sqrt(2 * up * area)
        area -= up / 2
        if area <= steady:
            return up + area
        area -= steady
        # t - t^2 / (2 down) = area  ->  t = down - sqrt(down^2 - 2 down area)
        return up + steady + down - math.sqrt(max(down * down - 2 * down * area, 0.0))


def shard_share(total: int, shard: tuple[int, int]) -> int:
    """Shard ``i`` of ``n``'s part of ``total`` whole things (the parts add up to ``total``)."""
    index, count = shard
    return total * (index + 1) // count - total * index // count


@dataclass(frozen=True)
class Schedule:
    """Due times (seconds from the start) of a rate of ``rate_per_second`` at full stage."""

    rate_per_second: float
    stages: Stages
    shard: tuple[int, int] = (0, 1)

    def expected_events(self) -> int:
        """How many events this shard's schedule holds over the whole run."""
        total = self.stages.area(self.stages.total_seconds) * self.rate_per_second
        index, count = self.shard
        whole = math.floor(total - 0.5) + 1 if total >= 0.5 else 0  # events k with k+1/2 <= total
        return len(range(index, whole, count))

    def due_times(self) -> Iterator[float]:
        """The due times in order; an iterator, so nothing is held for a long run."""
        index, count = self.shard
        end = self.stages.total_seconds
        rate = self.rate_per_second
        k = index
        while True:
            due = self.stages.time_at_area((k + 0.5) / rate)
            if due >= end or (k + 0.5) / rate > self.stages.area(end):
                return
            yield due
            k += count
