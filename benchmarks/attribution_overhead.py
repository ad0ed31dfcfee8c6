"""Cost of allocation attribution (``--attribution``, tracemalloc windows) on the sample service.

Two sample services run side by side in the same run, both with the in-process exporter and the
same small leak; only one samples allocation sites, with the default settings (a 1 s window
every 60 s, 3 frames, top 10). One asyncio client drives both at the same steady rate with the
same request mix (hello, compute, counter, notes), so both see the same machine at the same
time. Measured over whole sampling intervals (from before the first window opens): CPU seconds
per request of each service (psutil, user + system) and RSS at the end. The figure is CPU per
request with attribution / without - 1. Target: < 10 %. The attributed service's top site must
be its own leaking line. Exit status 1 if either is missed.

    python -m benchmarks attribution_overhead                  # ~3.5 min: 3 windows
    python -m benchmarks attribution_overhead --intervals 1    # ~1.3 min, noisier
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from benchmarks._measure import cpu_seconds, machine, ratio, write_results
from soakwatch.exporter.attribution import DEFAULT_INTERVAL_SECONDS
from soakwatch.run.demo import sample_service_command

TARGET_CPU_OVERHEAD = 0.10
LEAK_BYTES_PER_SECOND = 20_000
MIX = [
    ("GET", "/api/hello", None, 4),
    ("GET", "/api/compute?n=2000", None, 2),
    ("GET", "/api/counter", None, 2),
    ("POST", "/api/notes", b'{"text": "soak"}', 1),
    ("GET", "/api/notes", None, 1),
]


def start(*args: str) -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        sample_service_command(
            "--port", "0", "--metrics-port", "0",
            "--leak-bytes-per-second", str(LEAK_BYTES_PER_SECOND), *args,
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if " listening on " not in line:
        process.kill()
        raise RuntimeError(f"the sample service did not start: {line}")
    url = line.split(" listening on ", 1)[1].split()[0]
    metrics = line.split(" metrics ", 1)[1].split()[0]
    return process, url, metrics


async def drive(urls: list[str], rate: float, seconds: float) -> list[int]:
    """``rate`` requests per second to each of ``urls`` for ``seconds``; answers per URL."""
    import aiohttp

    plan = [item for item in MIX for _ in range(item[3])]
    done = [0] * len(urls)
    errors = 0
    async with aiohttp.ClientSession() as session:

        async def one(index: int, method: str, path: str, body: bytes | None) -> None:
            nonlocal errors
            try:
                async with session.request(method, urls[index] + path, data=body) as response:
                    await response.read()
                    done[index] += 1
            except aiohttp.ClientError:
                errors += 1

        started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        n = 0
        while (now := time.monotonic() - started) < seconds:
            due = int(now * rate)
            while n < due:
                method, path, body, _ = plan[n % len(plan)]
                for index in range(len(urls)):
                    task = asyncio.create_task(one(index, method, path, body))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                n += 1
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.wait(tasks)
    if errors:
        print(f"  {errors} requests failed", flush=True)
    return done


def top_site(metrics: str) -> tuple[str, float] | None:
    with urllib.request.urlopen(metrics, timeout=10) as response:
        text = response.read().decode()
    found = [
        (m.group(1), float(m.group(2)))
        for m in re.finditer(
            r'^soak_allocation_site_bytes\{[^}]*site="([^"]+)"[^}]*\} (\S+)$', text, re.M
        )
    ]
    return max(found, key=lambda item: item[1]) if found else None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks attribution_overhead")
    parser.add_argument("--intervals", type=int, default=3, help="sampling intervals measured")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s to each service")
    args = parser.parse_args(argv)
    plain, plain_url, _ = start()
    traced, traced_url, traced_metrics = start("--attribution")
    try:
        procs = [psutil.Process(plain.pid), psutil.Process(traced.pid)]
        seconds = args.intervals * DEFAULT_INTERVAL_SECONDS
        # the first window opens 5 s after the exporter starts: measuring from about 1 s
        # after the start covers `intervals` whole intervals, each with one window
        asyncio.run(drive([plain_url, traced_url], args.rate, 1.0))
        before = [cpu_seconds(p) for p in procs]
        done = asyncio.run(drive([plain_url, traced_url], args.rate, seconds))
        after = [cpu_seconds(p) for p in procs]
        rss = [p.memory_info().rss for p in procs]
        site = top_site(traced_metrics)
    finally:
        for process in (plain, traced):
            process.terminate()
            process.communicate(timeout=10)
    per_request = [(a - b) / max(n, 1) for a, b, n in zip(after, before, done, strict=True)]
    overhead = (ratio(per_request[1], per_request[0]) or 0.0) - 1.0
    source = Path(__file__).parent.parent / "run/soakwatch/run/demo/sample_service/app.py"
    leak_line = next(
        n
        for n, text in enumerate(source.read_text().splitlines(), 1)
        if 'self.kept.append(b"L" * owed)' in text
    )
    site_ok = site is not None and site[0] == f"app.py:{leak_line}"
    cpu_ok = overhead < TARGET_CPU_OVERHEAD
    print(f"  measured {seconds:.0f} s at {args.rate:g} req/s per service", flush=True)
    print(f"  requests: without {done[0]}, with {done[1]}")
    print(
        f"  CPU per request: without {per_request[0] * 1e6:.0f} us, "
        f"with {per_request[1] * 1e6:.0f} us"
    )
    print(f"  RSS: without {rss[0] / 2**20:.1f} MiB, with {rss[1] / 2**20:.1f} MiB")
    print(
        f"  CPU overhead {overhead:+.1%} (target < {TARGET_CPU_OVERHEAD:.0%}): "
        f"{'ok' if cpu_ok else 'MISSED'}"
    )
    print(f"  top site {site} (the leak is app.py:{leak_line}): {'ok' if site_ok else 'MISSED'}")
    results: dict[str, Any] = {
        "machine": machine(),
        "seconds": seconds,
        "rate_per_service": args.rate,
        "requests": {"without": done[0], "with": done[1]},
        "cpu_seconds_per_request": {"without": per_request[0], "with": per_request[1]},
        "rss_bytes": {"without": rss[0], "with": rss[1]},
        "cpu_overhead": overhead,
        "target_cpu_overhead": TARGET_CPU_OVERHEAD,
        "top_site": None if site is None else {"site": site[0], "bytes": site[1]},
        "leak_site": f"app.py:{leak_line}",
    }
    write_results("attribution_overhead", results)
    return 0 if cpu_ok and site_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
