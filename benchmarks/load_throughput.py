"""Efficiency, stall accounting and lag of ``soak load``, measured the same way as Locust and wrk.

    python -m benchmarks load_throughput                # 8 s windows, 3 repeats, ~4 minutes
    python -m benchmarks load_throughput --full         # 30 s windows
    python -m benchmarks load_throughput --repeat 1 --seconds 5

Every tool runs as its own process against the same server: a C epoll keep-alive HTTP/1.1
server (built here with cc; one thread, a fixed reply, wrk saturates it far above any Python
client) that counts the requests it answers and times each (request read -> reply written).
For each tool, the CPU is read from /proc for its whole process tree (user + system), and the
requests are counted by the server, both at the start and the end of the same steady window
after a warm-up: requests per CPU-second = server-counted requests / tree CPU seconds.

1. Saturation (``--repeat`` times, the order of soak load and Locust alternating): wrk (the
   ceiling, C), ``soak load --workers 1`` (200,000/s due over 32 connections: it sends what it
   can, the rest is dropped) and Locust FastHttpUser (32 users, no wait), one process each.
   Target: soak load's requests per CPU-second at least 2x Locust's in every repeat.
2. A 1 s server stall every 10 s, at a fixed rate: the p99 that soak load reports (from due
   time) against the p99 the server saw (request read -> reply). Target: within 10 %.
   Locust at the same rate is shown beside it (its closed model hides the stall).
3. The driver's own lag at 30 % of its saturation rate (``--workers 1``): lag p99 (due -> sent)
   from its summary. Target: under 2 ms. The load average is printed beside it: on a machine
   busier than its cores the kernel preempts the driver, and that lag is the machine's (under
   SCHED_FIFO, on the same busy machine, the driver's own lag p99 was 0.53 ms at 8,720/s).
Exits 1 when a target is missed (each is printed with PASS/FAIL), 2 when a tool is missing (one
line naming each: cc, locust, wrk). Locust is taken from ``--locust PATH``,
``$SOAK_BENCH_LOCUST``, beside this Python or PATH (``pip install -e '.[test,bench]'``); wrk and
cc from PATH (``apt-get install wrk gcc``). Results go to
``benchmarks/results/load_throughput.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks._measure import machine, ratio, tree_cpu_seconds, tree_size, write_results
from benchmarks._servers import ROOT
from soakwatch.run.localservers import free_port

CONNECTIONS = 32
SATURATING_RATE = 200_000.0  # far above what one Python process sends: the rest is dropped
STALL_RATE = 1000.0
STALL_PERIOD_MS, STALL_MS = 10_000, 1000
EFFICIENCY_TARGET = 2.0  # soak load / Locust, requests per CPU-second
STALL_P99_TOLERANCE = 0.10
LAG_P99_TARGET_SECONDS = 0.002
LAG_FRACTION = 0.30

SERVER_C = Path(__file__).with_name("_keepalive_server.c")


# -- the server -------------------------------------------------------------------------------
class CServer:
    """The C keep-alive server in its own process (optionally stalling)."""

    def __init__(self, binary: Path, stall: tuple[int, int] | None = None) -> None:
        self.port = free_port()
        argv = [str(binary), str(self.port)] + ([str(s) for s in stall] if stall else [])
        self.process = subprocess.Popen(argv)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("the benchmark server did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stats(self, *, reset: bool = False) -> dict[str, int]:
        """Requests answered so far, and the server-side latency figures (us) since the last
        reset (``reset``: reset them, after reading the count)."""
        path = "__reset" if reset else "__stats"
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as reply:
            text = reply.read().decode()
        return {k: int(v) for k, v in (line.split() for line in text.splitlines())}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> CServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc")


def missing_tools(locust: str | None) -> list[str]:
    """What this benchmark needs and cannot find, each with how to get it."""
    missing = []
    if compiler() is None:
        missing.append("cc (a C compiler, for its server: apt-get install gcc)")
    if locust is None:
        missing.append("locust (the peer: pip install -e '.[bench]', or --locust PATH)")
    if shutil.which("wrk") is None:
        missing.append("wrk (the ceiling: apt-get install wrk)")
    return missing


def build_server(workdir: Path) -> Path:
    cc = compiler()
    assert cc is not None  # missing_tools() said so before
    binary = workdir / "server"
    subprocess.run([cc, "-O2", "-o", str(binary), str(SERVER_C)], check=True)
    return binary


# -- one tool over one steady window -----------------------------------------------------------
def measure(
    command: list[str], server: CServer, warmup: float, window: float, timeout: float
) -> dict[str, Any]:
    """Start ``command``; after ``warmup`` s, count the server's requests and the tree's CPU
    over ``window`` s; then let it end (SIGINT after ``timeout`` s)."""
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            time.sleep(warmup)
            if process.poll() is not None:
                out.seek(0)
                raise RuntimeError(f"{command[0]} ended early:\n{out.read().decode()}")
            processes = tree_size(process.pid)
            cpu0, before, t0 = (
                tree_cpu_seconds(process.pid),
                server.stats(reset=True),
                time.monotonic(),
            )
            time.sleep(window)
            cpu1, after, t1 = tree_cpu_seconds(process.pid), server.stats(), time.monotonic()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    requests = after["requests"] - before["requests"]
    cpu = cpu1 - cpu0
    return {
        "requests": requests,
        "window_seconds": t1 - t0,
        "requests_per_second": requests / (t1 - t0),
        "cpu_seconds": cpu,
        "requests_per_cpu_second": requests / cpu if cpu > 0 else None,
        "processes": processes,
        "server_p99_seconds": after["p99_us"] / 1e6,
        "exit_code": process.returncode,
        "output_tail": text[-2000:],
    }


def wrk_command(url: str, seconds: float) -> list[str] | None:
    wrk = shutil.which("wrk")
    return None if wrk is None else [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds)}s", url]


def soak_command(
    workdir: Path, url: str, seconds: float, rate: float, max_in_flight: int | None, tag: str
) -> tuple[list[str], Path]:
    scenario: dict[str, Any] = {"kind": "http", "name": "bench", "url": url, "rate": rate}
    scenario["timeout"] = "10s"
    if max_in_flight is not None:
        scenario["max_in_flight"] = max_in_flight
    config = workdir / f"load-{tag}.json"  # JSON is YAML
    config.write_text(json.dumps({"duration": seconds, "scenarios": [scenario]}))
    summary = workdir / f"summary-{tag}.json"
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--config", str(config),
        "--workers", "1", "--quiet", "--summary", str(summary),
    ]  # fmt: skip
    return command, summary


LOCUSTFILE = """
from locust import constant, constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser
import os

