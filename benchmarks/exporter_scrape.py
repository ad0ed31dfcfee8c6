"""Cost of the sidecar exporter, side by side with Debian's prometheus-process-exporter.

    python -m benchmarks exporter_scrape            # short: about 1.5 minutes
    python -m benchmarks exporter_scrape --long     # 10 minutes of 15 s scrapes

Measured in one run, on the same watched processes (Python children holding 8 MB each):
1. one scrape inside the exporter (collect + text exposition) for 1 and for 50 watched
   processes, median and p99 — with USS/PSS on their default cadence and read every scrape;
2. one HTTP GET /metrics of ``soak-exporter`` and of ``prometheus-process-exporter``
   (configured with one group per watched process), for 1 and 50 processes;
3. each exporter's own RSS and CPU while scraped every 15 s for a period.
Ratios are soakwatch / process-exporter (below 1: soakwatch is cheaper). Results go to
``benchmarks/results/exporter_scrape.json``.

Targets (each printed with its figure; exit status 1 if any is missed, 2 if
prometheus-process-exporter is not installed, so the ratios cannot be judged): the exporter's
RSS at most process-exporter's (ratio <= 1.0) and its CPU at most 0.25x process-exporter's,
both measured side by side while scraped every 15 s; a one-process scrape under 10 ms median.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil

from benchmarks._measure import cpu_seconds, machine, ratio, time_calls, write_results
from benchmarks._servers import start_listening
from soakwatch.exporter.config import PoolSpec
from soakwatch.exporter.exposition import CollectorRegistry, generate_latest
from soakwatch.exporter.matching import PidMatcher, ProcessTracker
from soakwatch.exporter.pools import PoolCollector
from soakwatch.exporter.process import ProcessCollector

PROCESS_EXPORTER = "prometheus-process-exporter"
SCRAPE_INTERVAL_SECONDS = 15.0
TARGET_RATIO_RSS = 1.0  # soakwatch / process-exporter
TARGET_RATIO_CPU = 0.25
TARGET_SCRAPE_MS = 10.0  # one watched process, median, in-process
CHILD_CODE = "import sys\nblock = bytearray(8 * 1024 * 1024)\nsys.stdin.read()\n"


@contextmanager
def _children(count: int, token: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    popens = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD_CODE, f"soakbench-{token}-{i:03d}"],
            stdin=subprocess.PIPE,
        )
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 60
        for popen in popens:  # wait until each holds its memory
            while psutil.Process(popen.pid).memory_info().rss < 12 * 1024 * 1024:
                if time.monotonic() > deadline:
                    raise TimeoutError("watched children did not start")
                time.sleep(0.02)
        yield popens
    finally:
        for popen in popens:
            if popen.stdin is not None:
                popen.stdin.close()
        for popen in popens:
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def _in_process_scrape(pids: list[int], detail_interval: float, repeat: int) -> dict[str, float]:
    registry = CollectorRegistry()
    trackers = {
        f"svc{i:03d}": ProcessTracker(PidMatcher(pid), scan_interval_seconds=5.0)
        for i, pid in enumerate(pids)
    }
    ProcessCollector(trackers, registry=registry, detail_interval_seconds=detail_interval)
    PoolCollector(
        {name: (t, [PoolSpec(name="db", port=5432)]) for name, t in trackers.items()},
        registry=registry,
    )
    return time_calls(lambda: generate_latest(registry), repeat)


def _soak_config(directory: Path, token: str, count: int, port: int) -> Path:
    lines = [f"listen: 127.0.0.1:{port}", "services:"]
    for i in range(count):
        lines += [
            f"  - name: svc{i:03d}",
            f"    match: {{cmdline: 'soakbench-{token}-{i:03d}'}}",
            "    pools: [{name: db, port: 5432}]",
        ]
    path = directory / f"soak-{count}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _process_exporter_config(directory: Path, token: str, count: int) -> Path:
    # one group per watched process, named by its index, like soakwatch's one service each
    pattern = f"soakbench-{token}-(?P<idx>0*[0-9]+)" if count > 1 else f"soakbench-{token}-000"
    name = "{{.Matches.idx}}" if count > 1 else "svc000"
    path = directory / f"process-exporter-{count}.yaml"
    path.write_text(f"process_names:\n  - name: '{name}'\n    cmdline:\n    - '{pattern}'\n")
    return path


def _soak_exporter(binary: str, token: str, count: int) -> Callable[[int, Path], list[str]]:
    def argv(port: int, directory: Path) -> list[str]:
        config = _soak_config(directory, token, count, port)
        return [binary, "--config", str(config), "--log-level", "warning"]

    return argv


def _process_exporter(binary: str, token: str, count: int) -> Callable[[int, Path], list[str]]:
    def argv(port: int, directory: Path) -> list[str]:
        config = _process_exporter_config(directory, token, count)
        return [binary, "-config.path", str(config), "-web.listen-address", f"127.0.0.1:{port}"]

    return argv


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body


def _http_scrape(url: str, repeat: int) -> dict[str, float]:
    return time_calls(lambda: _get(url), repeat)


def _own_cost(pids: dict[str, int], urls: dict[str, str], period: float) -> dict[str, Any]:
    """Scrape each exporter every 15 s for ``period`` seconds; their RSS and CPU."""
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    cpu_start = {name: cpu_seconds(p) for name, p in processes.items()}
    peak_rss = dict.fromkeys(pids, 0)
    started = time.monotonic()
    scrapes = 0
    while True:
        for name, url in urls.items():
            _get(url)
            peak_rss[name] = max(peak_rss[name], processes[name].memory_info().rss)
        scrapes += 1
        remaining = period - (time.monotonic() - started)
        if remaining <= 0:
            break
        time.sleep(min(SCRAPE_INTERVAL_SECONDS, remaining))
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {"period_seconds": elapsed, "scrapes": scrapes}
    for name, process in processes.items():
        cpu = cpu_seconds(process) - cpu_start[name]
        result[name] = {
            "rss_mb": process.memory_info().rss / 1e6,
            "peak_rss_mb": peak_rss[name] / 1e6,
            "cpu_seconds": cpu,
            "cpu_percent": 100 * cpu / elapsed,
        }
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks exporter_scrape")
    parser.add_argument("--long", action="store_true", help="10 minutes of 15 s scrapes")
    parser.add_argument("--period", type=float, help="seconds of 15 s scrapes (default 60)")
    parser.add_argument("--processes", type=int, default=50, help="the large case (default 50)")
    args = parser.parse_args(argv)
    period = args.period or (600.0 if args.long else 60.0)
    counts = [1, args.processes]
    other = shutil.which(PROCESS_EXPORTER)
    soak_exporter = str(Path(sys.executable).with_name("soak-exporter"))
    token = uuid.uuid4().hex[:8]
    results: dict[str, Any] = {
        "machine": machine(),
        "reference": PROCESS_EXPORTER if other else None,
        "in_process": {},
        "http": {},
    }

    with ExitStack() as stack:
        children = stack.enter_context(_children(max(counts), token))
        pids = [c.pid for c in children]
        print(f"watching {len(pids)} Python children of ~20 MB RSS each", flush=True)

        for count in counts:
            repeat = 400 if count == 1 else 60
            cadence = _in_process_scrape(pids[:count], 30.0, repeat)
            every = _in_process_scrape(pids[:count], 0.0, max(20, repeat // 4))
            results["in_process"][str(count)] = {"detail_every_30s": cadence, "detail_every": every}
            print(
                f"in-process scrape, {count:>3} processes: median {cadence['median_ms']:.2f} ms, "
                f"p99 {cadence['p99_ms']:.2f} ms (USS/PSS every scrape: median "
                f"{every['median_ms']:.2f} ms, p99 {every['p99_ms']:.2f} ms)",
                flush=True,
            )

        for count in counts:
            starts = {"soakwatch": _soak_exporter(soak_exporter, token, count)}
            if other:
                starts["process_exporter"] = _process_exporter(other, token, count)
            running = {
                name: stack.enter_context(start_listening(name, argv_for))
                for name, argv_for in starts.items()
            }
            urls = {name: f"{server.url}/metrics" for name, server in running.items()}
            if other:
                groups = _get(urls["process_exporter"]).count(b"namedprocess_namegroup_num_procs{")
                ours = _get(urls["soakwatch"]).count(b"soak_process_up{")
                print(
                    f"sanity: {count} processes -> process-exporter groups {groups}, "
                    f"soakwatch services {ours}",
                    flush=True,
                )
            http: dict[str, Any] = {}
            for name, url in urls.items():
                http[name] = _http_scrape(url, 200 if count == 1 else 40)
            if other:
                http["ratio_median"] = ratio(
                    http["soakwatch"]["median_ms"], http["process_exporter"]["median_ms"]
                )
            results["http"][str(count)] = http
            line = (
                f"HTTP GET /metrics, {count:>3} processes: soakwatch median "
                f"{http['soakwatch']['median_ms']:.2f} ms p99 {http['soakwatch']['p99_ms']:.2f} ms"
            )
            if other:
                pe = http["process_exporter"]
                line += (
                    f"; process-exporter median {pe['median_ms']:.2f} ms p99 "
                    f"{pe['p99_ms']:.2f} ms; ratio {http['ratio_median']:.2f}"
                )
            print(line, flush=True)

            if count == max(counts):
                print(
                    f"scraping both every {SCRAPE_INTERVAL_SECONDS:g} s for {period:g} s ...",
                    flush=True,
                )
                own = _own_cost({n: p.pid for n, p in running.items()}, urls, period)
                own["processes"] = count
                results["own_cost"] = own  # the ratios below land in it too
                for name in running:
                    figures = own[name]
                    print(
                        f"{name:>16}: RSS {figures['rss_mb']:.1f} MB (peak "
                        f"{figures['peak_rss_mb']:.1f}), CPU {figures['cpu_seconds']:.2f} s "
                        f"= {figures['cpu_percent']:.2f} % over {own['period_seconds']:.0f} s",
                        flush=True,
                    )
                if other:
                    ours, theirs = own["soakwatch"], own["process_exporter"]
                    own["ratio_rss"] = ratio(ours["rss_mb"], theirs["rss_mb"])
                    own["ratio_cpu"] = ratio(ours["cpu_seconds"], theirs["cpu_seconds"])
                    print(
                        f"ratios soakwatch/process-exporter: RSS {own['ratio_rss']:.2f}, "
                        f"CPU {own['ratio_cpu']:.2f}",
                        flush=True,
                    )

    missed: list[str] = []

    def judge(label: str, figure: float, limit: float, shown: str) -> None:
        met = figure <= limit
        print(f"target: {label} -> {shown} ({'meets' if met else 'MISSES'})")
        if not met:
            missed.append(label)

    one = results["in_process"]["1"]["detail_every_30s"]["median_ms"]
    judge("one-process scrape < 10 ms median", one, TARGET_SCRAPE_MS, f"{one:.2f} ms")
    own = results.get("own_cost", {})
    if other and own.get("ratio_rss") is not None and own.get("ratio_cpu") is not None:
        ours, theirs = own["soakwatch"], own["process_exporter"]
        judge(
            "RSS <= process-exporter's (ratio <= 1.0)",
            own["ratio_rss"],
            TARGET_RATIO_RSS,
            f"{ours['rss_mb']:.1f} MB vs {theirs['rss_mb']:.1f} MB, ratio {own['ratio_rss']:.2f}",
        )
        judge(
            "CPU <= 0.25 x process-exporter's",
            own["ratio_cpu"],
            TARGET_RATIO_CPU,
            f"{ours['cpu_seconds']:.2f} s vs {theirs['cpu_seconds']:.2f} s, "
            f"ratio {own['ratio_cpu']:.2f}",
        )
    results["targets_missed"] = missed
    write_results("exporter_scrape", results)
    if not other:
        print(f"{PROCESS_EXPORTER} is not installed: the RSS and CPU ratios cannot be judged")
        return 2
    print("all targets met" if not missed else "MISSED: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
