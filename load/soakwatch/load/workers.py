"""``--workers N``: one load run in N processes, one summary and one /metrics.

The parent (``Driver(config, workers=N)``) starts N children (``python -m
soakwatch.load.workers``), each a ``Driver`` of one slice of the schedule: worker ``j`` of a
run that is shard ``i/M`` runs shard ``i + M*j`` of ``M*N`` (the ``--shard`` rule: the N
slices are exactly shard ``i/M``'s events, interleaved). Each child writes a snapshot of its
counters and histograms as one JSON line on stdout every ``SNAPSHOT_SECONDS`` and a last one at
its end (a Python scenario's snapshot holds its steps' counters too); the parent adds the latest
snapshots of all children into its own counters, which its /metrics, status line, summary,
bottleneck warnings and thresholds (at the end, and ``abort_on_fail`` during the run) read as they
read a single process's. The children judge no thresholds: a slice's figures are not the run's.
A stop (SIGINT/SIGTERM, ``driver.stop``) is passed to every child as SIGTERM: each ends
gracefully and reports its last counters.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import os
import pickle
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from soakwatch.errors import SoakwatchError
from soakwatch.load.config import LoadConfig
from soakwatch.load.histogram import BucketedHistogram, LatencyHistogram, Timings
from soakwatch.load.stats import ScenarioStats

if TYPE_CHECKING:
    from soakwatch.load.driver import Driver

__all__ = ["default_workers", "merge_snapshots", "run_loop", "snapshot", "worker_config"]

SNAPSHOT_SECONDS = 0.5
_COUNTERS = (
    "scheduled",
    "started",
    "in_flight",
    "open_connections",
    "reconnects",
    "sessions_started",
)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def run_loop(main: Any, config: LoadConfig | None = None) -> Any:
    """``asyncio.run(main)``, on uvloop when it is installed (the fast HTTP path is about
    twice as cheap per request on it). For a process that is the load driver (the CLI, a
    worker): what was imported before the run (with ``config``: every module its scenarios
    will import, aiohttp and the client libraries included) is frozen out of the garbage
    collector's generations, so a full collection during the run does not walk it (a pause is
    lag: importing aiohttp after the freeze left a 50 ms collection in the run)."""
    runner: Callable[[Any], Any] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    if config is not None:
        from soakwatch.load.driver import preload

        preload(config)
    gc.collect()
    gc.freeze()
    return runner(main)


def worker_config(config: LoadConfig, index: int, workers: int) -> LoadConfig:
    """The config of worker ``index`` of ``workers``: its slice of the schedule, and none of
    the parent's outputs (the parent serves /metrics, writes the summary, publishes run info)."""
    shard_index, shard_count = config.shard
    return replace(
        config,
        shard=(shard_index + shard_count * index, shard_count * workers),
        summary_path=None,
        metrics_listen=None,
        run_id=None,
        thresholds=(),  # judged by the parent, on the merged figures
    )


def _counts(item: ScenarioStats) -> dict[str, Any]:
    return {
        **{name: getattr(item, name) for name in _COUNTERS},
        "outcomes": {k: v for k, v in item.outcomes.items() if v},
        "histogram": item.histogram.to_dict(),
        "bucket_counts": list(item.bucket_counts),
    }


def _merge_counts(item: ScenarioStats, parts: Sequence[Mapping[str, Any]]) -> None:
    """Set ``item``'s counters and latency histogram to the sums of ``parts``."""
    for name in _COUNTERS:
        setattr(item, name, sum(int(p[name]) for p in parts))
    for outcome in item.outcomes:
        item.outcomes[outcome] = sum(int(p["outcomes"].get(outcome, 0)) for p in parts)
    item.histogram = LatencyHistogram.merged(
        LatencyHistogram.from_dict(p["histogram"]) for p in parts
    )
    counts = [p["bucket_counts"] for p in parts]
    item.bucket_counts = [sum(column) for column in zip(*counts, strict=True)]


def snapshot(
    stats: Sequence[ScenarioStats],
    timings: Sequence[Timings],
    steps: Mapping[str, Mapping[str, ScenarioStats]] | None = None,
) -> dict[str, Any]:
    """The counters and histograms of a worker (with its Python scenarios' ``steps``), as JSON."""
    steps = steps or {}
    return {
        "scenarios": [
            {
                **_counts(item),
                "skipped": item.skipped_reason,
                "lag": timing.lag.to_dict(),
                "service": timing.service.to_dict(),
                **(
                    {"steps": {n: _counts(s) for n, s in list(steps[item.name].items())}}
                    if item.name in steps
                    else {}
                ),
            }
            for item, timing in zip(stats, timings, strict=True)
        ]
    }