PER_USER = float(os.environ.get("BENCH_PER_USER_RATE", "0"))


class Bench(FastHttpUser):
    wait_time = constant_throughput(PER_USER) if PER_USER > 0 else constant(0)

    @task
    def get(self):
        self.client.get("/")
"""


def locust_binary(option: str | None) -> str | None:
    for candidate in (option, os.environ.get("SOAK_BENCH_LOCUST"), shutil.which("locust")):
        if candidate and Path(candidate).exists():
            return candidate
    beside = Path(sys.executable).with_name("locust")
    return str(beside) if beside.exists() else None


def locust_command(
    locust: str, workdir: Path, url: str, seconds: float, users: int, rate: float | None, tag: str
) -> tuple[list[str], Path]:
    locustfile = workdir / "locustfile.py"
    locustfile.write_text(LOCUSTFILE, encoding="utf-8")
    prefix = workdir / f"locust-{tag}"
    os.environ["BENCH_PER_USER_RATE"] = str(rate / users if rate else 0)
    command = [
        locust, "-f", str(locustfile), "--headless", "-H", url.rstrip("/"), "-u", str(users),
        "-r", str(users), "-t", f"{int(seconds)}s", "--only-summary", "--csv", str(prefix),
        "--loglevel", "WARNING", "--stop-timeout", "1",
    ]  # fmt: skip
    return command, prefix.with_name(f"{prefix.name}_stats.csv")


def locust_p99(stats_csv: Path) -> float | None:
    rows = list(csv.DictReader(stats_csv.open()))
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    p99 = total.get("99%") if total else None
    return float(p99) / 1000 if p99 not in (None, "", "N/A") else None


def _fmt(value: float | None, scale: float = 1.0, unit: str = "") -> str:
    return "n/a" if value is None else f"{value * scale:,.1f}{unit}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# -- the runs ---------------------------------------------------------------------------------
def saturation(
    binary: Path, locust: str, workdir: Path, warmup: float, window: float, repeat: int
) -> list[dict[str, Any]]:
    runs = []
    length = warmup + window + 2
    for index in range(repeat):
        row: dict[str, Any] = {}
        with CServer(binary) as server:
            wrk = wrk_command(server.url, length)
            if wrk:
                row["wrk"] = measure(wrk, server, warmup, window, length + 10)
            soak, _ = soak_command(workdir, server.url, length, SATURATING_RATE, CONNECTIONS, "sat")
            peer, _ = locust_command(locust, workdir, server.url, length, CONNECTIONS, None, "sat")
            order = [("soak_load", soak), ("locust", peer)]
            for name, command in order if index % 2 == 0 else order[::-1]:
                row[name] = measure(command, server, warmup, window, length + 30)
        row["ratio_soak_vs_locust"] = ratio(
            row["soak_load"]["requests_per_cpu_second"], row["locust"]["requests_per_cpu_second"]
        )
        row["ratio_soak_vs_wrk"] = ratio(
            row["soak_load"]["requests_per_cpu_second"],
            row.get("wrk", {}).get("requests_per_cpu_second"),
        )
        for name in ("wrk", "soak_load", "locust"):
            if name in row:
                m = row[name]
                print(
                    f"[{index + 1}/{repeat}] {name:<9} saturation: {_fmt(m['requests_per_second'])}"
                    f" req/s, {_fmt(m['requests_per_cpu_second'])} req/CPU-s "
                    f"({m['cpu_seconds']:.2f} CPU-s, {m['processes']} process(es))",
                    flush=True,
                )
        print(
            f"[{index + 1}/{repeat}] soak/locust {row['ratio_soak_vs_locust']:.2f}x, "
            f"soak/wrk {_fmt(row['ratio_soak_vs_wrk'], 100, ' %')}",
            flush=True,
        )
        runs.append(row)
    return runs


def stalled(binary: Path, locust: str | None, workdir: Path, seconds: float) -> dict[str, Any]:
    """soak load (and Locust) at STALL_RATE against a server stalling 1 s every 10 s: the
    whole run's p99, the client's and the server's over the same requests."""
    result: dict[str, Any] = {"rate": STALL_RATE, "seconds": seconds}
    with CServer(binary, (STALL_PERIOD_MS, STALL_MS)) as server:
        command, summary_path = soak_command(workdir, server.url, seconds, STALL_RATE, None, "st")
        server.stats(reset=True)
        subprocess.run(command, cwd=ROOT, check=True, timeout=seconds + 60)
        seen = server.stats()
        part = json.loads(summary_path.read_text())["scenarios"]["bench"]
        result["soak_load"] = {
            "p99_seconds": part["latency_seconds"]["p99"],
            "service_p99_seconds": part["service_seconds"]["p99"],
            "lag_p99_seconds": part["lag_seconds"]["p99"],
            "ok": part["outcomes"]["ok"],
            "server_p99_seconds": seen["p99_us"] / 1e6,
            "server_count": seen["count"],
        }
    if locust:
        # A fresh server, so its stalls fall at the same offsets of Locust's run.
        with CServer(binary, (STALL_PERIOD_MS, STALL_MS)) as server:
            users = CONNECTIONS
            command, stats_csv = locust_command(
                locust, workdir, server.url, seconds, users, STALL_RATE, "st"
            )
            server.stats(reset=True)
            subprocess.run(command, cwd=ROOT, check=False, timeout=seconds + 60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            seen = server.stats()
            result["locust"] = {
                "p99_seconds": locust_p99(stats_csv),
                "server_p99_seconds": seen["p99_us"] / 1e6,
                "server_count": seen["count"],
            }
    return result


def lag_run(binary: Path, workdir: Path, rate: float, seconds: float) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with CServer(binary) as server:
        command, summary_path = soak_command(workdir, server.url, seconds, rate, None, "lag")
        server.stats(reset=True)
        subprocess.run(command, cwd=ROOT, check=True, timeout=seconds + 60)
        seen = server.stats()
    part = json.loads(summary_path.read_text())["scenarios"]["bench"]
    return {
        "rate": rate,
        "achieved_rate_per_second": part["achieved_rate_per_second"],
        "dropped": part["outcomes"]["dropped"],
        "lag_p50_seconds": part["lag_seconds"]["p50"],
        "lag_p99_seconds": part["lag_seconds"]["p99"],
        "latency_p99_seconds": part["latency_seconds"]["p99"],
        "service_p99_seconds": part["service_seconds"]["p99"],
        "server_p99_seconds": seen["p99_us"] / 1e6,
        # a machine busier than its cores preempts the driver: that lag is the machine's
        "load_average_1m": [load_before, os.getloadavg()[0]],
        "cores": os.cpu_count(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load_throughput")
    parser.add_argument("--full", action="store_true", help="30 s windows")
    parser.add_argument("--seconds", type=float, help="steady window per measurement (default 8)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--repeat", type=int, default=3, help="saturation repeats (default 3)")
    parser.add_argument("--stall-seconds", type=float, default=20.0, help="stall run length")
    parser.add_argument("--locust", help="path of the locust command")
    args = parser.parse_args(argv)
    window = args.seconds or (30.0 if args.full else 8.0)
    locust = locust_binary(args.locust)
    missing = missing_tools(locust)
    if missing:
        print(f"load_throughput: missing {'; '.join(missing)}", file=sys.stderr)
        return 2
    assert locust is not None
    results: dict[str, Any] = {
        "machine": machine(),
        "window_seconds": window,
        "warmup_seconds": args.warmup,
        "connections": CONNECTIONS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        binary = build_server(workdir)
        runs = saturation(binary, locust, workdir, args.warmup, window, args.repeat)
        results["saturation"] = runs
        ratios = [r["ratio_soak_vs_locust"] for r in runs]
        soak_rate = statistics.median(r["soak_load"]["requests_per_second"] for r in runs)
        stall = stalled(binary, locust, workdir, args.stall_seconds)
        results["stall"] = stall
        lag_rate = round(soak_rate * LAG_FRACTION, -1)
        lag = lag_run(binary, workdir, lag_rate, max(window, 10.0))
        results["lag_at_30_percent"] = lag
    soak_stall = stall["soak_load"]
    stall_error = abs(soak_stall["p99_seconds"] / soak_stall["server_p99_seconds"] - 1)
    targets = {
        "efficiency_vs_locust": {
            "target": f">= {EFFICIENCY_TARGET}x in every repeat",
            "values": ratios,
            "passes": all(r is not None and r >= EFFICIENCY_TARGET for r in ratios),
        },
        "stall_p99_vs_server": {
            "target": f"within {STALL_P99_TOLERANCE:.0%}",
            "value": stall_error,
            "passes": stall_error <= STALL_P99_TOLERANCE,
        },
        "lag_p99_at_30_percent": {
            "target": f"< {LAG_P99_TARGET_SECONDS * 1000:g} ms",
            "value": lag["lag_p99_seconds"],
            "passes": lag["lag_p99_seconds"] is not None
            and lag["lag_p99_seconds"] < LAG_P99_TARGET_SECONDS,
        },
    }
    results["targets"] = targets
    print(
        f"efficiency soak/locust: {', '.join(f'{r:.2f}x' for r in ratios)} "
        f"(spread {min(ratios):.2f}-{max(ratios):.2f}) -> "
        f"{_verdict(targets['efficiency_vs_locust']['passes'])} "
        f"({targets['efficiency_vs_locust']['target']})"
    )
    peer = stall.get("locust", {})
    print(
        f"1 s stall every 10 s at {STALL_RATE:.0f}/s: soak load p99 "
        f"{_fmt(soak_stall['p99_seconds'], 1000, ' ms')} (server "
        f"{_fmt(soak_stall['server_p99_seconds'], 1000, ' ms')}, off by {stall_error:.1%}; "
        f"service p99 {_fmt(soak_stall['service_p99_seconds'], 1000, ' ms')}, lag p99 "
        f"{_fmt(soak_stall['lag_p99_seconds'], 1000, ' ms')}) -> "
        f"{_verdict(targets['stall_p99_vs_server']['passes'])}; Locust p99 "
        f"{_fmt(peer.get('p99_seconds'), 1000, ' ms')} (server "
        f"{_fmt(peer.get('server_p99_seconds'), 1000, ' ms')})"
    )
    print(
        f"lag at {lag_rate:,.0f}/s (30 % of {soak_rate:,.0f}/s): p50 "
        f"{_fmt(lag['lag_p50_seconds'], 1000, ' ms')}, p99 "
        f"{_fmt(lag['lag_p99_seconds'], 1000, ' ms')}; latency p99 "
        f"{_fmt(lag['latency_p99_seconds'], 1000, ' ms')}, service p99 "
        f"{_fmt(lag['service_p99_seconds'], 1000, ' ms')}, server p99 "
        f"{_fmt(lag['server_p99_seconds'], 1000, ' ms')} (load average "
        f"{max(lag['load_average_1m']):.1f} on {lag['cores']} cores) -> "
        f"{_verdict(targets['lag_p99_at_30_percent']['passes'])}"
    )
    write_results("load_throughput", results)
    return 0 if all(t["passes"] for t in targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
