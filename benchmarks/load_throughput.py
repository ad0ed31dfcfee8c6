"""Throughput per core and p99 of ``soak load`` side by side with wrk and Locust.

    python -m benchmarks load_throughput            # 5 s per measurement, about 1 minute
    python -m benchmarks load_throughput --full     # 30 s per measurement

All three drive the same local HTTP server (a minimal keep-alive asyncio server, started here
in its own process) in one run:
1. saturation: each tool as fast as it can with the same number of connections; requests/s of
   wall time and per CPU-second of the tool's own process (user + system), and wrk's p99;
2. a fixed rate (a third of the slower tool's saturation): p99 of soak load (measured from the
   time each request was due) and of Locust (constant_throughput), so the p99s compare.
wrk is the ceiling (C, not Python); Locust's FastHttpUser in one process is the peer. Locust is
taken from ``--locust PATH`` or ``$SOAK_BENCH_LOCUST`` or PATH; without it that column is empty.
Results go to ``benchmarks/results/load_throughput.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import re
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._measure import machine, ratio, run_child, write_results
from benchmarks._servers import serve_protocol, start_benchmark_server

CONNECTIONS = 32
# Above what one Python process can send: the driver sends what it can, the rest is dropped.
SATURATING_RATE = 20_000.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


# -- the server -------------------------------------------------------------------------------
class _Answer(asyncio.Protocol):
    """Answers every request head (GET, no body) with a fixed keep-alive reply."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        count = self.buffer.count(b"\r\n\r\n")
        if count:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
            self.transport.write(RESPONSE * count)


# -- the tools --------------------------------------------------------------------------------
def _seconds(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(url: str, seconds: float) -> dict[str, Any] | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds)}s", "--latency", url]
    text, cpu = run_child(command, seconds + 30)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if rate is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}")
    requests = int(total.group(1))
    return {
        "requests": requests,
        "requests_per_second": float(rate.group(1)),
        "cpu_seconds": cpu,
        "requests_per_cpu_second": requests / cpu if cpu else None,
        "p99_seconds": _seconds(p99.group(1), p99.group(2)) if p99 else None,
    }


def run_soak(url: str, seconds: float, rate: float, max_in_flight: int) -> dict[str, Any]:
    """soak load in this process (the server is another process): CPU from getrusage."""
    from soakwatch.load.config import load_config
    from soakwatch.load.driver import Driver

    scenario = {
        "kind": "http",
        "url": url,
        "rate": rate,
        "max_in_flight": max_in_flight,
        "timeout": "10s",
    }
    config = load_config(flags={"duration": seconds}, flag_scenarios=[scenario], environ={})
    before = resource.getrusage(resource.RUSAGE_SELF)
    summary = asyncio.run(Driver(config).run())
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    part = summary["scenarios"]["http"]
    ok = part["outcomes"]["ok"]
    return {
        "target_rate": rate,
        "requests": ok,
        "requests_per_second": ok / summary["active_seconds"],
        "dropped": part["outcomes"]["dropped"],
        "errors": part["errors"] - part["outcomes"]["dropped"],
        "cpu_seconds": cpu,
        "requests_per_cpu_second": ok / cpu if cpu else None,
        "p99_seconds": part["latency_seconds"]["p99"],
        "p50_seconds": part["latency_seconds"]["p50"],
    }


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


def _locust_binary(option: str | None) -> str | None:
    for candidate in (option, os.environ.get("SOAK_BENCH_LOCUST"), shutil.which("locust")):
        if candidate and Path(candidate).exists():
            return candidate
    default = Path("/work/.locust-venv/bin/locust")
    return str(default) if default.exists() else None


def run_locust(
    locust: str, url: str, seconds: float, rate: float | None, workdir: Path
) -> dict[str, Any]:
    locustfile = workdir / "locustfile.py"
    locustfile.write_text(LOCUSTFILE, encoding="utf-8")
    prefix = workdir / f"locust-{'fixed' if rate else 'max'}"
    os.environ["BENCH_PER_USER_RATE"] = str(rate / CONNECTIONS if rate else 0)
    command = [
        locust, "-f", str(locustfile), "--headless", "-H", url, "-u", str(CONNECTIONS),
        "-r", str(CONNECTIONS), "-t", f"{int(seconds)}s", "--only-summary",
        "--csv", str(prefix), "--loglevel", "WARNING", "--stop-timeout", "1",
    ]  # fmt: skip
    text, cpu = run_child(command, seconds + 60)
    rows = list(csv.DictReader((prefix.parent / f"{prefix.name}_stats.csv").open()))
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if total is None:
        raise RuntimeError(f"no Locust stats:\n{text}")
    requests = int(total["Request Count"])
    p99 = total.get("99%")
    return {
        "target_rate": rate,
        "requests": requests,
        "requests_per_second": float(total["Requests/s"]),
        "errors": int(total["Failure Count"]),
        "cpu_seconds": cpu,
        "requests_per_cpu_second": requests / cpu if cpu else None,
        "p99_seconds": float(p99) / 1000 if p99 not in (None, "", "N/A") else None,
    }


