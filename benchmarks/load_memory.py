"""Memory of ``soak load``: per idle WebSocket connection, and RSS over a long run.

    python -m benchmarks load_memory            # 1,000 idle WebSockets; a 60 s run at 1,000/s
    python -m benchmarks load_memory --full     # 1,000 and 10,000 WebSockets; a 10 min run
    python -m benchmarks load_memory --long     # the RSS run only: 1 h at 1,000/s, judged

1. Idle WebSockets: a driver process opens N connections to a minimal WebSocket server (in
   another process; it completes the handshake and then stays silent) and holds them; the
   memory per connection is (RSS with N open - RSS before the run) / N. Reference: the same
   driver's baseline RSS measured in the same run. Target: 10,000 connections under 300 MB.
2. RSS over a run: ``soak load`` (a subprocess, its /metrics scraped every second) sends HTTP at
   a steady rate to load_throughput's C keep-alive server, plus a scenario whose every request
   fails to connect; its RSS is sampled every second. Reported: RSS after warm-up (the first
   quarter, at most 60 s) vs at the end, and the slope of RSS in MB/h as the analyzer's memory
   rule estimates it (windowed, blocked Theil-Sen with its 95 % interval; a level step such as a
   new allocator arena is judged as a step, not as growth); the rule passes when the upper bound
   is below 2 MB/h. Plain Theil-Sen over the samples after warm-up is reported beside.
   The driver runs as one process (``--workers 1``): the RSS judged is the driver's own.
Exits 1 when a judged run fails the memory rule (``--long``, ``--full``; a shorter run is
reported, not judged). Results go to ``benchmarks/results/load_memory.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from benchmarks._measure import machine, write_results
from benchmarks._servers import ROOT, serve_protocol, start_benchmark_server
from soakwatch.run.localservers import free_port

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MB = 1024 * 1024
# the shortest RSS run whose slope the benchmark judges against the memory rule
JUDGED_SECONDS = 480.0  # a --full run (10 min) has about 9 min after its warm-up


# -- a minimal WebSocket server: handshake, then silence ---------------------------------------
class _SilentWebSocket(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.head = b""
        self.open = False

    def data_received(self, data: bytes) -> None:
        if self.open:
            return  # frames (pongs, a close) are ignored: the connection stays idle
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        key = b""
        for line in self.head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.open = True
        self.head = b""


# -- the driver side of the idle-WebSocket measurement (runs in its own process) ---------------
def hold_websockets(url: str, count: int) -> None:
    import aiohttp  # noqa: F401 - imported before the baseline, as the driver needs it

    from soakwatch.load.config import load_config
    from soakwatch.load.driver import Driver

    scenario = {"kind": "websocket", "url": url, "connections": count, "interval": "1h"}
    config = load_config(flags={"duration": "1h"}, flag_scenarios=[scenario], environ={})
    driver = Driver(config)
    process = psutil.Process()

    async def run() -> dict[str, Any]:
        gc.collect()
        baseline = process.memory_info().rss
        task = asyncio.create_task(driver.run())
        started = time.monotonic()
        while driver.stats[0].open_connections < count:
            if time.monotonic() - started > 120 or task.done():
                break
            await asyncio.sleep(0.2)
        opened_in = time.monotonic() - started
        await asyncio.sleep(2.0)  # let buffers settle
        gc.collect()
        held = process.memory_info().rss
        open_now = driver.stats[0].open_connections
        driver.stop("benchmark")
        await task
        return {
            "connections": count,
            "opened": open_now,
            "open_seconds": opened_in,
            "baseline_rss_bytes": baseline,
            "rss_bytes": held,
            "bytes_per_connection": (held - baseline) / max(open_now, 1),
        }

    print(json.dumps(asyncio.run(run())))


def idle_websockets(count: int) -> dict[str, Any]:
    with start_benchmark_server("load_memory", "--ws-serve") as server:
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.load_memory", "--ws-hold",
             f"ws://127.0.0.1:{server.port}/", str(count)],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
        ).stdout  # fmt: skip
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


# -- RSS over a run ---------------------------------------------------------------------------
def rss_over_run(seconds: float, rate: float) -> dict[str, Any]:
    metrics_port, closed_port = free_port(), free_port()
    samples: list[tuple[float, int]] = []
    from benchmarks.load_throughput import CServer, build_server

    with tempfile.TemporaryDirectory() as workdir, CServer(build_server(Path(workdir))) as server:
        http_port = server.port
        config = Path(workdir) / "load.yaml"
        config.write_text(
            f"duration: {seconds}\n"
            "scenarios:\n"
            f"  - {{kind: http, name: api, url: 'http://127.0.0.1:{http_port}/', rate: {rate}}}\n"
            f"  - {{kind: http, name: refused, url: 'http://127.0.0.1:{closed_port}/',"
            " rate: 20}\n",
            encoding="utf-8",
        )
        summary_path = Path(workdir) / "summary.json"
        driver = subprocess.Popen(
            [sys.executable, "-m", "soakwatch.commands", "load", "--config", str(config),
             "--metrics-listen", f"127.0.0.1:{metrics_port}", "--summary",
             str(summary_path), "--quiet", "--workers", "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        process = psutil.Process(driver.pid)
        start = time.monotonic()
        while driver.poll() is None:
            now = time.monotonic() - start
            try:
                samples.append((now, process.memory_info().rss))
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{metrics_port}/metrics", timeout=5
                ) as reply:
                    reply.read()
            except (OSError, psutil.Error):
                pass
            time.sleep(1.0)
        summary = json.loads(summary_path.read_text())
    warmup = min(seconds / 4, 60.0)
    steady = [(t, r) for t, r in samples if warmup <= t <= seconds]
    result: dict[str, Any] = {
        "seconds": seconds,
        "rate_per_second": rate,
        "requests": summary["totals"]["operations"],
        "ok": summary["totals"]["ok"],
        "warmup_seconds": warmup,
        "samples": len(samples),
        "rss_after_warmup_bytes": steady[0][1] if steady else None,
        "rss_end_bytes": steady[-1][1] if steady else None,
        "rss_peak_bytes": max(r for _, r in samples) if samples else None,
        "rss_samples": [[round(t, 1), r] for t, r in samples],
    }
    if steady:
        result["rss_change_bytes"] = steady[-1][1] - steady[0][1]
    if len(steady) >= 10:
        import numpy as np

        from soakwatch.analyzer.growth import estimate_growth
        from soakwatch.analyzer.slopes import theil_sen

        per_hour = 1.0 / MB
        t = np.array([t for t, _ in samples], dtype=float)
        rss = np.array([r for _, r in samples], dtype=float)
        # The analyzer's memory rule, as `soak analyze` runs it: windowed, blocked Theil-Sen
        # with steps and warm-up handled (analyzer/growth.py), limit 2 MB/h on the upper bound.
        estimate = estimate_growth(t, rss, warmup_seconds=warmup, window_seconds=60.0)
        result["rule_slope_mb_per_hour"] = estimate.slope_per_hour * per_hour
        result["rule_slope_upper_mb_per_hour"] = estimate.upper_per_hour * per_hour
        result["rule_steps_at_seconds"] = [float(x) for x in estimate.step_times]
        # A minute of page-sized steps scaled to an hour says nothing: like the rule's own
        # min_duration, judge only a run of at least JUDGED_SECONDS after warm-up.
        judged = steady[-1][0] - steady[0][0] >= JUDGED_SECONDS
        result["memory_rule_passes"] = (
            bool(estimate.upper_per_hour * per_hour < 2.0) if judged else None
        )
        # For reference: plain Theil-Sen on every sample after warm-up (steps count as growth).
        fit = theil_sen(np.array([t for t, _ in steady]), np.array([r for _, r in steady]))
        result["theil_sen_slope_mb_per_hour"] = fit.slope * 3600.0 * per_hour
        result["theil_sen_upper_mb_per_hour"] = fit.upper * 3600.0 * per_hour
    return result


def _rule_word(passes: bool | None) -> str:
    if passes is None:
        minutes = JUDGED_SECONDS / 60
        return f"not judged: shorter than {minutes:.0f} min after warm-up (use --long or --full)"
    return "passes" if passes else "fails"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks load_memory")
    parser.add_argument("--full", action="store_true", help="10,000 WebSockets; a 10 min run")
    parser.add_argument(
        "--long", action="store_true", help="only the RSS run, 1 h at --rate (default 1,000/s)"
    )
    parser.add_argument("--seconds", type=float, help="length of the RSS run (default 60)")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s of the RSS run")
    parser.add_argument("--ws-serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ws-hold", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ws_serve:
        serve_protocol(_SilentWebSocket, args.ws_serve)
        return 0
    if args.ws_hold:
        hold_websockets(args.ws_hold[0], int(args.ws_hold[1]))
        return 0
    seconds = args.seconds or (3600.0 if args.long else 600.0 if args.full else 60.0)
    results: dict[str, Any] = {
        "machine": machine(),
        "idle_websockets": [],
    }
    for count in () if args.long else (1000, 10_000) if args.full else (1000,):
        held = idle_websockets(count)
        results["idle_websockets"].append(held)
        print(
            f"{held['opened']:,} idle WebSockets: {held['rss_bytes'] / MB:.1f} MB RSS "
            f"(baseline {held['baseline_rss_bytes'] / MB:.1f} MB, "
            f"ratio {held['rss_bytes'] / held['baseline_rss_bytes']:.2f}), "
            f"{held['bytes_per_connection'] / 1024:.1f} KiB per connection, "
            f"opened in {held['open_seconds']:.1f} s",
            flush=True,
        )
    run = rss_over_run(seconds, args.rate)
    results["rss_over_run"] = run
    if run["rss_after_warmup_bytes"] is not None:
        print(
            f"RSS over {seconds:.0f} s at {args.rate:.0f}/s ({run['ok']:,} ok): "
            f"{run['rss_after_warmup_bytes'] / MB:.1f} MB after {run['warmup_seconds']:.0f} s "
            f"warm-up -> {run['rss_end_bytes'] / MB:.1f} MB at the end "
            f"({run['rss_change_bytes'] / MB:+.2f} MB, "
            f"ratio {run['rss_end_bytes'] / run['rss_after_warmup_bytes']:.3f})",
            flush=True,
        )
    if "rule_slope_mb_per_hour" in run:
        print(
            f"memory rule (analyzer): slope {run['rule_slope_mb_per_hour']:+.2f} MB/h, 95 % "
            f"upper bound {run['rule_slope_upper_mb_per_hour']:+.2f} MB/h -> "
            f"{_rule_word(run['memory_rule_passes'])} (< 2 MB/h); steps at "
            f"{run['rule_steps_at_seconds']} s; plain Theil-Sen after warm-up "
            f"{run['theil_sen_slope_mb_per_hour']:+.2f} MB/h "
            f"(upper {run['theil_sen_upper_mb_per_hour']:+.2f})",
            flush=True,
        )
    write_results("load_memory", results)
    return 1 if run.get("memory_rule_passes") is False else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
