"""The run the load belongs to: ``soak_run_info{run_id,profile,shard} 1`` on the driver's /metrics
while it runs (``--run-id`` / ``run_id:``), nothing before or after, nothing without a run id."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import servers
from soakwatch.errors import ConfigError
from soakwatch.load.config import load_config
from soakwatch.load.driver import Driver


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text: str = reply.read().decode()
        return text


def test_soak_load_with_a_run_id_publishes_soak_run_info_on_metrics_while_it_runs(
    load_app: Any, tmp_path: Path
) -> None:
    port = servers.free_port()
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"{load_app.url}/ok",
        "--rate", "20/s", "--duration", "60s", "--profile", "ci", "--run-id", "nightly-42",
        "--metrics-listen", f"127.0.0.1:{port}", "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        servers.wait_for_port("127.0.0.1", port, timeout=20)
        text = scrape(port)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    assert "# TYPE soak_run_info gauge" in text
    assert 'soak_run_info{profile="ci",run_id="nightly-42",shard="0/1"} 1.0' in text
    assert text.count("soak_run_info{") == 1
    # The run is over: the driver no longer serves /metrics, so Prometheus marks it stale.
    with pytest.raises(OSError):
        scrape(port)


@pytest.mark.asyncio
async def test_the_run_info_series_is_there_only_while_the_run_is_in_progress(
    load_app: Any,
) -> None:
    config = load_config(
        flags={"duration": "60s", "run_id": "r-7", "shard": "1/2", "metrics_listen": "127.0.0.1:0"},
        flag_scenarios=[{"kind": "http", "url": f"{load_app.url}/ok", "rate": "10/s"}],
        environ={},
    )
    driver = Driver(config)
    labels = {"run_id": "r-7", "profile": "", "shard": "1/2"}
    assert driver.registry.get_sample_value("soak_run_info", labels) is None  # not started
    run = asyncio.create_task(driver.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if driver.metrics_address is not None:
            break
    during = driver.registry.get_sample_value("soak_run_info", labels)
    driver.stop("test")
    await asyncio.wait_for(run, 15)
    assert during == 1.0
    assert driver.registry.get_sample_value("soak_run_info", labels) is None  # ended


@pytest.mark.asyncio
async def test_a_load_without_a_run_id_publishes_no_run_info(load_app: Any) -> None:
    config = load_config(
        flags={"duration": "200ms"},
        flag_scenarios=[{"kind": "http", "url": f"{load_app.url}/ok", "rate": "10/s"}],
        environ={},
    )
    driver = Driver(config)
    run = asyncio.create_task(driver.run())
    await asyncio.sleep(0.1)
    names = {m.name for m in driver.registry.collect()}
    await asyncio.wait_for(run, 15)
    assert "soak_load_requests" in names and "soak_run_info" not in names


def test_the_run_id_can_come_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(
        "run_id: soak-2026-11-25\nscenarios:\n  - {kind: http, url: 'http://127.0.0.1:1/', "
        "rate: 1/s}\n"
    )
    assert load_config(path, environ={}).run_id == "soak-2026-11-25"
    assert load_config(path, flags={"run_id": "from-flag"}, environ={}).run_id == "from-flag"


@pytest.mark.parametrize("bad", ["", "two words", "x" * 129, "tab\there"])
def test_a_run_id_that_cannot_be_a_label_value_and_a_tag_is_rejected_naming_the_key(
    bad: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(
            flags={"run_id": bad},
            flag_scenarios=[{"kind": "http", "url": "http://127.0.0.1:1/", "rate": "1/s"}],
            environ={},
        )
    reason = "expected 1 to 128 printable characters without spaces"
    assert str(caught.value) == f"command line: run_id: {reason}, got {bad!r}"
