"""Speed and peak memory of a full analysis (all default rules) of a fleet, end to end through a
real Prometheus and a real VictoriaMetrics.

    python -m benchmarks analyzer_speed           # 100 services x 48 h (minutes the first time)
    python -m benchmarks analyzer_speed --full    # issue 16's sizes: 1,000 x 48 h, 300 x 7 days
    python -m benchmarks analyzer_speed --services 300 --hours 24 --stores prometheus

Each fleet holds, per service, its memory every 15 s and twelve other series (start time,
restarts, up, CPU, fds, threads, a pool, a probe, GC counters) every 60 s, a quarter of the
services leaking 5 MB/h; and five load scenarios (requests, schedule, a latency histogram).

The data is generated once per size and cached under
``~/.cache/soakwatch-bench/analyzer_speed-<hash of the parameters>/``: ``prometheus/`` holds
TSDB blocks made by promtool runs in parallel, one a day of data, moved into one data
directory (Prometheus is started with compaction of persisted blocks off, so the cache never
changes under a measurement); ``victoriametrics/`` is its storage, loaded through
``/api/v1/import`` (JSON lines). Delete a folder to rebuild it; 1,000 services x 48 h takes
several minutes to load.

Measured for each size and store, in child processes (so one analysis' memory never counts
in another's):

- the analysis as soak-analyze runs it (the step read from the data, default ``jobs``): the
  wall time of ``analyze()`` and the peak RSS of the child's whole process tree (its worker
  processes and forkserver included), sampled every 20 ms, the CPU seconds of that tree and
  of the store serving it (which shares the cores: on a loaded machine compare these, the
  wall time moves with the load); best of two runs;
- the reference, in the same run: the same analysis in one process, unsharded, one query at
  a time, split into fetch (HTTP and decoding), decoding alone, and compute (the same answers
  judged again from memory); its results must be the measured ones, digest for digest;
- the store's own PromQL ``deriv()`` of every memory series over the range (one query).

Targets (exit status 1 when one is missed, 2 when a store's binary is missing): every size
under 10 s end to end on each store; peak RSS under 1 GB for the 48 h sizes (issue 16).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import requests

from benchmarks._measure import machine, ratio, write_results
from benchmarks._servers import import_openmetrics, start_prometheus, start_victoriametrics
from soakwatch.run.localservers import MissingBinaryError

GENERATOR_VERSION = 1  # bump when fleet() changes, so the caches are rebuilt
START = 19675 * 86400.0  # 2023-11-14 00:00 UTC, a day boundary: one promtool block a day
FINE_SECONDS = 15.0
COARSE_SECONDS = 60.0
SCENARIOS = 5
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
MB = 1e6
DAY = 86400.0
TARGET_SECONDS = 10.0
TARGET_PEAK_RSS_BYTES = 1e9
DEFAULT_SIZES = ((100, 48),)
FULL_SIZES = ((1000, 48), (300, 168))
STORES = ("prometheus", "victoriametrics")
CACHE = Path.home() / ".cache" / "soakwatch-bench"
# Prometheus with no compaction of persisted blocks: the cached blocks stay as promtool made them
PROMETHEUS_ARGS = ("--storage.tsdb.min-block-duration=2h", "--storage.tsdb.max-block-duration=2h")

Labels = dict[str, str]
FleetSeries = tuple[str, Labels, np.ndarray, np.ndarray]


def fleet(services: int, hours: int, seed: int = 1) -> Iterator[FleetSeries]:
    """Every series of the fleet, one metric after the other (as OpenMetrics wants them);
    each drawn from its own seed, so any part can be made alone. Values are whole numbers
    (bytes, counts), as the exporter's are."""
    fine = START + np.arange(0.0, hours * 3600.0, FINE_SECONDS)
    coarse = fine[:: int(COARSE_SECONDS // FINE_SECONDS)]
    span = coarse - START

    def service(i: int) -> Labels:
        return {
            "service": f"svc{i:04d}",
            "instance": f"10.0.{i // 250}.{i % 250}:9000",
            "job": "soak",
        }

    per_service: list[
        tuple[str, dict[str, str], Callable[[np.random.Generator, int], np.ndarray]]
    ] = [
        ("soak_process_start_time_seconds", {}, lambda r, i: np.full(coarse.size, START - 60)),
        ("soak_process_restarts_total", {}, lambda r, i: np.zeros(coarse.size)),
        ("soak_process_up", {}, lambda r, i: np.ones(coarse.size)),
        ("soak_process_cpu_seconds_total", {}, lambda r, i: np.floor(span * 0.05)),
        ("soak_process_open_fds", {}, lambda r, i: 40.0 + (r.random(coarse.size) < 0.02)),
        ("soak_process_threads", {}, lambda r, i: np.full(coarse.size, 12.0)),
        (
            "soak_pool_connections",
            {"pool": "db", "state": "established"},
            lambda r, i: 10.0 + (r.random(coarse.size) < 0.01),
        ),
        ("soak_probe_success", {"probe": "http"}, lambda r, i: np.ones(coarse.size)),
    ]
    for gen in ("0", "1"):
        per_service += [
            (
                "soak_gc_collected_objects_total",
                {"generation": gen},
                lambda r, i: np.cumsum(r.poisson(1200, coarse.size)).astype(float),
            ),
            (
                "soak_gc_examined_objects_total",
                {"generation": gen},
                lambda r, i: np.cumsum(r.poisson(2800, coarse.size)).astype(float),
            ),
        ]
    for i in range(services):
        rng = np.random.default_rng([seed, i, 0])
        leak = 5 * MB if i % 4 == 3 else 0.0
        period = rng.uniform(300, 900)
        hours_in = (fine - START) / 3600.0
        rss = 200 * MB + leak * hours_in + ((fine - START) % period) / period * 30 * MB
        rss += rng.normal(0, 1 * MB, fine.size)
        yield "soak_process_resident_memory_bytes", service(i), fine, np.round(rss)
    for k, (name, extra, make) in enumerate(per_service, start=1):
        for i in range(services):
            yield (
                name,
                {**service(i), **extra},
                coarse,
                make(np.random.default_rng([seed, i, k]), i),
            )
    load_rng = np.random.default_rng([seed, services, 99])
    totals = [
        np.cumsum(load_rng.poisson(6000, coarse.size)).astype(float) for _ in range(SCENARIOS)
    ]
    for k, total in enumerate(totals):
        load = {"scenario": f"s{k}", "instance": "load:9100", "job": "load"}
        yield "soak_load_requests_total", {**load, "outcome": "ok"}, coarse, total
        yield (
            "soak_load_requests_total",
            {**load, "outcome": "error"},
            coarse,
            np.floor(total / 1000),
        )
    for k, total in enumerate(totals):
        load = {"scenario": f"s{k}", "instance": "load:9100", "job": "load"}
        yield "soak_load_scheduled_total", load, coarse, total + np.floor(total / 1000)
    for k, total in enumerate(totals):
        load = {"scenario": f"s{k}", "instance": "load:9100", "job": "load"}
        for index, le in enumerate(BUCKETS):
            share = 1.0 if le == "+Inf" else min(0.3 + 0.12 * index, 0.99)
            yield (
                "soak_load_request_duration_seconds_bucket",
                {**load, "le": le},
                coarse,
                np.floor(total * share),
            )


def time_range(hours: int) -> tuple[float, float]:
    """First and last sample time of a fleet of ``hours``."""
    return START, START + hours * 3600.0 - FINE_SECONDS


def cache_dir(services: int, hours: int) -> Path:
    parameters = {
        "generator": GENERATOR_VERSION,
        "services": services,
        "hours": hours,
        "fine": FINE_SECONDS,
        "coarse": COARSE_SECONDS,
        "start": START,
    }
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]
    return CACHE / f"analyzer_speed-{digest}"


def _progress(text: str) -> None:
    print(f"  .. {text}", flush=True)


def load_prometheus(services: int, hours: int, target: Path) -> float:
    """The fleet as TSDB blocks in ``target`` (made unless cached); the seconds it took."""
    if (target / "complete").exists():
        return 0.0
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    began = time.perf_counter()
    days = max(1, int(np.ceil(hours * 3600.0 / DAY)))
    with tempfile.TemporaryDirectory(prefix="soakwatch-om-", dir=target.parent) as work_dir:
        work = Path(work_dir)
        files = [work / f"day{d}.om" for d in range(days)]
        handles = [path.open("w") for path in files]
        try:
            family = ""
            written = 0
            for name, labels, t, v in fleet(services, hours):
                if name != family:
                    family = name
                    for handle in handles:
                        handle.write(f"# TYPE {name} unknown\n")
                inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
                prefix = f"{name}{{{inner}}} "
                cuts = np.searchsorted(t, START + DAY * np.arange(days + 1))
                for d, handle in enumerate(handles):
                    a, b = cuts[d], cuts[d + 1]
                    values = v[a:b].astype(np.int64).tolist()
                    stamps = t[a:b].astype(np.int64).tolist()
                    handle.write(
                        "".join(
                            f"{prefix}{value} {stamp}\n"
                            for value, stamp in zip(values, stamps, strict=True)
                        )
                    )
                written += t.size
                if written >= 5_000_000:
                    _progress(f"prometheus: {name} written")
                    written = 0
        finally:
            for handle in handles:
                handle.write("# EOF\n")
                handle.close()
        _progress(f"prometheus: {days} day files written, promtool on 2 at a time")

        def promtool(day: int) -> float:
            seconds = import_openmetrics(
                files[day], work / f"blocks{day}", timeout=7200, max_block_duration="24h"
            )
            _progress(f"prometheus: day {day + 1}/{days} imported in {seconds:.0f} s")
            files[day].unlink()
            return seconds

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(promtool, range(days)))
        for day in range(days):
            for block in (work / f"blocks{day}").iterdir():
                block.rename(target / block.name)
    (target / "complete").write_text("")
    return time.perf_counter() - began


