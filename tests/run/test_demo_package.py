"""The demo's sample service and configs are package data of ``soakwatch.run.demo``: found
through importlib.resources, started from any folder, the configs parsed as the demo does."""

from __future__ import annotations

import os
import subprocess
from contextlib import ExitStack
from importlib.resources import files
from pathlib import Path

import requests

from soakwatch.rules.model import load_rules
from soakwatch.run.demo import DEMO_CONFIG, DEMO_RULES, demo_config, sample_service_command

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_package_holds_the_sample_service_and_both_configs() -> None:
    package = files("soakwatch.run.demo")
    for name in ("sample_service/app.py", "sample_service/__main__.py", DEMO_CONFIG, DEMO_RULES):
        assert package.joinpath(name).is_file(), name
    assert not (REPO / "examples").exists(), "the demo's files live in the package only"


def test_the_sample_service_starts_as_a_module_from_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    process = subprocess.Popen(
        sample_service_command("--port", "0", "--name", "packaged"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = ""
        for line in process.stdout:
            if " listening on " in line:
                break
        assert " listening on " in line, line
        url = line.split(" listening on ", 1)[1].split()[0]
        health = requests.get(f"{url}/health", timeout=10).json()
        assert (health["status"], health["pid"]) == ("ok", process.pid)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_demo_config_fills_in_its_values_and_points_at_the_packaged_rules() -> None:
    values = {
        "healthy_url": "http://127.0.0.1:8001",
        "healthy_ws": "ws://127.0.0.1:8001",
        "healthy_hostport": "127.0.0.1:8001",
        "healthy_pid": 101,
        "leaky_url": "http://127.0.0.1:8002",
        "leaky_pid": 102,
        "redis_url": "redis://127.0.0.1:6379/0",
        "redis_port": 6379,
        "postgres_dsn": "postgresql://soak:pw@127.0.0.1:5432/soak",
        "postgres_port": 5432,
    }
    with ExitStack() as stack:
        config = demo_config(values, stack)
        assert config.profile == "demo"
        assert [c.name for c in config.checks] == ["healthy", "leaky", "redis", "postgres", "auth"]
        assert config.scenario_requires["ws_auth"] == ("auth",)
        assert config.rules_path is not None and config.rules_path.name == DEMO_RULES
        assert "memory_growth" in load_rules(config.rules_path).rules
