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
        # until both send (on a loaded machine a worker's imports take seconds), then 1 s more
        while not all(
            any(c.raddr and c.raddr[1] == load_app.port for c in w.net_connections("tcp"))
            for w in workers
        ):
            assert time.monotonic() < deadline, "the workers sent no request"
            time.sleep(0.1)
        time.sleep(1.0)
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


def test_thresholds_under_workers_are_judged_once_on_the_merged_figures(
    load_app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soakwatch.exitcodes import EXIT_THRESHOLD
    from soakwatch.load.cli import main

    before = load_app.stats()["hits"].get("ok", 0)
    out = tmp_path / "summary.json"
    argv = [
        "--http", f"{load_app.url}/ok", "--rate", "40/s", "--duration", "2s", "--workers", "2",
        "--quiet", "--summary", str(out),
        # each worker alone sends 20/s: only the sum of both holds the first and breaks the second
        "--threshold", "rate>30", "--threshold", "rate>=60", "--threshold", "error_ratio<=0",
    ]  # fmt: skip
    assert main(argv) == EXIT_THRESHOLD
    summary = json.loads(out.read_text())
    results = {r["threshold"]: r for r in summary["thresholds"]}
    assert [r["status"] for r in summary["thresholds"]] == ["ok", "breached", "ok", "ok"]
    assert 30 < results["rate>30"]["value"] < 45  # 80 sent over the 2 s the schedules ran
    part = summary["scenarios"]["http"]
    assert part["sent"] == part["outcomes"]["ok"] == 80
    assert load_app.stats()["hits"]["ok"] - before == 80  # counted by the service
    err = capsys.readouterr().err
    assert "soak load: threshold http: rate>=60: rate=" in err and " breached" in err


def test_abort_on_fail_under_workers_stops_every_worker_on_the_merged_figures(
    load_app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soakwatch.exitcodes import EXIT_THRESHOLD
    from soakwatch.load.cli import main

    out = tmp_path / "summary.json"
    argv = [
        "--http", f"{load_app.url}/error", "--rate", "20/s", "--duration", "60s",
        "--workers", "2", "--quiet", "--summary", str(out),
        "--threshold", "error_ratio<0.5", "--abort-on-fail", "--abort-grace", "1s",
    ]  # fmt: skip
    started = time.monotonic()
    assert main(argv) == EXIT_THRESHOLD
    assert time.monotonic() - started < 20  # long before the 60 s
    summary = json.loads(out.read_text())
    assert summary["status"] == "stopped"
    assert summary["stop_reason"].startswith("threshold http: error_ratio<0.5: error_ratio=1")
    assert summary["scenarios"]["http"]["outcomes"]["http_5xx"] >= 10


PID_FLOW = """
import os


async def flow(client):
    await client.get("/ok", name="ok")
    async with client.step(f"pid {os.getpid()}"):  # one step name per worker process
        await client.get("/missing", check=False)
"""


@pytest.mark.asyncio
async def test_a_python_scenario_under_workers_sums_its_steps_over_them(
    load_app: Any, tmp_path: Path
) -> None:
    from prometheus_client import generate_latest

    (tmp_path / "soak_pid_flows.py").write_text(PID_FLOW)
    path = tmp_path / "load.yaml"
    path.write_text(
        f"""duration: 2s
scenarios:
  - {{kind: python, name: flow, function: "soak_pid_flows:flow", base_url: "{load_app.url}",
     rate: 20/s}}
"""
    )
    before = load_app.stats()["hits"]
    driver = Driver(load_config(str(path), environ={}), workers=2)
    summary = await driver.run()
    after = load_app.stats()["hits"]
    part = summary["scenarios"]["flow"]
    assert part["completed"] == part["outcomes"]["ok"] == 40
    steps = part["steps"]
    assert steps["ok"]["completed"] == steps["ok"]["outcomes"]["ok"] == 40
    assert after["ok"] - before.get("ok", 0) == 40  # counted by the service
    by_pid = {name: step for name, step in steps.items() if name.startswith("pid ")}
    assert len(by_pid) == 2  # both workers ran the flow
    assert sum(s["outcomes"]["ok"] for s in by_pid.values()) == 40
    assert after["missing"] - before.get("missing", 0) == 40
    assert all(s["latency_seconds"]["count"] == s["completed"] for s in by_pid.values())
    metrics = generate_latest(driver.registry).decode()
    line = 'soak_load_step_requests_total{outcome="ok",scenario="flow",shard="0/1",step="ok"}'
    assert f"{line} 40.0" in metrics  # one /metrics, summed over the workers