def load_victoriametrics(services: int, hours: int, target: Path) -> float:
    """The fleet in a VictoriaMetrics storage at ``target`` (loaded unless cached)."""
    if (target / "complete").exists():
        return 0.0
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    began = time.perf_counter()
    with start_victoriametrics(target / "data") as server:
        batch: list[bytes] = []
        size = 0
        sent = 0

        def post() -> None:
            answer = requests.post(f"{server.url}/api/v1/import", data=b"".join(batch), timeout=600)
            if answer.status_code not in (200, 204):
                raise RuntimeError(f"VictoriaMetrics import: {answer.status_code} {answer.text}")

        for name, labels, t, v in fleet(services, hours):
            line = orjson.dumps(
                {
                    "metric": {"__name__": name, **labels},
                    "values": v,
                    "timestamps": (t * 1000).astype(np.int64),
                },
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            batch.append(line + b"\n")
            size += len(line)
            sent += t.size
            if size > 32e6:
                post()
                batch, size = [], 0
                _progress(f"victoriametrics: {sent / 1e6:.0f} M samples imported")
        if batch:
            post()
        requests.get(f"{server.url}/internal/force_flush", timeout=600).raise_for_status()
        wait_idle(server.pid, "victoriametrics merges")
    (target / "complete").write_text("")
    return time.perf_counter() - began


def wait_idle(pid: int, what: str, limit_seconds: float = 300.0) -> None:
    """Until the process uses under 5 % of a core over 2 s (background merges, compaction)."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        if process.cpu_percent(interval=2.0) < 5.0:
            return
    _progress(f"{what}: still busy after {limit_seconds:.0f} s")


def run_measured(argv: list[str]) -> tuple[dict[str, Any], int]:
    """Run a child to its end; its JSON answer and the peak RSS of its whole process tree."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = psutil.Popen(argv, stdout=out, stderr=err, cwd=Path(__file__).parent.parent)
        peak = 0
        while child.poll() is None:
            total = 0
            try:
                tree = [child, *child.children(recursive=True)]
            except psutil.NoSuchProcess:
                tree = []
            for process in tree:
                with suppress(psutil.NoSuchProcess):
                    total += process.memory_info().rss
            peak = max(peak, total)
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"{argv} failed:\n{err.read().decode(errors='replace')[-3000:]}")
        return json.loads(out.read().decode().strip().splitlines()[-1]), peak


