"""Fixtures of the analyzer's tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
