"""Speed of a full analysis (all rules): N services x 48 h at 15 s, split into fetch and compute.

- compute: ``analyze()`` over an in-memory source holding the series (no I/O at all), for 100
  services by default;
- fetch: the same series served by a real Prometheus (blocks made with promtool) and read over
  its HTTP API with range queries; by default for 10 services (the import of 100 services x 48 h
  takes minutes), extrapolated linearly to 100; ``--full`` loads and fetches all 100.

    python -m benchmarks analyzer_speed            # about a minute
    python -m benchmarks analyzer_speed --full     # 100 services through Prometheus

Targets (printed with their figures; exit status 1 if one is missed, 2 if Prometheus or
promtool is missing so the end-to-end time cannot be judged): 100 services end to end under
10 s (measured with --full, else projected from the 10-service fetch), and the peak RSS of the
benchmark process, series in memory included, under 1 GB. (Issue 16's fleet sizes, 1,000
services x 48 h and 300 x 7 days, belong with the fleet-scale analyzer work.)
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._measure import ratio, write_results
from benchmarks._servers import import_openmetrics, start_prometheus
from soakwatch.analyzer import PrometheusSource, analyze
from soakwatch.analyzer.series import Series
from soakwatch.rules import load_rules
from soakwatch.rules.model import MetricSelector

HOURS = 48
INTERVAL = 15.0
SCENARIOS = 5
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
MB = 1e6
TARGET_SECONDS = 10.0  # 100 services x 48 h end to end
TARGET_PEAK_RSS_BYTES = 1e9


class MemorySource:
    """A Source over series held in memory (the pure-compute reference)."""

    description = "memory"

    def __init__(self, series: list[Series]) -> None:
        self.by_name: dict[str, list[Series]] = {}
        for s in series:
            self.by_name.setdefault(s.name, []).append(s)

    def fetch(
        self,
        selector: MetricSelector,
        start: float,
        end: float,
        *,
        suffix: str = "",
        step_seconds: float | None = None,
    ) -> list[Series]:
        return [
            s.between(start, end)
            for s in self.by_name.get(selector.metric + suffix, [])
            if selector.matches(s.labels)
        ]


class RecordingSource:
    """Wraps a source; after ``replay = True`` answers every query from what it recorded."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner
        self.description = inner.description
        self.answers: dict[tuple[str, str, float | None], list[Series]] = {}
        self.replay = False

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
            self.answers[key] = self.inner.fetch(
                selector, start, end, suffix=suffix, step_seconds=step_seconds
            )
        return self.answers[key]


def make_series(services: int, seed: int = 1) -> tuple[list[Series], float, float]:
    rng = np.random.default_rng(seed)
    t = 1.7e9 + np.arange(0.0, HOURS * 3600.0, INTERVAL)
    x = (t - t[0]) / 3600.0
    out: list[Series] = []
    for i in range(services):
        labels = {"service": f"svc{i:03d}", "instance": f"10.0.0.{i}:9000", "job": "soak"}
        leak = rng.choice([0.0, 0.0, 0.0, 5.0]) * MB
        period = rng.uniform(300, 900)
        rss = 200 * MB + leak * x + ((t - t[0]) % period) / period * 30 * MB
        rss += rng.normal(0, 1 * MB, t.size)
        out += [
            Series("soak_process_resident_memory_bytes", labels, t, rss),
            Series("soak_process_start_time_seconds", labels, t, np.full(t.size, t[0] - 60)),
            Series("soak_process_restarts_total", labels, t, np.zeros(t.size)),
            Series("soak_process_up", labels, t, np.ones(t.size)),
            Series(
                "soak_pool_connections",
                {**labels, "pool": "db", "state": "established"},
                t,
                np.full(t.size, 10.0) + (rng.random(t.size) < 0.01),
            ),
            Series("soak_probe_success", {**labels, "probe": "http"}, t, np.ones(t.size)),
        ]
        for gen in ("0", "1"):
            g = {**labels, "generation": gen}
            out += [
                Series(
                    "soak_gc_collected_objects_total",
                    g,
                    t,
                    np.cumsum(rng.poisson(300, t.size)).astype(float),
                ),
                Series(
                    "soak_gc_examined_objects_total",
                    g,
                    t,
                    np.cumsum(rng.poisson(700, t.size)).astype(float),
                ),
            ]
    for k in range(SCENARIOS):
        load = {"scenario": f"s{k}", "instance": "load:9100", "job": "load"}
        total = np.cumsum(rng.poisson(1500, t.size)).astype(float)
        for index, le in enumerate(BUCKETS):
            share = 1.0 if le == "+Inf" else min(0.3 + 0.12 * index, 0.99)
            out.append(
                Series(
                    "soak_load_request_duration_seconds_bucket",
                    {**load, "le": le},
                    t,
                    np.floor(total * share),
                )
            )
        out += [
            Series("soak_load_requests_total", {**load, "outcome": "ok"}, t, total),
            Series(
                "soak_load_requests_total", {**load, "outcome": "error"}, t, np.floor(total * 0.001)
            ),
        ]
    return out, float(t[0]), float(t[-1])