def child_analyze(url: str, start: float, end: float, jobs: int | None) -> dict[str, Any]:
    """In a child: the analysis as soak-analyze runs it."""
    from soakwatch.analyzer import PrometheusSource, analyze
    from soakwatch.rules import load_rules

    rules = load_rules()
    source = PrometheusSource(url, min_step_seconds=None, timeout_seconds=300)
    began = time.perf_counter()
    report = analyze(source, rules, start, end, jobs=jobs)
    seconds = time.perf_counter() - began
    return {
        "seconds": seconds,
        "results": len(report.results),
        "verdict": report.verdict,
        "digest": _digest(report),
        # the analysing process alone, the report it holds included (KiB on Linux)
        "own_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "cpu_seconds": _cpu_seconds(),
    }


def _process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used so far (a store serving the analysis)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _cpu_seconds() -> float:
    """CPU seconds of this process and its ended children (the workers, once their pool has
    closed): what the analysis costs whatever else the machine runs."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child_reference(url: str, start: float, end: float) -> dict[str, Any]:
    """In a child: the same analysis in one process, unsharded, one query at a time, timed
    in parts; then judged again from the answers held in memory (the compute alone)."""
    from soakwatch.analyzer import PrometheusSource, analyze
    from soakwatch.analyzer import sources as sources_module
    from soakwatch.analyzer.series import Series
    from soakwatch.rules import load_rules
    from soakwatch.rules.model import MetricSelector

    decoding = [0.0]
    decode = sources_module.decode_answer

    def timed_decode(content: bytes) -> Any:
        began = time.perf_counter()
        try:
            return decode(content)
        finally:
            decoding[0] += time.perf_counter() - began

    sources_module.decode_answer = timed_decode
    inner = PrometheusSource(url, min_step_seconds=None, timeout_seconds=300)

    class Recording:
        """The PrometheusSource, its answers kept; after ``replay``, answered from them."""

        description = inner.description

        def __init__(self) -> None:
            self.answers: dict[tuple[str, str, float | None], list[Series]] = {}
            self.replay = False
            self.fetch_seconds = 0.0

        def fetch(
            self,
            selector: MetricSelector,
            start: float,
            end: float,
            *,
            suffix: str = "",
            step_seconds: float | None = None,
        ) -> list[Series]:
            key = (selector.promql(), suffix, step_seconds)
            if not self.replay:
                began = time.perf_counter()
                self.answers[key] = inner.fetch(
                    selector, start, end, suffix=suffix, step_seconds=step_seconds
                )
                self.fetch_seconds += time.perf_counter() - began
            return self.answers[key]

    rules = load_rules()
    source = Recording()
    began = time.perf_counter()
    report = analyze(source, rules, start, end, parallel=1, jobs=1)
    total = time.perf_counter() - began
    source.replay = True
    began = time.perf_counter()
    analyze(source, rules, start, end, parallel=1, jobs=1)
    compute = time.perf_counter() - began
    return {
        "seconds": total,
        "fetch_seconds": source.fetch_seconds,
        "decode_seconds": decoding[0],
        "compute_seconds": compute,
        "samples": int(sum(s.t.size for group in source.answers.values() for s in group)),
        "http_requests": inner.requests_made,
        "results": len(report.results),
        "digest": _digest(report),
        "cpu_seconds": _cpu_seconds(),
    }


def _digest(report: Any) -> str:
    document = [r.to_json() for r in report.results]
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def time_deriv(url: str, start: float, end: float) -> float:
    """Seconds of the store's own deriv() of every memory series over the range."""
    began = time.perf_counter()
    answer = requests.get(
        f"{url}/api/v1/query",
        params={
            "query": f"deriv(soak_process_resident_memory_bytes[{end - start + 1:.0f}s])",
            "time": f"{end:.3f}",
        },
        timeout=300,
    )
    answer.raise_for_status()
    return time.perf_counter() - began


