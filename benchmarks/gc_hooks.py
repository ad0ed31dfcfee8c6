"""Overhead of the in-process GC hooks (soakwatch.exporter.gc_collector) on a GC-heavy workload.

The workload allocates many small reference cycles (so the cyclic collector runs often and
frees something each time) beside a long-lived heap of 200k objects (so full collections have
real work). The same workload is timed without hooks, with a no-op callback (the floor any
gc.callbacks entry costs), with the hooks but without counting examined objects, and with the
full hooks: every round runs each mode once in shuffled order, in one process, on CPU time; the
figure is the median over rounds of (time with / time without) - 1. Target: overhead < 5 %.
It also checks the sampled examined-objects count against an exact one.

    python -m benchmarks gc_hooks            # ~10 s
    python -m benchmarks gc_hooks --long     # ~2 min: more and longer rounds
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time

from benchmarks._measure import write_results
from soakwatch.exporter.gc_collector import GcCollector


class _Node:
    __slots__ = ("next", "payload")

    def __init__(self) -> None:
        self.next: _Node | None = None
        self.payload = [1, 2, 3]


def workload(cycles: int) -> None:
    """Make ``cycles`` garbage cycles of three objects each, plus some short-lived dicts."""
    for i in range(cycles):
        a, b = _Node(), _Node()
        a.next, b.next = b, a
        if i % 4 == 0:
            d: dict[str, object] = {"k": i}
            d["self"] = d


def _timed(cycles: int) -> float:
    # CPU time of this process: the machine is shared, wall time would measure the neighbours.
    started = time.process_time()
    workload(cycles)
    return time.process_time() - started


def _noop(phase: str, info: dict[str, int]) -> None:
    pass


def _examined(collector: GcCollector) -> int:
    for family in collector.collect():
        if family.name == "soak_gc_examined_objects":
            return int(sum(sample.value for sample in family.samples))
    raise RuntimeError("examined objects are not counted on this interpreter")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks gc_hooks")
    parser.add_argument("--long", action="store_true", help="more and longer rounds (~2 min)")
    long = parser.parse_args(argv).long
    rounds = 101 if long else 31
    cycles = 200_000 if long else 60_000
    long_lived = [{"i": i, "v": [i]} for i in range(100_000)]  # ~200k tracked objects
    gc.collect()
    # noop_callback: the floor, what CPython charges for calling any gc.callbacks entry.
    modes = ("none", "noop_callback", "hooks_without_examined", "hooks")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    gc_counts: dict[str, list[int]] = {mode: [] for mode in modes}
    _timed(cycles // 5)  # warm-up
    ratios: dict[str, list[float]] = {mode: [] for mode in modes[1:]}
    shuffler = random.Random(1)
    for _ in range(rounds):
        # Every round runs each mode once, in a shuffled order: drift on a shared machine hits
        # all modes alike, and the per-round ratios pair runs that were close in time.
        order = list(modes)
        shuffler.shuffle(order)
        round_times: dict[str, float] = {}
        for mode in order:
            collector = None
            if mode == "noop_callback":
                gc.callbacks.append(_noop)
            elif mode != "none":
                collector = GcCollector("bench", registry=None, count_examined=(mode == "hooks"))
            before = sum(s["collections"] for s in gc.get_stats())
            round_times[mode] = _timed(cycles)
            times[mode].append(round_times[mode])
            gc_counts[mode].append(sum(s["collections"] for s in gc.get_stats()) - before)
            if collector is not None:
                collector.close()
            if mode == "noop_callback":
                gc.callbacks.remove(_noop)
        for mode in modes[1:]:
            ratios[mode].append(round_times[mode] / round_times["none"])
    # Accuracy of the sampled generation-0 counts: a sampled and an exact collector side by side.
    sampled = GcCollector("bench", registry=None)
    exact = GcCollector("bench", registry=None, young_sample_every=1)
    workload(cycles * (30 if long else 10))
    sampled.close()
    exact.close()
    estimate, truth = _examined(sampled), _examined(exact)
    result: dict[str, object] = {
        "python": platform.python_version(),
        "rounds": rounds,
        "cycles_per_round": cycles,
        "long_lived_objects": len(long_lived) * 2,
        "median_seconds": {mode: statistics.median(times[mode]) for mode in modes},
        "collections_per_round": {mode: statistics.median(gc_counts[mode]) for mode in modes},
        # Median over rounds of (time with hooks / time without, same round) - 1.
        "overhead_ratio": {mode: statistics.median(ratios[mode]) - 1.0 for mode in modes[1:]},
        "target_overhead_ratio": 0.05,
        "examined_objects_exact": truth,
        "examined_objects_sampled_estimate": estimate,
        "examined_relative_error": estimate / truth - 1.0,
    }
    print(f"workload: {cycles} cycles/round, {rounds} alternating rounds per mode")
    for mode in modes:
        print(
            f"  {mode:24s} median {statistics.median(times[mode]) * 1000:8.1f} ms"
            f"  ({statistics.median(gc_counts[mode]):.0f} collections/round)"
        )
    for mode, ratio in result["overhead_ratio"].items():  # type: ignore[attr-defined]
        print(f"  overhead {mode:24s} {ratio * 100:+6.2f} %  (target < 5 %)")
    print(
        f"  examined objects: exact {truth}, with young-generation sampling {estimate} "
        f"({(estimate / truth - 1.0) * 100:+.2f} %)"
    )
    write_results("gc_hooks", result)
    overhead = result["overhead_ratio"]["hooks"]  # type: ignore[index]
    return 0 if overhead < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