def time_compute(services: int) -> dict[str, Any]:
    series, start, end = make_series(services)
    source = MemorySource(series)
    rules = load_rules()
    began = time.perf_counter()
    report = analyze(source, rules, start, end)
    seconds = time.perf_counter() - began
    return {
        "services": services,
        "series": len(series),
        "samples": int(sum(s.t.size for s in series)),
        "compute_seconds": seconds,
        "results": len(report.results),
        "verdict": report.verdict,
    }


def time_fetch(services: int) -> dict[str, Any]:
    """Load the series into a real Prometheus with promtool, then time analyze() against it."""
    from soakwatch.recording import format_sample

    if not shutil.which("promtool") or not shutil.which("prometheus"):
        return {"skipped": "promtool/prometheus not installed"}
    series, start, end = make_series(services)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soakwatch-speed-")))
        began = time.perf_counter()
        with (work / "data.om").open("w") as handle:
            by_name: dict[str, list[Series]] = {}
            for s in series:
                by_name.setdefault(s.name, []).append(s)
            for name, group in by_name.items():
                handle.write(f"# TYPE {name} unknown\n")
                for s in group:
                    labels = sorted(s.labels.items())
                    handle.writelines(
                        format_sample(name, labels, float(v), float(ts)) + "\n"
                        for ts, v in zip(s.t, s.v, strict=True)
                    )
            handle.write("# EOF\n")
        write_seconds = time.perf_counter() - began
        import_seconds = import_openmetrics(work / "data.om", work / "tsdb", timeout=3600)
        (work / "data.om").unlink()
        prometheus = stack.enter_context(start_prometheus(work / "tsdb"))
        rules = load_rules()
        source = PrometheusSource(prometheus.url, timeout_seconds=120)
        recorder = RecordingSource(source)
        began = time.perf_counter()
        report = analyze(recorder, rules, start, end)
        total = time.perf_counter() - began
        # the same analysis again on the answers already fetched: the compute share
        recorder.replay = True
        began = time.perf_counter()
        analyze(recorder, rules, start, end)
        compute = time.perf_counter() - began
        return {
            "services": services,
            "openmetrics_write_seconds": write_seconds,
            "promtool_import_seconds": import_seconds,
            "analyze_seconds": total,
            "fetch_seconds": max(total - compute, 0.0),
            "compute_seconds": compute,
            "http_requests": source.requests_made,
            "verdict": report.verdict,
        }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks analyzer_speed")
    parser.add_argument(
        "--full", action="store_true", help="load and fetch all 100 services through Prometheus"
    )
    full = parser.parse_args(argv).full
    compute = time_compute(100)
    print(
        f"compute only: 100 services x {HOURS} h at {INTERVAL:g} s, {compute['series']} series, "
        f"{compute['samples'] / 1e6:.1f} M samples: {compute['compute_seconds']:.2f} s "
        f"({compute['results']} results)"
    )
    fetch_services = 100 if full else 10
    fetch = time_fetch(fetch_services)
    output: dict[str, Any] = {"benchmark": "analyzer_speed", "compute": compute, "fetch": fetch}
    if "skipped" not in fetch:
        print(
            f"through Prometheus, {fetch_services} services: "
            f"analyze {fetch['analyze_seconds']:.2f} s = fetch {fetch['fetch_seconds']:.2f} s "
            f"+ compute {fetch['compute_seconds']:.2f} s "
            f"({fetch['http_requests']} HTTP requests; promtool import "
            f"{fetch['promtool_import_seconds']:.1f} s); ratio to the compute alone on the "
            f"same answers {ratio(fetch['analyze_seconds'], fetch['compute_seconds']):.1f}"
        )
        if full:
            total = fetch["analyze_seconds"]
            share = fetch["fetch_seconds"] / total
            print(
                f"100 services end to end (measured): {total:.1f} s, fetch {share:.0%}; "
                "target < 10 s"
            )
        else:
            # fetch grows with the services; the load scenarios' series do not (conservative)
            total = fetch["fetch_seconds"] * 100 / fetch_services + compute["compute_seconds"]
            print(
                f"100 services projected: {total:.1f} s (fetch x{100 // fetch_services} + "
                "compute in memory at full resolution); run --full to measure; target < 10 s"
            )
        output["total_100_services_seconds"] = total
        output["total_measured"] = full
    else:
        print("fetch skipped:", fetch["skipped"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    output["peak_rss_bytes"] = peak
    missed: list[str] = []
    total_seconds = output.get("total_100_services_seconds")
    if total_seconds is not None:
        met = total_seconds < TARGET_SECONDS
        how = "measured" if full else "projected"
        print(
            f"target: 100 services x {HOURS} h end to end < 10 s -> {total_seconds:.1f} s "
            f"{how} ({'meets' if met else 'MISSES'})"
        )
        if not met:
            missed.append("100 services end to end")
    met = peak < TARGET_PEAK_RSS_BYTES
    print(f"target: peak RSS < 1 GB -> {peak / 1e9:.2f} GB ({'meets' if met else 'MISSES'})")
    if not met:
        missed.append("peak RSS")
    output["targets_missed"] = missed
    write_results("analyzer_speed", output)
    if total_seconds is None:
        print("the end-to-end time cannot be judged without Prometheus and promtool")
        return 2
    print("all targets met" if not missed else "MISSED: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
