"""``--workers N``: one run in N processes that share the schedule like ``--shard``, merged
into one summary and one /metrics; against the real aiohttp test service."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from soakwatch.load.config import LoadConfig, load_config
from soakwatch.load.driver import Driver
from soakwatch.load.schedule import Schedule, Stages
from soakwatch.load.workers import worker_config


def http_config(*scenarios: dict[str, Any], duration: str = "2s", **top: Any) -> LoadConfig:
    return load_config(flags={"duration": duration, **top}, flag_scenarios=scenarios, environ={})


def test_the_workers_slices_of_a_shard_are_exactly_its_schedule() -> None:
    config = http_config({"kind": "http", "url": "http://127.0.0.1:9/", "rate": 30}, shard="1/3")
    stages = Stages(1.0, 3.0, 1.0)
    shards = [worker_config(config, j, 2).shard for j in range(2)]
    assert shards == [(1, 6), (4, 6)]
    merged = sorted(t for s in shards for t in Schedule(30.0, stages, s).due_times())
    assert merged == list(Schedule(30.0, stages, (1, 3)).due_times())
    assert worker_config(config, 0, 2).summary_path is None


@pytest.mark.asyncio
async def test_two_workers_send_the_whole_schedule_into_one_summary_and_one_metrics(
    load_app: Any,
) -> None:
    before = load_app.stats()["hits"].get("ok", 0)
    config = http_config(
        {"kind": "http", "name": "api", "url": f"{load_app.url}/ok", "rate": "100/s"},
        metrics_listen="127.0.0.1:0",
    )
    driver = Driver(config, workers=2)
    run = asyncio.create_task(driver.run())
    seen = 0.0
    async with aiohttp.ClientSession() as session:
        while not run.done():
            await asyncio.sleep(0.2)
            if driver.metrics_address is None:
                continue
            host, port = driver.metrics_address
            try:
                async with session.get(f"http://{host}:{port}/metrics") as reply:
                    text = await reply.text()
            except aiohttp.ClientConnectionError:
                break  # the run ended: its /metrics closed
            for line in text.splitlines():
                if line.startswith('soak_load_requests_total{outcome="ok",scenario="api"'):
                    seen = max(seen, float(line.split()[-1]))
    summary = await run
    part = summary["scenarios"]["api"]
    assert part["sent"] == part["outcomes"]["ok"] == 200
    assert load_app.stats()["hits"]["ok"] - before == 200  # counted by the service
    assert part["lag_seconds"]["count"] == 200 and part["service_seconds"]["count"] == 200
    assert summary["shard"] == "0/1" and summary["status"] == "completed"
    assert 50 <= seen <= 200  # one /metrics, summed over both workers, during the run


def test_soak_load_with_workers_stops_all_of_them_on_sigterm_and_writes_one_summary(
    load_app: Any, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"{load_app.url}/ok",
        "--rate", "50/s", "--duration", "60s", "--workers", "2", "--quiet",
        "--summary", str(summary_path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while len(psutil.Process(process.pid).children()) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        workers = psutil.Process(process.pid).children()
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    assert "stopped by SIGTERM; summary written" in stderr.decode()
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []
    summary = json.loads(summary_path.read_text())
    assert summary["stop_reason"] == "SIGTERM"
    assert summary["scenarios"]["http"]["outcomes"]["ok"] >= 25


def test_workers_must_be_a_whole_number_of_at_least_one() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "soakwatch.commands", "load", "--http", "http://127.0.0.1:9/",
         "--rate", "1/s", "--workers", "0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--workers: a whole number of processes, at least 1, not '0'" in result.stderr


def test_workers_of_a_killed_parent_stop_instead_of_sending_on_as_orphans(load_app: Any) -> None:
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"{load_app.url}/ok",
        "--rate", "20/s", "--duration", "60s", "--workers", "2", "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while len(psutil.Process(process.pid).children()) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        workers = psutil.Process(process.pid).children()
        time.sleep(1.0)
    finally:
        process.kill()  # no graceful stop: SIGKILL, as the OOM killer would
        process.wait()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == []
