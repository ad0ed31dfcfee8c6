"""What every benchmark measures with: call timings and their percentiles, a child process's CPU
time, a process's RSS and CPU, ratios against the reference, and the results file."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0]}


def quantiles(seconds: list[float]) -> dict[str, float]:
    """Median and p99 (nearest rank) of durations in seconds, in milliseconds."""
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered) * 1e3,
        "p99_ms": p99 * 1e3,
        "samples": len(ordered),
    }


def time_calls(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    """``quantiles`` of ``repeat`` calls, after one warm-up call (first reads, imports)."""
    call()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return quantiles(seconds)


def run_child(command: list[str], timeout: float) -> tuple[str, float]:
    """Run ``command`` to its end; its output and the CPU seconds it used (from wait4)."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise TimeoutError(f"{command[0]} did not finish in {timeout}s")
            time.sleep(0.05)
        out.seek(0)
        return out.read().decode(errors="replace"), usage.ru_utime + usage.ru_stime


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds ``process`` has used so far."""
    times = process.cpu_times()
    return float(times.user + times.system)


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``; None when either is missing or the reference is zero."""
    return value / reference if value is not None and reference else None


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and say where."""
    path = RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results: {path}", flush=True)
    return path


# -- a process tree's CPU, from /proc ---------------------------------------------------------
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as listing:
                found += [int(c) for c in listing.read().split()]
        except OSError:
            continue
    return found


def _own_cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0  # ended between the listing and the read
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and every process below it (read from
    /proc; children that already ended count in their parent's cutime only once waited for,
    so sample it over a window in which the tree is stable)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _own_cpu_ticks(current)
        todo += _children(current)
    return total / _TICKS


def tree_size(pid: int) -> int:
    """How many processes ``pid``'s tree holds now."""
    count, todo = 0, [pid]
    while todo:
        count += 1
        todo += _children(todo.pop())
    return count