def merge_snapshots(
    snapshots: Sequence[dict[str, Any]],
    stats: Sequence[ScenarioStats],
    timings: Sequence[Timings],
    steps: Mapping[str, dict[str, ScenarioStats]] | None = None,
) -> None:
    """Set ``stats``, ``timings`` and ``steps`` to the sums of the workers' latest
    ``snapshots``."""
    for position, (item, timing) in enumerate(zip(stats, timings, strict=True)):
        parts = [s["scenarios"][position] for s in snapshots]
        _merge_counts(item, parts)
        item.skipped_reason = next((p["skipped"] for p in parts if p["skipped"]), None)
        if steps is not None and item.name in steps:
            _merge_steps(steps[item.name], [p.get("steps", {}) for p in parts], item.buckets)
        lag = BucketedHistogram(timing.lag.bounds)
        service = BucketedHistogram(timing.service.bounds)
        for part in parts:
            lag.merge(BucketedHistogram.from_dict(lag.bounds, part["lag"]))
            service.merge(BucketedHistogram.from_dict(service.bounds, part["service"]))
        timing.lag, timing.service = lag, service


def _merge_steps(
    steps: dict[str, ScenarioStats],
    parts: Sequence[Mapping[str, Mapping[str, Any]]],
    buckets: tuple[float, ...],
) -> None:
    """``steps`` set to the sums of the workers' step counters, in the order the steps were
    first seen (each worker keeps at most MAX_STEPS names; beyond that here too, the rest add
    up under OTHER_STEP)."""
    from soakwatch.load.python import MAX_STEPS, OTHER_STEP, new_step

    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for part in parts:
        for name, counts in part.items():
            if name not in by_name and len(by_name) >= MAX_STEPS:
                name = OTHER_STEP
            by_name.setdefault(name, []).append(counts)
    merged: dict[str, ScenarioStats] = {}
    for name, of_workers in by_name.items():
        step = new_step(name, buckets)
        _merge_counts(step, of_workers)
        merged[name] = step
    steps.clear()
    steps.update(merged)


class WorkerSet:
    """The parent's side: N children, their latest snapshots, their end."""

    def __init__(self, config: LoadConfig, count: int) -> None:
        self.config = config
        self.count = count
        self.processes: list[asyncio.subprocess.Process] = []
        self.latest: list[dict[str, Any] | None] = [None] * count
        self.errors: list[str] = []
        self._stop_sent: str | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for index in range(self.count):
            payload = base64.b64encode(pickle.dumps(worker_config(self.config, index, self.count)))
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "soakwatch.load.workers",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=False,
            )
            assert process.stdin is not None
            process.stdin.write(payload + b"\n")
            await process.stdin.drain()
            process.stdin.close()
            self.processes.append(process)
            if self._stop_sent is not None:  # stopped while the workers were starting
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    async def follow(self, on_update: Any) -> None:
        """Read every child's snapshots until all have ended; ``on_update()`` after each."""
        await asyncio.gather(*(self._read(i, p, on_update) for i, p in enumerate(self.processes)))

    async def _read(self, index: int, process: asyncio.subprocess.Process, on_update: Any) -> None:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                break
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "error" in message:
                self.errors.append(str(message["error"]))
                self.stop("a worker failed")
            else:
                self.latest[index] = message
                on_update()
        code = await process.wait()
        if code == -signal.SIGTERM and self._stop_sent is not None:
            return  # stopped before it could say anything: it had sent nothing
        if code != 0 and not self.errors:
            self.errors.append(f"load worker {index} exited with status {code}")

    def stop(self, reason: str) -> None:
        if self._stop_sent is not None:
            return
        self._stop_sent = reason
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()


# -- the child's side -----------------------------------------------------------------------
_early_stop: list[str] = []  # a signal that came before the loop's handlers were in place


def _stop_early(signum: int, _: Any) -> None:
    _early_stop.append(signal.Signals(signum).name)


def _snapshot_of(driver: Driver) -> dict[str, Any]:
    return {
        **snapshot(driver.stats, driver.timings, driver.steps),
        "active_seconds": driver.active_seconds(),
    }


async def _child(config: LoadConfig) -> int:
    from soakwatch.load.driver import Driver

    driver = Driver(config, warn=lambda _: None)  # the parent warns, from the merged figures
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, driver.stop, signal.Signals(signum).name)
    if _early_stop:
        driver.stop(_early_stop[0])
    parent = os.getppid()

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    async def report() -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_SECONDS)
            if os.getppid() != parent:  # the parent is gone (killed): no orphan load
                driver.stop("parent gone")
                return
            try:
                emit(_snapshot_of(driver))
            except BrokenPipeError:
                driver.stop("parent gone")
                return

    reporter = asyncio.create_task(report())
    try:
        await driver.run()
    except SoakwatchError as exc:
        emit({"error": str(exc)})
        return 2
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    with contextlib.suppress(BrokenPipeError):
        emit({**_snapshot_of(driver), "final": True})
    return 0


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_early)
    config = pickle.loads(base64.b64decode(sys.stdin.buffer.readline()))
    if not isinstance(config, LoadConfig):
        raise SystemExit("soak load worker: expected a LoadConfig on stdin")
    code: int = run_loop(_child(config), config)
    return code


if __name__ == "__main__":
    sys.exit(main())
