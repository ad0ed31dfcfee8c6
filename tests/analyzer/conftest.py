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
    directory: this helper makes the blocks, then starts Prometheus on them with the one
    launcher, ``servers.start_prometheus_on_tsdb``, stopped by PID.)"""
    import subprocess

    import servers

    promtool = servers.require_binary("promtool", "prometheus")
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
    return servers.start_prometheus_on_tsdb(data_dir, storage)
