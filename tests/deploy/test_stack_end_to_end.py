"""The stack end to end, every part real and local: a leaking child process watched by the real
``soak-exporter`` and loaded by the real ``soak load --run-id``, scraped by Prometheus with the
generated rules (windows of seconds) and nothing else, alerting through the Debian Alertmanager to
a webhook in the test; and every panel query of the committed dashboards run against that
Prometheus. The alert's ``run_id`` comes from the driver's own ``soak_run_info`` series."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICE = "leaky"  # the leaking_service fixture's name
RUN_ID = "stack-e2e"  # what the load_driver fixture passes to `soak load --run-id`
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARDS = sorted((REPO / "dashboards" / "soakwatch" / "dashboards").glob("*.json"))

pytestmark = pytest.mark.slow


def alertmanager_config_for_test(webhook_url: str) -> str:
    """The deploy config with its receivers pointed at the test's webhook and its waits cut
    from minutes to a second."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["templates"] = [str(ALERTMANAGER_CONFIG.parent / t) for t in config["templates"]]
    for receiver in config["receivers"]:
        for hook in receiver["webhook_configs"]:
            hook["url"] = webhook_url
    for route in [config["route"], *config["route"].get("routes", [])]:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
    return yaml.safe_dump(config, sort_keys=False)


@pytest.fixture
def stack(
    prometheus_factory: Callable[..., Any],
    alertmanager_factory: Callable[[str], Any],
    webhook_receiver: Any,
    short_rules_file: Path,
    soak_exporter: tuple[Any, int],
    load_driver: tuple[Any, int],
    leaking_service: Any,
) -> tuple[Any, Any]:
    alertmanager = alertmanager_factory(alertmanager_config_for_test(webhook_receiver.url))
    prometheus = prometheus_factory(
        scrape_targets=[
            f"127.0.0.1:{soak_exporter[1]}",
            f"127.0.0.1:{load_driver[1]}",
            f"127.0.0.1:{leaking_service.metrics_port}",
        ],
        rule_files=[short_rules_file],  # no rule states soak_run_info: the driver does
        alertmanager_urls=[alertmanager.url],
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    return prometheus, alertmanager


def test_a_leak_seen_by_the_real_exporter_reaches_the_webhook_through_alertmanager(
    stack: tuple[Any, Any], webhook_receiver: Any, load_driver: tuple[Any, int]
) -> None:
    assert stack  # started
    prometheus, _ = stack
    started = time.monotonic()
    alert = webhook_receiver.wait_for("SoakMemoryGrowth", timeout=75)
    assert time.monotonic() - started < 90
    assert alert["labels"]["service"] == SERVICE
    assert alert["labels"]["run_id"] == RUN_ID  # from the load driver's soak_run_info
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["soak_rule"] == "memory_growth"
    assert re.search(r"memory grows [\d.]+[kMG]?B/h", alert["annotations"]["summary"])
    assert alert["annotations"]["dashboard"].endswith(
        f"/d/soakwatch-service/soak-service?var-service={SERVICE}&var-run_id={RUN_ID}"
    )
    # The one soak_run_info in Prometheus is the driver's, scraped from its /metrics.
    (run_info,) = prometheus.query("soak_run_info")
    assert run_info["metric"]["run_id"] == RUN_ID
    assert run_info["metric"]["instance"] == f"127.0.0.1:{load_driver[1]}"
    assert run_info["metric"]["shard"] == "0/1"


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) of every target of every committed dashboard."""
    from soakwatch.dashboards.build import panels_of

    out = []
    for path in DASHBOARDS:
        for panel in panels_of(json.loads(path.read_text(encoding="utf-8"))):
            for target in panel.get("targets", []):
                out.append((path.name, panel["title"], target["expr"]))
    return out


def with_variables(expr: str) -> str:
    """What Grafana would send: the template variables replaced by values for this stack."""
    values = {
        "$__rate_interval": "5s",
        "$__range": "1m",
        "$__interval": "1s",
        "$service": SERVICE,
        "$run_id": ".*",
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_dashboard_panel_query_returns_series_from_a_running_stack(
    stack: tuple[Any, Any],
) -> None:
    prometheus, _ = stack
    queries = panel_queries()
    assert len(queries) >= 30
    # Rates need two scrapes and the latency baseline a warm-up and a window: poll, bounded.
    deadline = time.monotonic() + 60
    missing = queries
    while missing and time.monotonic() < deadline:
        missing = [q for q in missing if not prometheus.query(with_variables(q[2]))]
        if missing:
            time.sleep(1)
    assert not missing, "panels without data:\n" + "\n".join(
        f"{name} / {title}: {expr}" for name, title, expr in missing
    )
