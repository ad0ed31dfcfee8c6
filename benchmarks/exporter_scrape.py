"""Cost of the sidecar exporter, side by side with Debian's prometheus-process-exporter.

    python -m benchmarks exporter_scrape            # about 3 minutes
    python -m benchmarks exporter_scrape --long     # 5 minutes of scrapes per size

Measured in one run, on the same watched processes (Python children holding 8 MB each), for
1, 10 and 50 of them:
1. one scrape inside the exporter (collect + text exposition), median and p99 — with USS/PSS
   on their default cadence and read every scrape;
2. one HTTP GET /metrics of ``soak-exporter`` and of ``prometheus-process-exporter``
   (configured with one group per watched process, as soakwatch has one service each);
3. each exporter's own RSS and CPU while both are scraped at the same rate for the same period
   (default 100 scrapes in 30 s: CPU read from /proc/PID/stat ticks at 10 ms, so a figure of
   a few scrapes is one or two ticks and means nothing), then idle CPU over a period without
   scrapes (the cost between scrapes: soakwatch's restart scanner, Go's runtime).
``soak-exporter`` runs twice: from a clean virtualenv made for this run (no packages but a
``.pth`` naming this interpreter's import path, so no other ``.pth`` hook runs at start: what
``pip install soakwatch`` into a fresh venv gives) and from this interpreter's own venv (whose
site-packages may hold ``.pth`` files that import modules at every start, e.g.
urllib3-future's, which imports shutil). The targets are judged on the clean venv; the
other figure is printed and kept beside it. Ratios are soakwatch / process-exporter (below 1:
soakwatch is cheaper). Results go to ``benchmarks/results/exporter_scrape.json``.

Targets (each printed with its figure; exit status 1 if any is missed, 2 if
prometheus-process-exporter is not installed, so the ratios cannot be judged), at 1, 10 and 50
watched processes: the exporter's peak RSS at most process-exporter's (ratio <= 1.0) and its
CPU per scrape at most 0.25x process-exporter's, both measured side by side; a one-process
in-exporter scrape under 10 ms median.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
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
    # one group per watched process, named by its index, like soakwatch's one service each;
    # the first ``count`` children only, as soakwatch watches
    numbers = "|".join(f"{i:03d}" for i in range(count))
    pattern = f"soakbench-{token}-(?P<idx>{numbers})"
    name = "{{.Matches.idx}}"
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


_SITE_AND_PATH = "import site, sys; print(site.getsitepackages()[0], *sys.path, sep='\\n')"


def _clean_venv(directory: Path) -> str:
    """A virtualenv with nothing installed but one ``.pth`` naming this interpreter's import
    path (the soakwatch folders, site-packages): the packages of this venv without the
    ``.pth`` hooks of its site-packages, which run only for a site directory, not for a path
    a ``.pth`` names. Returns its ``soak-exporter``, the console script pip would write."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", _SITE_AND_PATH],
        check=True,
        capture_output=True,
        text=True,
    )
    site_packages, *own_path = found.stdout.splitlines()
    paths = [p for p in sys.path if p and Path(p).is_dir() and p not in own_path]
    (Path(site_packages) / "soakwatch-bench.pth").write_text("\n".join(paths) + "\n")
    script = directory / "bin" / "soak-exporter"
    script.write_text(
        f"#!{python}\nimport sys\nfrom soakwatch.exporter.cli import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return str(script)


def _own_cost(
    pids: dict[str, int], urls: dict[str, str], period: float, scrapes: int
) -> dict[str, Any]:
    """Scrape every exporter ``scrapes`` times, evenly over ``period`` seconds, each in the
    same round; their CPU per scrape, RSS after the last scrape and peak RSS; then their CPU
    over as long again without scrapes (idle)."""
    processes = {name: psutil.Process(pid) for name, pid in pids.items()}
    for url in urls.values():
        _get(url)  # a first scrape: what it loads is in the RSS, not in the CPU
    cpu_start = {name: cpu_seconds(p) for name, p in processes.items()}
    peak_rss = dict.fromkeys(pids, 0)
    started = time.monotonic()
    for index in range(scrapes):
        for name, url in urls.items():
            _get(url)
            peak_rss[name] = max(peak_rss[name], processes[name].memory_info().rss)
        wait = started + (index + 1) * period / scrapes - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    elapsed = time.monotonic() - started
    cpu = {name: cpu_seconds(p) - cpu_start[name] for name, p in processes.items()}
    idle_start = {name: cpu_seconds(p) for name, p in processes.items()}
    time.sleep(period)
    result: dict[str, Any] = {"period_seconds": elapsed, "scrapes": scrapes}
    for name, process in processes.items():
        idle = cpu_seconds(process) - idle_start[name]
        result[name] = {
            "rss_mb": process.memory_info().rss / 1e6,
            "peak_rss_mb": peak_rss[name] / 1e6,
            "cpu_seconds": cpu[name],
            "cpu_ms_per_scrape": 1e3 * cpu[name] / scrapes,
            "idle_cpu_seconds_per_minute": 60 * idle / period,
        }
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks exporter_scrape")
    parser.add_argument("--long", action="store_true", help="5 minutes of scrapes per size")
    parser.add_argument("--period", type=float, help="seconds of scrapes per size (default 30)")
    parser.add_argument("--scrapes", type=int, help="scrapes per size (default 100)")
    parser.add_argument(
        "--processes", default="1,10,50", help="watched processes, comma-separated (1,10,50)"
    )
    args = parser.parse_args(argv)
    period = args.period or (300.0 if args.long else 30.0)
    scrapes = args.scrapes or (1000 if args.long else 100)
    counts = sorted({int(c) for c in args.processes.split(",")})
    other = shutil.which(PROCESS_EXPORTER)
    project_exporter = str(Path(sys.executable).with_name("soak-exporter"))
    token = uuid.uuid4().hex[:8]
    results: dict[str, Any] = {
        "machine": machine(),
        "reference": PROCESS_EXPORTER if other else None,
        "scrapes": scrapes,
        "period_seconds": period,
        "soakwatch_judged_from": "a clean venv (no .pth hooks at start)",
        "in_process": {},
        "http": {},
        "own_cost": {},
    }
    missed: list[str] = []

    def judge(label: str, figure: float, limit: float, shown: str) -> None:
        met = figure <= limit
        print(f"target: {label} -> {shown} ({'meets' if met else 'MISSES'})", flush=True)
        if not met:
            missed.append(label)

    with ExitStack() as stack:
        venv = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-venv-")))
        clean_exporter = _clean_venv(venv)
        children = stack.enter_context(_children(max(counts), token))
        pids = [c.pid for c in children]
        print(f"watching up to {len(pids)} Python children of ~20 MB RSS each", flush=True)

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
            starts = {
                "soakwatch": _soak_exporter(clean_exporter, token, count),
                "soakwatch_project_venv": _soak_exporter(project_exporter, token, count),
            }
            if other:
                starts["process_exporter"] = _process_exporter(other, token, count)
            with ExitStack() as running_stack:
                running = {
                    name: running_stack.enter_context(start_listening(name, argv_for))
                    for name, argv_for in starts.items()
                }
                urls = {name: f"{server.url}/metrics" for name, server in running.items()}
                ours = _get(urls["soakwatch"]).count(b"soak_process_up{")
                line = f"sanity: {count} processes -> soakwatch services {ours}"
                if other:
                    groups = _get(urls["process_exporter"]).count(
                        b"namedprocess_namegroup_num_procs{"
                    )
                    line += f", process-exporter groups {groups}"
                print(line, flush=True)
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
                    f"{http['soakwatch']['median_ms']:.2f} ms p99 "
                    f"{http['soakwatch']['p99_ms']:.2f} ms"
                )
                if other:
                    pe = http["process_exporter"]
                    line += (
                        f"; process-exporter median {pe['median_ms']:.2f} ms p99 "
                        f"{pe['p99_ms']:.2f} ms; ratio {http['ratio_median']:.2f}"
                    )
                print(line, flush=True)

                print(
                    f"{count} processes: scraping all {len(urls)} exporters {scrapes} times in "
                    f"{period:g} s, then {period:g} s idle ...",
                    flush=True,
                )
                own = _own_cost({n: p.pid for n, p in running.items()}, urls, period, scrapes)
                results["own_cost"][str(count)] = own
                for name in running:
                    figures = own[name]
                    print(
                        f"{name:>24}: RSS {figures['rss_mb']:.2f} MB (peak "
                        f"{figures['peak_rss_mb']:.2f}), CPU {figures['cpu_seconds']:.2f} s = "
                        f"{figures['cpu_ms_per_scrape']:.2f} ms per scrape; idle "
                        f"{figures['idle_cpu_seconds_per_minute']:.3f} s per minute",
                        flush=True,
                    )
            if other:
                ours, theirs = own["soakwatch"], own["process_exporter"]
                own["ratio_rss"] = ratio(ours["peak_rss_mb"], theirs["peak_rss_mb"])
                # not judged, shown: process-exporter's RSS falls after each Go GC
                own["ratio_rss_last"] = ratio(ours["rss_mb"], theirs["rss_mb"])
                own["ratio_cpu"] = ratio(ours["cpu_seconds"], theirs["cpu_seconds"])
                project = own["soakwatch_project_venv"]
                own["ratio_rss_project_venv"] = ratio(project["peak_rss_mb"], theirs["peak_rss_mb"])
                own["ratio_cpu_project_venv"] = ratio(project["cpu_seconds"], theirs["cpu_seconds"])
                print(
                    f"ratios soakwatch/process-exporter at {count}: peak RSS "
                    f"{own['ratio_rss']:.2f} (project venv {own['ratio_rss_project_venv']:.2f}; "
                    f"last readings {own['ratio_rss_last']:.2f}), "
                    f"CPU {own['ratio_cpu']:.2f} (project venv "
                    f"{own['ratio_cpu_project_venv']:.2f})",
                    flush=True,
                )
                judge(
                    f"peak RSS <= process-exporter's at {count} processes (ratio <= 1.0)",
                    own["ratio_rss"],
                    TARGET_RATIO_RSS,
                    f"{ours['peak_rss_mb']:.2f} MB vs {theirs['peak_rss_mb']:.2f} MB, ratio "
                    f"{own['ratio_rss']:.2f}",
                )
                judge(
                    f"CPU per scrape <= 0.25 x process-exporter's at {count} processes",
                    own["ratio_cpu"],
                    TARGET_RATIO_CPU,
                    f"{ours['cpu_ms_per_scrape']:.2f} ms vs {theirs['cpu_ms_per_scrape']:.2f} ms, "
                    f"ratio {own['ratio_cpu']:.2f}",
                )

    one = results["in_process"][str(min(counts))]["detail_every_30s"]["median_ms"]
    judge("one-process scrape < 10 ms median", one, TARGET_SCRAPE_MS, f"{one:.2f} ms")
    results["targets_missed"] = missed
    write_results("exporter_scrape", results)
    if not other:
        print(f"{PROCESS_EXPORTER} is not installed: the RSS and CPU ratios cannot be judged")
        return 2
    print("all targets met" if not missed else "MISSED: " + "; ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
