"""The generated alerts take ``run_id`` from the load driver's own ``soak_run_info`` series: a real
Prometheus with rules generated from a small spec (windows of seconds) scrapes a real
``soak load --run-id`` whose every request fails, and the firing alert carries that run id."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import servers
from soakwatch.rules.alerting import generate, render_rule_file
from soakwatch.rules.model import load_rules

ERROR_RATIO_IN_SECONDS = """
version: 1
rules:
  error_ratio:
    kind: counter_ratio
    metrics:
      numerator: soak_load_requests_total{outcome!="ok"}
      denominator: soak_load_requests_total
    group_by: [scenario]
    threshold: 1
    unit: percent
    comparison: "<="
    warmup: 0s
    alert: {range: 5s, for: 0s, severity: critical}
"""


@pytest.mark.slow
def test_an_alert_on_the_load_carries_the_run_id_the_load_driver_publishes(
    tmp_path: Path, prometheus_factory: Callable[..., Any]
) -> None:
    spec = tmp_path / "soak.yaml"
    spec.write_text(textwrap.dedent(ERROR_RATIO_IN_SECONDS))
    rules = tmp_path / "soak.rules.yaml"
    rules.write_text(render_rule_file(generate(load_rules(spec))))
    port = servers.free_port()
    closed = servers.free_port()  # nothing listens: every request is a connect_error
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"http://127.0.0.1:{closed}/",
        "--rate", "20/s", "--duration", "120s", "--profile", "ci", "--run-id", "e2e-run-7",
        "--metrics-listen", f"127.0.0.1:{port}", "--quiet",
    ]  # fmt: skip
    load = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        servers.wait_for_port("127.0.0.1", port, timeout=20)
        prometheus = prometheus_factory(scrape_targets=[f"127.0.0.1:{port}"], rule_files=[rules])
        info = prometheus.wait_for("soak_run_info", timeout=30)
        alert = prometheus.wait_for('ALERTS{alertname="SoakErrorRatio",alertstate="firing"}', 60)
    finally:
        load.terminate()
        try:
            load.wait(timeout=20)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
    [series] = info
    assert series["metric"]["run_id"] == "e2e-run-7" and series["metric"]["profile"] == "ci"
    [firing] = alert
    assert firing["metric"]["run_id"] == "e2e-run-7"
    assert firing["metric"]["scenario"] == "http"
    assert firing["metric"]["soak_rule"] == "error_ratio"
    # After the run the driver is gone: its series go stale and no run is "in progress".
    deadline = time.monotonic() + 30
    while prometheus.query("soak_run_info"):
        assert time.monotonic() < deadline, "soak_run_info outlived the load driver"
        time.sleep(0.5)
