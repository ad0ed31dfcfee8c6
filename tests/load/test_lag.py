"""The driver's own lag (due -> sent) kept out of latency (due -> reply), beside the service
time (sent -> reply): in the summary, on /metrics, and as a warning when the driver is the
bottleneck. Against the real aiohttp test service; the driver's event loop is blocked by a
task of the test itself (the only way to make the driver, not the service, slow on demand)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from soakwatch.load.config import LoadConfig, load_config
from soakwatch.load.driver import LAG_WARN_SECONDS, Driver


def http_config(*scenarios: dict[str, Any], duration: str = "1s", **top: Any) -> LoadConfig:
    return load_config(flags={"duration": duration, **top}, flag_scenarios=scenarios, environ={})


def scenario(name: str, url: str, rate: str = "20/s", **extra: Any) -> dict[str, Any]:
    return {"kind": "http", "name": name, "url": url, "rate": rate, **extra}


@pytest.mark.asyncio
async def test_a_slow_service_shows_in_service_time_and_latency_not_in_lag(load_app: Any) -> None:
    config = http_config(scenario("slow", f"{load_app.url}/stall?seconds=0.2", "20/s"))
    summary = await Driver(config).run()
    part = summary["scenarios"]["slow"]
    assert part["outcomes"]["ok"] == part["sent"] == 20
    assert part["lag_seconds"]["count"] == 20 and part["service_seconds"]["count"] == 20
    assert part["service_seconds"]["min"] >= 0.2
    assert part["latency_seconds"]["min"] >= 0.2
    assert part["lag_seconds"]["p99"] < 0.15  # the driver kept up; the service was slow
    assert summary["totals"]["lag_seconds"]["count"] == 20


@pytest.mark.asyncio
async def test_a_blocked_driver_shows_in_lag_and_latency_not_in_service_time_and_is_warned(
    load_app: Any,
) -> None:
    warnings: list[str] = []
    config = http_config(scenario("api", f"{load_app.url}/ok", "50/s"), duration="2s")
    driver = Driver(config, warn=warnings.append)

    async def block_the_loop() -> None:
        await asyncio.sleep(0.8)
        time.sleep(0.3)  # the driver's loop stalls: operations come due and wait to be sent

    blocker = asyncio.create_task(block_the_loop())
    summary = await driver.run()
    await blocker
    part = summary["scenarios"]["api"]
    assert part["outcomes"]["ok"] == part["sent"] == 100
    # About 15 operations came due during the 300 ms stall: more than 1 % waited >= 100 ms.
    assert part["lag_seconds"]["p99"] >= 0.1
    assert part["latency_seconds"]["p99"] >= 0.1
    assert part["service_seconds"]["p99"] < 0.1  # the service answered as fast as ever
    assert part["lag_seconds"]["p99"] > LAG_WARN_SECONDS
    (message,) = summary["bottleneck"]
    assert message.startswith("scenario 'api': the load driver is the bottleneck: its lag p99")
    assert message in warnings  # said on stderr (the CLI's warn) at the end


@pytest.mark.asyncio
async def test_the_lag_and_service_histograms_are_on_metrics_with_every_operation(
    load_app: Any,
) -> None:
    config = http_config(scenario("api", f"{load_app.url}/ok", "40/s"))
    driver = Driver(config)
    summary = await driver.run()
    sent = summary["scenarios"]["api"]["sent"]
    labels = {"scenario": "api", "shard": "0/1"}
    lag_count = driver.registry.get_sample_value("soak_load_schedule_lag_seconds_count", labels)
    service = driver.registry.get_sample_value("soak_load_service_duration_seconds_count", labels)
    below = driver.registry.get_sample_value(
        "soak_load_schedule_lag_seconds_bucket", {**labels, "le": "+Inf"}
    )
    assert sent == 40 and lag_count == service == below == 40


@pytest.mark.asyncio
async def test_dropped_operations_are_named_as_the_driver_being_the_bottleneck(
    load_app: Any,
) -> None:
    config = http_config(
        scenario("slow", f"{load_app.url}/stall?seconds=0.5", "20/s", max_in_flight=2)
    )
    summary = await Driver(config, warn=lambda _: None).run()
    dropped = summary["scenarios"]["slow"]["outcomes"]["dropped"]
    assert dropped > 0
    (message,) = summary["bottleneck"]
    assert f"it dropped {dropped} of 20 due operations" in message


def test_the_fast_path_waits_for_sub_millisecond_gaps_without_spinning(load_app: Any) -> None:
    """Operations 0.5 ms apart, on uvloop (as soak load runs): a timer shorter than the loop's
    millisecond is never armed (uvloop rounds it to 0 and fires it at once, again and again: a
    busy loop that cost 95 % of a core at 5,500/s). The pacer's timer fires at most about once
    per millisecond of the run, however short the gaps."""
    import uvloop

    from soakwatch.load.config import HttpScenario
    from soakwatch.load.fasthttp import FastHttpLoad
    from soakwatch.load.schedule import Schedule
    from soakwatch.load.stats import ScenarioStats

    fires = 0

    class Counted(FastHttpLoad):
        def _on_timer(self) -> None:
            nonlocal fires
            fires += 1
            super()._on_timer()

    config = http_config(scenario("tight", f"{load_app.url}/ok", "2000/s"), duration="1s")
    http = config.scenarios[0]
    assert isinstance(http, HttpScenario)
    stats = ScenarioStats("tight", "http", config.buckets)
    lags: list[float] = []

    async def run() -> float:
        load = Counted(
            http,
            stats,
            Schedule(2000.0, config.stages, config.shard),
            record=lambda outcome, due, sent, done: stats.record(outcome, done - due),
            record_lag=lags.append,
            on_error=lambda exc: None,
        )
        started = time.monotonic()
        await load.run(time.monotonic() + 0.05)
        took = time.monotonic() - started
        await load.wait_idle(5.0)
        await load.close()
        return took

    took = uvloop.run(run())
    assert stats.started == len(lags) == 2000
    assert stats.outcomes["ok"] == 2000
    assert fires <= took * 1000 * 1.2 + 10, (fires, took)  # spinning: tens of thousands