def measure(store: str, services: int, hours: int, jobs: int | None) -> dict[str, Any]:
    """Load (or reuse) the fleet in ``store``, start it, measure the analysis there."""
    folder = cache_dir(services, hours) / store
    start, end = time_range(hours)
    print(f"{store}, {services} services x {hours} h ({folder}):", flush=True)
    with ExitStack() as stack:
        if store == "prometheus":
            load_seconds = load_prometheus(services, hours, folder)
            server: Any = stack.enter_context(start_prometheus(folder, PROMETHEUS_ARGS))
        else:
            load_seconds = load_victoriametrics(services, hours, folder)
            server = stack.enter_context(start_victoriametrics(folder / "data"))
        if load_seconds:
            _progress(f"loaded in {load_seconds:.0f} s (cached for the next runs)")
        wait_idle(server.pid, store, limit_seconds=120)
        python = [sys.executable, "-m", "benchmarks.analyzer_speed"]
        window = [server.url, f"{start:.3f}", f"{end:.3f}"]
        reference, reference_rss = run_measured([*python, "--child-reference", *window])
        _progress(
            f"reference (one process, unsharded): {reference['seconds']:.2f} s = fetch "
            f"{reference['fetch_seconds']:.2f} s (decoding {reference['decode_seconds']:.2f} s) "
            f"+ compute {reference['compute_seconds']:.2f} s "
            f"({reference['cpu_seconds']:.0f} CPU-s with the compute pass); "
            f"{reference['samples'] / 1e6:.1f} M samples, {reference['http_requests']} requests"
        )
        jobs_args = ["--jobs", str(jobs)] if jobs else []
        runs = []
        store_cpu = []
        for _ in range(2):
            # the store's own CPU while it serves the analysis: it shares the machine's cores
            before = _process_cpu_seconds(server.pid)
            runs.append(run_measured([*python, "--child-analyze", *window, *jobs_args]))
            store_cpu.append(_process_cpu_seconds(server.pid) - before)
        deriv_seconds = time_deriv(server.url, start, end)
        load_average = os.getloadavg()[0]
    best, peak = min(runs, key=lambda run: run[0]["seconds"])
    same = all(run[0]["digest"] == reference["digest"] for run in runs)
    seconds = " / ".join(
        f"{answer['seconds']:.2f} ({answer['cpu_seconds']:.1f} CPU-s, the store {store:.1f})"
        for (answer, _rss), store in zip(runs, store_cpu, strict=True)
    )
    peaks = " / ".join(
        f"{rss / 1e6:.0f} (its own {answer['own_peak_rss_bytes'] / 1e6:.0f})"
        for answer, rss in runs
    )
    speedup = ratio(reference["seconds"], best["seconds"]) or 0.0
    to_deriv = ratio(best["seconds"], deriv_seconds) or 0.0
    print(
        f"  analysis: {seconds} s, peak RSS {peaks} MB; {best['results']} results, "
        f"{best['verdict']}; the reference's results: {'identical' if same else 'DIFFERENT'}; "
        f"{speedup:.1f}x faster than the reference; {to_deriv:.0f}x the store's deriv() "
        f"({deriv_seconds * 1e3:.0f} ms); load average {load_average:.1f} on "
        f"{os.cpu_count()} cores",
        flush=True,
    )
    return {
        "store": store,
        "services": services,
        "hours": hours,
        "load_seconds": load_seconds,
        "analysis_seconds": [run[0]["seconds"] for run in runs],
        "analysis_peak_rss_bytes": [run[1] for run in runs],
        "analysis_own_peak_rss_bytes": [run[0]["own_peak_rss_bytes"] for run in runs],
        "analysis_cpu_seconds": [run[0]["cpu_seconds"] for run in runs],
        "store_cpu_seconds": store_cpu,
        "load_average_1m": load_average,
        "seconds": best["seconds"],
        "peak_rss_bytes": peak,
        "results": best["results"],
        "verdict": best["verdict"],
        "results_identical_to_reference": same,
        "reference": {**reference, "peak_rss_bytes": reference_rss},
        "deriv_seconds": deriv_seconds,
        "speedup_over_reference": speedup,
        "ratio_to_deriv": to_deriv,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks analyzer_speed")
    parser.add_argument("--full", action="store_true", help="1,000 x 48 h and 300 x 7 days")
    parser.add_argument("--services", type=int, help="one size: this many services")
    parser.add_argument("--hours", type=int, default=48, help="with --services (default 48)")
    parser.add_argument("--stores", default=",".join(STORES), help="prometheus,victoriametrics")
    parser.add_argument("--jobs", type=int, help="worker processes (default: analyze()'s)")
    parser.add_argument("--child-analyze", nargs=3, metavar=("URL", "START", "END"))
    parser.add_argument("--child-reference", nargs=3, metavar=("URL", "START", "END"))
    args = parser.parse_args(argv)
    if args.child_analyze:
        url, start, end = args.child_analyze
        print(json.dumps(child_analyze(url, float(start), float(end), args.jobs)))
        return 0
    if args.child_reference:
        url, start, end = args.child_reference
        print(json.dumps(child_reference(url, float(start), float(end))))
        return 0
    if args.services:
        sizes: tuple[tuple[int, int], ...] = ((args.services, args.hours),)
    else:
        sizes = FULL_SIZES if args.full else DEFAULT_SIZES
    stores = [s for s in args.stores.split(",") if s]
    cases: list[dict[str, Any]] = []
    missing: list[str] = []
    missed: list[str] = []
    for services, hours in sizes:
        for store in stores:
            try:
                case = measure(store, services, hours, args.jobs)
            except MissingBinaryError as exc:
                print(f"{store}: {exc}")
                missing.append(store)
                continue
            cases.append(case)
            what = f"{services} services x {hours} h via {store}"
            met = case["seconds"] < TARGET_SECONDS
            print(
                f"target: {what} < {TARGET_SECONDS:.0f} s -> {case['seconds']:.1f} s "
                f"({'meets' if met else 'MISSES'})"
            )
            if not met:
                missed.append(f"{what}: {case['seconds']:.1f} s")
            if hours <= 48:
                met = case["peak_rss_bytes"] < TARGET_PEAK_RSS_BYTES
                print(
                    f"target: {what} peak RSS < 1 GB -> {case['peak_rss_bytes'] / 1e9:.2f} GB "
                    f"({'meets' if met else 'MISSES'})"
                )
                if not met:
                    missed.append(f"{what}: peak RSS {case['peak_rss_bytes'] / 1e9:.2f} GB")
            if not case["results_identical_to_reference"]:
                missed.append(f"{what}: results differ from the unsharded reference")
    write_results(
        "analyzer_speed",
        {
            "benchmark": "analyzer_speed",
            "machine": machine(),
            "cases": cases,
            "targets_missed": missed,
            "stores_missing": missing,
        },
    )
    if missing:
        print("cannot judge without: " + ", ".join(missing))
        return 2
    print("all targets met" if not missed else "MISSED: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
