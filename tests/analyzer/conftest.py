"""Fixtures of the analyzer's tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


def _load_runs() -> ModuleType:
    # tests/analyzer is not a package (import-mode=importlib): load the builder by path
    name = "soakwatch_test_runs"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("runs.py"))
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def runs() -> ModuleType:
    return _load_runs()


@pytest.fixture(scope="session")
def leaky_run(tmp_path_factory: pytest.TempPathFactory, runs: ModuleType) -> Path:
    """6 h at 30 s: "api" leaks 10 MB/h, "worker" is flat; latency +60 % by the end."""
    return runs.write_run(
        tmp_path_factory.mktemp("leaky"), leak_mb_per_hour={"api": 10.0}, latency_growth=0.6
    )


@pytest.fixture(scope="session")
def healthy_run(tmp_path_factory: pytest.TempPathFactory, runs: ModuleType) -> Path:
    return runs.write_run(tmp_path_factory.mktemp("healthy"), seed=2)


@pytest.fixture(scope="session")
def prometheus_on_blocks() -> Callable[[Path, Path], Any]:
    """``start(openmetrics_file, work_dir)``, see :func:`start_prometheus_on_blocks`; the
    caller stops the server it gets."""
    return start_prometheus_on_blocks


def start_prometheus_on_blocks(openmetrics_file: Path, work_dir: Path) -> Any:
    """A real Prometheus serving the samples of ``openmetrics_file``: the file is turned into
    TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` and Prometheus starts on
    that data directory. (The shared ``prometheus_factory`` cannot take a pre-filled data
    directory, so this helper starts its own, stopped by PID through ``servers.Server.stop``.)"""
    import subprocess
    import time

    import requests

    import servers

    promtool = servers.require_binary("promtool", "prometheus")
    binary = servers.require_binary("prometheus", "prometheus")
    data_dir = work_dir / "prometheus"
    storage = data_dir / "tsdb"
    storage.mkdir(parents=True)
    done = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics_file),
            str(storage),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = data_dir / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    for _attempt in range(3):
        port = servers.free_port()
        log_path = data_dir / "server.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=100y",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                start_new_session=True,
            )
        server = servers.PrometheusServer(
            process, data_dir, log_path, port=port, config_path=config, storage_path=storage
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.running():
            try:
                if requests.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            time.sleep(0.1)
        tail = server.log_tail()
        if server.running():  # not ready in time: stop it by PID, keep the blocks for a retry
            server.process.kill()
        server.process.wait(10)
        if "address already in use" not in tail.lower():
            raise AssertionError(f"prometheus did not start:\n{tail}")
    raise AssertionError("prometheus could not bind a free port")
