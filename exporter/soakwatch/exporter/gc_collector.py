"""GC metrics of a Python service through ``gc.callbacks``: collections, collected and examined
objects, and pause time, per generation (``soak_gc_*`` in docs/metrics.md).

"Examined objects" of one collection of generation *g* is the number of GC-tracked objects in
generations 0..*g* when the collection starts: exactly the set the collector traverses. It is
counted at the ``start`` callback without touching the objects themselves:

- a full collection (*g* = 2): an exact count walks the whole heap once (``gc.freeze()``, then
  ``gc.get_freeze_count()`` walks the list in C without allocating, then ``gc.unfreeze()``; if
  the service froze objects itself they stay frozen and the count lists the generations
  instead). That walk is O(heap) and costs 10-16 % of the full collection that follows (6 M
  objects: ~75 ms before a ~490 ms collection), so it is spent within a budget: exact counts may
  use at most ``full_count_budget`` (default 3 %) of the time the full collections themselves
  take. Between exact counts, the full collection's figure is estimated from
  ``sys.getallocatedblocks()`` (the object allocator's live blocks: O(pools), ~0.7 ms on a
  6 M-object heap) times the ratio of examined objects to blocks at the last exact count (a
  ratio estimator). At the next exact count, the estimates made since the last one are corrected
  as if the ratio had moved linearly between the two counts (the difference is added to the
  counter then, never making it go down). The first full collection is always counted exactly.
  The estimate follows the heap as long as what it holds keeps its mix of tracked objects
  (dicts, lists, instances) and untracked blocks (str, int, bytes, dict and list storage);
  benchmarks/gc_hooks.py prints its error on a steady heap, a growing one and one that grows by
  strings only (the worst case).
  ``full_count_budget=math.inf`` counts every full collection exactly.
- a young collection (*g* < 2): ``len(gc.get_objects(generation=i))`` summed over i <= g. The
  young generations hold a few thousand objects at most with the default thresholds, but
  counting still costs about 9 ns per object, roughly a tenth of the collection that follows,
  and young collections are by far the most frequent. So by default, per young generation, one
  collection at a random position in each block of 8 consecutive ones is counted and weighted
  by 8 (stratified sampling, from a private random stream): unbiased whatever the period of the
  workload, with a relative error that falls as the run grows (benchmarks/gc_hooks.py prints
  it). ``young_sample_every=1`` counts every collection.

The definition holds for CPython's generational collector (3.10 to 3.13). Elsewhere the
examined series is not published (absent, so a rule that needs it says inconclusive).
"""

from __future__ import annotations

import bisect
import gc
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    REGISTRY,
    CollectorRegistry,
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = [
    "DEFAULT_FULL_COUNT_BUDGET",
    "PAUSE_BUCKETS_SECONDS",
    "GcCollector",
    "count_examined_objects",
    "examined_supported",
]

GENERATIONS = 3
# The share of the full collections' own time that exact counts of examined objects may use.
DEFAULT_FULL_COUNT_BUDGET = 0.03
PAUSE_BUCKETS_SECONDS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


def examined_supported() -> bool:
    """True where "examined objects" is defined: CPython's three-generation collector."""
    return platform.python_implementation() == "CPython" and (3, 10) <= sys.version_info < (3, 14)


def count_examined_objects(generation: int) -> int:
    """The number of GC-tracked objects in generations 0..``generation`` (see module doc).
    Call it only from a ``start`` callback or with the collector otherwise idle."""
    if generation >= GENERATIONS - 1 and gc.get_freeze_count() == 0:
        gc.freeze()
        try:
            return gc.get_freeze_count()
        finally:
            gc.unfreeze()
    if generation == 0:
        return len(gc.get_objects(0))
    return sum(len(gc.get_objects(i)) for i in range(min(generation, GENERATIONS - 1) + 1))


def _young_count(generation: int) -> int:
    return sum(len(gc.get_objects(i)) for i in range(generation + 1))


