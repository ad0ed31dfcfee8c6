"""HTTP load against the real aiohttp test service: rate, outcome classes, metrics, stop."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import servers
from soakwatch.load.config import LoadConfig, load_config
from soakwatch.load.driver import Driver


def http_config(*scenarios: dict[str, Any], duration: str = "1s", **top: Any) -> LoadConfig:
    return load_config(flags={"duration": duration, **top}, flag_scenarios=scenarios, environ={})


def scenario(name: str, url: str, rate: str = "20/s", **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "name": name, "url": url, "rate": rate, **extra}


@pytest.mark.slow
@pytest.mark.asyncio
async def test_the_driver_holds_200_requests_per_second_within_5_percent_over_5_seconds(
    load_app: Any,
) -> None:
    before = load_app.stats()["hits"].get("ok", 0)
    summary = await Driver(
        http_config(scenario("api", f"{load_app.url}/ok", "200/s"), duration="5s")
    ).run()
    part = summary["scenarios"]["api"]
    assert part["achieved_rate_per_second"] == pytest.approx(200, rel=0.05)
    assert part["sent"] == pytest.approx(1000, rel=0.05)
    assert part["outcomes"]["ok"] == part["sent"]
    assert load_app.stats()["hits"]["ok"] - before == part["sent"]
    assert part["latency_seconds"]["p99"] < 1.0


@pytest.mark.asyncio
async def test_each_injected_failure_is_counted_in_its_own_outcome_class(
    load_app: Any,
) -> None:
    closed_port = servers.free_port()
    config = http_config(
        scenario("fails", f"{load_app.url}/error"),
        scenario("missing", f"{load_app.url}/missing"),
        scenario("closes", f"{load_app.url}/close"),
        scenario("stalls", f"{load_app.url}/stall?seconds=5", timeout="300ms"),
        scenario("refused", f"http://127.0.0.1:{closed_port}/"),
    )
    summary = await Driver(config).run()
    expected = {
        "fails": "http_5xx",
        "missing": "http_4xx",
        "closes": "closed",
        "stalls": "timeout",
        "refused": "connect_error",
    }
    for name, outcome in expected.items():
        part = summary["scenarios"][name]
        assert part["sent"] == 20, name
        others = {k: v for k, v in part["outcomes"].items() if v and k != outcome}
        assert (part["outcomes"][outcome], others) == (20, {}), name
    stalls = summary["scenarios"]["stalls"]["latency_seconds"]
    assert 0.3 <= stalls["min"] < 2.0  # a timeout is recorded at its deadline
    assert summary["scenarios"]["refused"]["latency_seconds"]["count"] == 0
    assert summary["totals"]["error_ratio"] == 1.0


@pytest.mark.asyncio
async def test_operations_due_while_every_in_flight_slot_is_taken_are_counted_as_dropped(
    load_app: Any,
) -> None:
    config = http_config(
        scenario("slow", f"{load_app.url}/stall?seconds=0.5", "20/s", max_in_flight=2)
    )
    part = (await Driver(config).run())["scenarios"]["slow"]
    assert part["scheduled"] == 20
    assert part["outcomes"]["ok"] + part["outcomes"]["dropped"] == 20
    assert 2 <= part["outcomes"]["ok"] <= 8
    # Latency runs from the due time: the queued wait is part of it (no coordinated omission).
    assert part["latency_seconds"]["min"] >= 0.5


@pytest.mark.asyncio
async def test_metrics_are_served_during_the_run_with_the_shard_label_and_stop_ends_it_early(
    load_app: Any, tmp_path: Path
) -> None:
    summary_path = tmp_path / "out" / "summary.json"
    config = http_config(
        scenario("api", f"{load_app.url}/ok", "100/s"),
        scenario("fails", f"{load_app.url}/error", "10/s"),
        duration="60s",
        shard="1/2",
        metrics_listen="127.0.0.1:0",
        summary=str(summary_path),
    )
    driver = Driver(config)
    run = asyncio.create_task(driver.run())
    text = ""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            await asyncio.sleep(0.1)
            if driver.metrics_address is None:
                continue
            host, port = driver.metrics_address
            async with session.get(f"http://{host}:{port}/metrics") as reply:
                text = await reply.text()
            series = 'soak_load_requests_total{outcome="http_5xx",scenario="fails",shard="1/2"}'
            if series in text and f"{series} 0.0" not in text:  # present, and counted some
                break
    driver.stop("test")
    summary = await asyncio.wait_for(run, 15)
    assert 'soak_load_requests_total{outcome="ok",scenario="api",shard="1/2"}' in text
    assert 'soak_load_request_duration_seconds_bucket{le="+Inf",scenario="api",shard="1/2"}' in (
        text
    )
    assert 'soak_load_open_connections{kind="http",shard="1/2"}' in text
    assert summary["status"] == "stopped" and summary["stop_reason"] == "test"
    assert summary["elapsed_seconds"] < 30
    assert (
        json.loads(summary_path.read_text())["scenarios"]["api"]["sent"]
        == (summary["scenarios"]["api"]["sent"])
    )
    # Shard 1 of 2 takes half the rate.
    assert summary["scenarios"]["api"]["target_rate_per_second"] == 50.0
    ok = driver.registry.get_sample_value(
        "soak_load_requests_total", {"scenario": "api", "outcome": "ok", "shard": "1/2"}
    )
    assert ok == summary["scenarios"]["api"]["outcomes"]["ok"] > 0
    assert (
        driver.registry.get_sample_value(
            "soak_load_requests_total", {"scenario": "api", "outcome": "ok", "shard": "0/1"}
        )
        is None
    )


@pytest.mark.asyncio
async def test_weighted_endpoints_share_the_rate_by_weight(load_app: Any) -> None:
    before = load_app.stats()["hits"]
    config = load_config(
        flags={"duration": "1s"},
        flag_scenarios=[
            {
                "kind": "http",
                "rate": "40/s",
                "endpoints": [
                    {"url": f"{load_app.url}/ok", "weight": 3},
                    {"url": f"{load_app.url}/missing", "weight": 1},
                ],
            }
        ],
        environ={},
    )
    part = (await Driver(config).run())["scenarios"]["http"]
    after = load_app.stats()["hits"]
    assert part["outcomes"]["ok"] == after["ok"] - before.get("ok", 0)
    assert part["outcomes"]["http_4xx"] == after["missing"] - before.get("missing", 0)
    # A low-discrepancy sequence picks the endpoints: 3:1 to within one request.
    assert abs(part["outcomes"]["ok"] - 30) <= 1 and part["sent"] == 40


@pytest.mark.asyncio
async def test_the_summary_is_rewritten_during_the_run_so_a_killed_driver_leaves_a_recent_one(
    load_app: Any, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    config = http_config(
        scenario("api", f"{load_app.url}/ok", "50/s"),
        duration="30s",
        summary=str(summary_path),
        summary_interval="300ms",
    )
    driver = Driver(config)
    run = asyncio.create_task(driver.run())
    running: dict[str, Any] = {}
    for _ in range(50):
        await asyncio.sleep(0.1)
        if summary_path.exists():
            running = json.loads(summary_path.read_text())
            if running["scenarios"]["api"]["sent"] > 0:
                break
    driver.stop("test")
    final = await asyncio.wait_for(run, 15)
    assert running["status"] == "running" and running["scenarios"]["api"]["sent"] > 0
    assert final["status"] == "stopped"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.asyncio
async def test_a_ramp_up_sends_half_the_full_rate_on_average_before_the_steady_stage(
    load_app: Any,
) -> None:
    config = http_config(scenario("api", f"{load_app.url}/ok", "40/s"), ramp_up="1s")
    part = (await Driver(config).run())["scenarios"]["api"]
    assert part["scheduled"] == part["outcomes"]["ok"] == 60  # 20 in the ramp + 40 steady


@pytest.mark.asyncio
async def test_requests_in_flight_when_stop_grace_ends_are_cut_short_in_the_summary_and_metrics(
    load_app: Any,
) -> None:
    # The real test service answers /stall after 60 s: nothing finishes within the run.
    config = http_config(
        scenario("hang", f"{load_app.url}/stall?seconds=60", "20/s", timeout="30s"),
        duration="60s",
        stop_grace="200ms",
    )
    driver = Driver(config)
    run = asyncio.create_task(driver.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if driver.stats[0].in_flight >= 10:
            break
    driver.stop("test")
    part = (await asyncio.wait_for(run, 15))["scenarios"]["hang"]
    assert part["sent"] >= 10 and part["in_flight"] == 0
    assert part["outcomes"]["cut_short"] == part["sent"] == part["errors"]
    assert part["error_ratio"] == 1.0
    assert part["latency_seconds"]["count"] == 0  # the grace is no latency of the service
    cut_short = driver.registry.get_sample_value(
        "soak_load_requests_total", {"scenario": "hang", "outcome": "cut_short", "shard": "0/1"}
    )
    assert cut_short == part["sent"]


@pytest.mark.requires_binary("ss", "iproute2")
@pytest.mark.asyncio
async def test_the_drivers_metrics_port_queues_at_least_128_connections(load_app: Any) -> None:
    config = http_config(
        scenario("api", f"{load_app.url}/ok", "5/s"), duration="60s", metrics_listen="127.0.0.1:0"
    )
    driver = Driver(config)
    run = asyncio.create_task(driver.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if driver.metrics_address is not None:
            break
    try:
        assert driver.metrics_address is not None
        listing = await asyncio.to_thread(
            subprocess.run,
            ["ss", "-ltnH", f"sport = :{driver.metrics_address[1]}"],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [line.split() for line in listing.stdout.splitlines() if line.strip()]
        assert len(rows) == 1 and int(rows[0][2]) >= 128  # Send-Q of a listener: its backlog
    finally:
        driver.stop("test")
        await asyncio.wait_for(run, 15)
