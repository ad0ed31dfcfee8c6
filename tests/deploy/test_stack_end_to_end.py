"""The stack end to end, every part real and local: a leaking child process watched by the real
``soak-exporter`` and loaded by the real ``soak load --run-id``, scraped by Prometheus with the
generated rules (windows of seconds) and nothing else, alerting through the Debian Alertmanager to
a webhook in the test; and every panel query of the committed dashboards run against that
Prometheus. The alert's ``run_id`` comes from the driver's own ``soak_run_info`` series.

The fast-leak alert with the production windows (issue 15): a real Prometheus evaluates the
committed rule file over backfilled blocks (``promtool tsdb create-blocks-from openmetrics``) of a
10x leak that began 28 minutes before "now", after a 15 minute warm-up; the alert reaches the
webhook through the real Alertmanager, and a healthy service beside it stays silent. With the
short windows the same stack pages the fast alert from the real exporter's samples, and
``SoakExporterDown`` once the exporter is stopped during the run."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import servers
from soakwatch.rules.alerting import FAST_FACTOR
from soakwatch.rules.model import load_rules

REPO = Path(__file__).resolve().parents[2]
SERVICE = "leaky"  # the leaking_service fixture's name
RUN_ID = "stack-e2e"  # what the load_driver fixture passes to `soak load --run-id`
ALERTMANAGER_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
COMMITTED_RULES = REPO / "rules" / "prometheus" / "soak.rules.yaml"
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


def test_the_fast_leak_alert_and_exporter_down_reach_the_webhook_from_the_real_stack(
    stack: tuple[Any, Any], webhook_receiver: Any, soak_exporter: tuple[Any, int]
) -> None:
    """Short windows: the fast alert from the real exporter's samples of a 1 MB/s leak; then
    the exporter stops while the load driver (the run) goes on, and that pages too."""
    prometheus, _ = stack
    fast = webhook_receiver.wait_for("SoakMemoryGrowthFast", timeout=75)
    assert fast["labels"]["service"] == SERVICE
    assert fast["labels"]["run_id"] == RUN_ID
    assert fast["labels"]["severity"] == "critical"
    assert re.search(r"memory grows at least [\d.]+[kMG]?B/h", fast["annotations"]["summary"])
    exporter, port = soak_exporter
    exporter.stop()
    stopped = time.monotonic()
    down = webhook_receiver.wait_for("SoakExporterDown", timeout=60)
    assert time.monotonic() - stopped < 60
    assert down["labels"]["service"] == SERVICE
    assert down["labels"]["instance"] == f"127.0.0.1:{port}"
    assert down["labels"]["run_id"] == RUN_ID
    # The memory judgment lost its series: an alert says so instead of a quiet "resolved".
    assert prometheus.wait_for(
        f'ALERTS{{alertname="SoakMemoryGrowthAbsent",alertstate="firing",service="{SERVICE}"}}',
        timeout=30,
    )


# -- the production windows over backfilled samples ---------------------------------------------
MB = 1e6
STEP = 15  # seconds between samples, the compose scrape interval
LEAK_AGO = 28 * 60  # the leak began this long before Prometheus starts: the 30 minute bound
WARM_UP = 15 * 60  # settled by then


def rss_at(age: float, *, leak_per_hour: float) -> float:
    """Resident memory ``age`` seconds after the process started: +200 MB during 12 minutes,
    a 30 MB GC sawtooth of 7 minutes, and from the end of the warm-up a leak."""
    ramp = 200 * MB * min(age, 720) / 720
    tooth = 30 * MB * (age % 420) / 420
    return 100 * MB + ramp + tooth + leak_per_hour * max(0.0, age - WARM_UP) / 3600


def backfill_text(now: float, leak_per_hour: float) -> str:
    """OpenMetrics for promtool: a leaking and a steady service of one exporter, the run."""
    started = now - WARM_UP - LEAK_AGO
    exporter = 'job="soak-exporter",instance="exporter:9464"'
    times = [started + i * STEP for i in range(int((now - started) // STEP) + 1)]
    lines = ["# TYPE soak_process_resident_memory_bytes gauge"]
    for service, per_hour in (("leaky", leak_per_hour), ("steady", 0.0)):
        lines += [
            f'soak_process_resident_memory_bytes{{service="{service}",{exporter}}} '
            f"{rss_at(t - started, leak_per_hour=per_hour):.0f} {t:.3f}"
            for t in times
        ]
    lines.append("# TYPE soak_process_start_time_seconds gauge")
    for service in ("leaky", "steady"):
        lines += [
            f'soak_process_start_time_seconds{{service="{service}",{exporter}}} '
            f"{started:.3f} {t:.3f}"
            for t in times
        ]
    lines.append("# TYPE up gauge")
    lines += [f"up{{{exporter}}} 1 {t:.3f}" for t in times]
    lines.append("# TYPE soak_run_info gauge")
    lines += [f'soak_run_info{{run_id="backfill-15",profile="ci"}} 1 {t:.3f}' for t in times]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.mark.requires_binary("promtool", "prometheus")
def test_a_ten_times_leak_pages_through_alertmanager_within_30_minutes_of_its_start(
    tmp_path: Path, alertmanager_factory: Callable[[str], Any], webhook_receiver: Any
) -> None:
    """The committed rules, the production windows: 28 minutes of a 10x leak after a 15
    minute warm-up are enough to page; the steady service beside it is not paged."""
    ten_times = 10 * load_rules().rules["memory_growth"].threshold_base
    now = time.time()
    source = tmp_path / "samples.om"
    source.write_text(backfill_text(now, ten_times), encoding="utf-8")
    tsdb = tmp_path / "tsdb"
    done = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alertmanager = alertmanager_factory(alertmanager_config_for_test(webhook_receiver.url))
    config = servers.prometheus.prometheus_config(
        rule_files=[COMMITTED_RULES],
        alertmanager_urls=[alertmanager.url],
        scrape_interval="15s",
        evaluation_interval="5s",
    )
    prometheus = servers.prometheus.start_prometheus(
        config,
        storage_path=tsdb,
        extra_args=["--rules.alert.resend-delay=1s"],
        server_class=servers.PrometheusServer,
    )
    try:
        alert = webhook_receiver.wait_for("SoakMemoryGrowthFast", timeout=90)
        # The leak began LEAK_AGO before the samples end; Prometheus judged them at once.
        assert alert["labels"]["service"] == "leaky"
        assert alert["labels"]["run_id"] == "backfill-15"
        assert alert["labels"]["severity"] == "critical"
        fast = {
            r["metric"]["service"]: float(r["value"][1])
            for r in prometheus.query("soak:memory_growth:fast_slope_bytes_per_hour")
        }
        limit = FAST_FACTOR * ten_times / 10
        # The leak's lowest 10m slope clears 5x the threshold; the steady service's is ~0.
        assert fast["leaky"] >= limit and abs(fast["steady"]) < limit / 10, fast
        # What Prometheus holds as active alerts (its API; the webhook saw only the leak).
        active = requests.get(f"{prometheus.url}/api/v1/alerts", timeout=10).json()
        named = [
            (a["labels"]["alertname"], a["labels"].get("service"), a["state"])
            for a in active["data"]["alerts"]
        ]
        assert ("SoakMemoryGrowthFast", "leaky", "firing") in named
        assert ("SoakMemoryGrowthFast", "steady", "firing") not in named
        assert not [n for n in named if n[0] == "SoakMemoryGrowthFast" and n[1] != "leaky"]
        # The slow alert needs hours: it is not what paged.
        assert not [n for n in named if n[0] == "SoakMemoryGrowth"]
    finally:
        prometheus.stop()