class GcCollector:
    """Counts what the cyclic garbage collector does, from the moment it is constructed.

    ``close()`` removes the callback (and unregisters from the registry it was given)."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry | None = REGISTRY,
        *,
        count_examined: bool = True,
        young_sample_every: int = 8,
        full_count_budget: float = DEFAULT_FULL_COUNT_BUDGET,
        worker: str | None = None,
    ) -> None:
        if young_sample_every < 1:
            raise ValueError("young_sample_every must be at least 1")
        if not full_count_budget >= 0:
            raise ValueError("full_count_budget must be at least 0")
        self.service = service
        self.worker = worker  # a ``worker`` label on every series (one exporter per worker)
        self._every = young_sample_every
        self._random = random.Random()  # never draw from (and shift) the service's own stream
        # Per young generation: the index of the current collection in its block of
        # ``young_sample_every``, and the index in the block that is counted.
        self._position = [0, 0]
        self._pick = [self._random.randrange(self._every) for _ in range(2)]
        self._count_examined = count_examined and examined_supported()
        self._collections = [0] * GENERATIONS
        self._collected = [0] * GENERATIONS
        self._examined = [0] * GENERATIONS
        self._pause_sum = [0.0] * GENERATIONS
        self._pause_buckets = [[0] * (len(PAUSE_BUCKETS_SECONDS) + 1) for _ in range(GENERATIONS)]
        self._started = 0.0
        # Full collections: the budget of exact counts, the time they took so far (and the
        # last one), the full collections' own pause time, and examined objects per allocated
        # block at the last exact count (None: no exact count yet).
        self._full_budget = full_count_budget
        self._count_seconds = 0.0
        self._last_count_seconds = 0.0
        self._full_pause_seconds = 0.0
        self._per_block: float | None = None
        # Estimated full collections since the last exact count: how many, and the sum of
        # their allocated blocks weighted by their position (1, 2, ...) after that count.
        self._estimated_since = 0
        self._weighted_blocks = 0
        self.full_counts_exact = 0  # full collections counted exactly
        self.full_counts_estimated = 0  # ... and estimated from the allocated blocks
        self._registry = registry
        gc.callbacks.append(self._on_gc)
        if registry is not None:
            try:
                registry.register(self)
            except ValueError:
                gc.callbacks.remove(self._on_gc)
                raise

    def close(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._registry is not None:
            self._registry.unregister(self)
            self._registry = None

    def _on_gc(
        self,
        phase: str,
        info: dict[str, Any],
        _clock: Callable[[], float] = time.perf_counter,
        _bucket: Callable[[Sequence[float], float], int] = bisect.bisect_left,
        _objects: Callable[[int], list[Any]] = gc.get_objects,
    ) -> None:
        # Runs inside every collection: a few list updates, globals bound as defaults.
        generation = info["generation"]
        if phase == "start":
            if self._count_examined:
                if generation == GENERATIONS - 1:
                    self._examined[generation] += self._full_examined(_clock)
                else:
                    position = self._position[generation]
                    if position == self._pick[generation]:
                        young = len(_objects(0)) if generation == 0 else _young_count(generation)
                        self._examined[generation] += young * self._every
                    position += 1
                    if position == self._every:
                        position = 0
                        self._pick[generation] = self._random.randrange(self._every)
                    self._position[generation] = position
            self._started = _clock()  # after counting: the pause is the collector's own
            return
        pause = _clock() - self._started
        self._collections[generation] += 1
        self._collected[generation] += info["collected"]
        self._pause_sum[generation] += pause
        self._pause_buckets[generation][_bucket(PAUSE_BUCKETS_SECONDS, pause)] += 1
        if generation == GENERATIONS - 1:
            self._full_pause_seconds += pause

    def _full_examined(self, clock: Callable[[], float]) -> int:
        """Examined objects of the full collection starting now: exact within the budget,
        else estimated from the allocated blocks (see the module doc)."""
        blocks = sys.getallocatedblocks()
        per_block = self._per_block
        if (
            per_block is None
            or self._full_budget == math.inf
            or self._count_seconds + self._last_count_seconds
            <= self._full_budget * self._full_pause_seconds
        ):
            began = clock()
            exact = count_examined_objects(GENERATIONS - 1)
            took = clock() - began
            self._count_seconds += took
            self._last_count_seconds = took
            self._per_block = exact / blocks if blocks > 0 else None
            self.full_counts_exact += 1
            correction = 0.0
            if per_block is not None and self._per_block is not None and self._estimated_since:
                # The estimates since the last exact count used its ratio; with the ratio
                # moving linearly from that count to this one, the k-th of n collections
                # should have used r_last + (r_now - r_last) * k / n: add the difference.
                n = self._estimated_since + 1
                correction = (self._per_block - per_block) / n * self._weighted_blocks
            self._estimated_since = 0
            self._weighted_blocks = 0
            return max(0, exact + round(correction))  # a counter never goes down
        self.full_counts_estimated += 1
        self._estimated_since += 1
        self._weighted_blocks += self._estimated_since * blocks
        return round(blocks * per_block)

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        labels = (
            ["service", "generation"]
            if self.worker is None
            else ["service", "generation", "worker"]
        )
        extra = [] if self.worker is None else [self.worker]
        collections = CounterMetricFamily(
            "soak_gc_collections",
            "Collections of each generation by the cyclic garbage collector.",
            labels=labels,
        )
        collected = CounterMetricFamily(
            "soak_gc_collected_objects",
            "Unreachable objects the collector freed, by the generation collected.",
            labels=labels,
        )
        examined = CounterMetricFamily(
            "soak_gc_examined_objects",
            "GC-tracked objects in generations 0..g at the start of each collection of g.",
            labels=labels,
        )
        pause = HistogramMetricFamily(
            "soak_gc_pause_seconds",
            "Wall time of each collection, from the start to the stop callback.",
            labels=labels,
        )
        for generation in range(GENERATIONS):
            values = [self.service, str(generation), *extra]
            collections.add_metric(values, self._collections[generation])
            collected.add_metric(values, self._collected[generation])
            if self._count_examined:
                examined.add_metric(values, self._examined[generation])
            counts = list(self._pause_buckets[generation])
            cumulative, buckets = 0, []
            for bound, count in zip((*PAUSE_BUCKETS_SECONDS, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append((_bucket_label(bound), float(cumulative)))
            pause.add_metric(values, buckets, self._pause_sum[generation])
        yield collections
        yield collected
        if self._count_examined:
            yield examined
        yield pause


def _bucket_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