def _fmt(value: float | None, scale: float = 1.0, unit: str = "") -> str:
    return "n/a" if value is None else f"{value * scale:,.1f}{unit}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load_throughput")
    parser.add_argument("--full", action="store_true", help="30 s per measurement")
    parser.add_argument("--seconds", type=float, help="seconds per measurement (default 5)")
    parser.add_argument("--locust", help="path of the locust command")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_protocol(_Answer, args.serve)
        return 0
    seconds = args.seconds or (30.0 if args.full else 5.0)
    server = start_benchmark_server("load_throughput")
    url = f"{server.url}/"
    results: dict[str, Any] = {
        "machine": machine(),
        "seconds_per_measurement": seconds,
        "connections": CONNECTIONS,
    }
    try:
        print(f"server: minimal asyncio HTTP on {url}; {CONNECTIONS} connections each", flush=True)
        wrk = run_wrk(url, seconds)
        results["wrk"] = wrk
        print(
            f"wrk        saturation: {_fmt(wrk and wrk['requests_per_second'])} req/s, "
            f"{_fmt(wrk and wrk['requests_per_cpu_second'])} req/CPU-s, "
            f"p99 {_fmt(wrk and wrk['p99_seconds'], 1000, ' ms')}",
            flush=True,
        )
        soak = run_soak(url, seconds, SATURATING_RATE, CONNECTIONS)
        results["soak_load"] = {"saturation": soak}
        print(
            f"soak load  saturation: {_fmt(soak['requests_per_second'])} req/s, "
            f"{_fmt(soak['requests_per_cpu_second'])} req/CPU-s "
            f"({soak['dropped']:,} due requests dropped: no free slot)",
            flush=True,
        )
        locust = _locust_binary(args.locust)
        peer: dict[str, Any] | None = None
        with tempfile.TemporaryDirectory() as workdir:
            if locust:
                peer = run_locust(locust, url.rstrip("/"), seconds, None, Path(workdir))
                results["locust"] = {"saturation": peer}
                print(
                    f"locust     saturation: {_fmt(peer['requests_per_second'])} req/s, "
                    f"{_fmt(peer['requests_per_cpu_second'])} req/CPU-s, "
                    f"p99 {_fmt(peer['p99_seconds'], 1000, ' ms')}",
                    flush=True,
                )
            else:
                print("locust: not found (pip install locust; --locust PATH)", flush=True)
            slowest = min(
                soak["requests_per_second"], peer["requests_per_second"] if peer else 1e12
            )
            fixed_rate = round(slowest / 3, -1)
            soak_fixed = run_soak(url, seconds, fixed_rate, 1000)
            results["soak_load"]["fixed_rate"] = soak_fixed
            print(
                f"soak load  at {fixed_rate:,.0f}/s: {_fmt(soak_fixed['requests_per_second'])}"
                f" req/s, p99 {_fmt(soak_fixed['p99_seconds'], 1000, ' ms')} (from due time)",
                flush=True,
            )
            if locust and peer:
                peer_fixed = run_locust(locust, url.rstrip("/"), seconds, fixed_rate, Path(workdir))
                results["locust"]["fixed_rate"] = peer_fixed
                print(
                    f"locust     at {fixed_rate:,.0f}/s: "
                    f"{_fmt(peer_fixed['requests_per_second'])} req/s, "
                    f"p99 {_fmt(peer_fixed['p99_seconds'], 1000, ' ms')}",
                    flush=True,
                )
    finally:
        server.stop()
    ratios = {
        "soak_vs_wrk_requests_per_cpu_second": ratio(
            soak["requests_per_cpu_second"], wrk and wrk["requests_per_cpu_second"]
        ),
        "soak_vs_locust_requests_per_cpu_second": ratio(
            soak["requests_per_cpu_second"], peer and peer["requests_per_cpu_second"]
        ),
        "soak_vs_locust_p99_at_fixed_rate": ratio(
            soak_fixed["p99_seconds"],
            results.get("locust", {}).get("fixed_rate", {}).get("p99_seconds"),
        ),
    }
    results["ratios"] = ratios
    for name, value in ratios.items():
        print(f"{name}: {'n/a' if value is None else f'{value:.2f}'}")
    write_results("load_throughput", results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
