"""Every panel query of the committed dashboards, run by a real Prometheus on known series: two
services, two runs one after the other, a load driver per service and one shared, the recording
rules' series and a firing alert. The variables are substituted as Grafana sends them, and the
answers must belong to the selected service and run only.

The series are written as OpenMetrics and turned into TSDB blocks by promtool (a backfill), so
the test controls exactly which service and run every sample belongs to. A backfill has no
staleness markers: a series stays visible for Prometheus' 5-minute lookback after its last
sample, so the instants asked about are more than 5 minutes away from any run's end."""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import servers
from soakwatch.dashboards.build import RUN_GATE, panels_of

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "dashboards" / "soakwatch" / "dashboards").glob("*.json"))

STEP = 15  # seconds between samples, like a scrape
MINUTES = 100
SERVICES = ("alpha", "beta")
# run -> (first minute, last minute): r1, a gap of 15 minutes, r2, then no run again.
RUNS = {"r1": (0, 30), "r2": (45, 75)}
# scenario -> the service its driver's target is labelled with ("" = a driver for every service)
SCENARIOS = {"alpha-api": "alpha", "beta-api": "beta", "shared": ""}
ALERT = {"service": "beta", "run_id": "r1", "minutes": (20, 30)}

IN_R1, IN_GAP, IN_R2, AFTER = 25, 40, 65, 90  # minutes asked about
RESTART_MINUTE = 64  # beta's one restart: seen by the Restarts annotation ([2m]) at IN_R2
RESTART_SECOND = RESTART_MINUTE * 60


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if v != "")
    return "{" + inner + "}" if inner else ""


class Series:
    """OpenMetrics lines, one series after the other (each series' samples in time order)."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.lines: list[str] = []

    def add(
        self, name: str, labels: dict[str, str], value: Any, minutes: tuple[int, int] = (0, MINUTES)
    ) -> None:
        """``value(t_seconds_from_start)`` (or a constant) every STEP within ``minutes``."""
        first, last = minutes
        for offset in range(first * 60, last * 60 + 1, STEP):
            figure = value(offset) if callable(value) else value
            # full precision: start times are ~1.8e9, which 6 digits would round together
            self.lines.append(f"{name}{_labels(labels)} {figure:.17g} {self.start + offset}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n# EOF\n"


def _histogram(series: Series, name: str, labels: dict[str, str], per_second: float) -> None:
    for le, share in (("0.005", 0.5), ("0.05", 0.9), ("0.5", 0.99), ("+Inf", 1.0)):
        series.add(f"{name}_bucket", {**labels, "le": le}, lambda t, s=share: per_second * s * t)
    series.add(f"{name}_count", labels, lambda t: per_second * t)
    series.add(f"{name}_sum", labels, lambda t: per_second * 0.01 * t)


def write_series(path: Path, start: int) -> None:
    series = Series(start)
    for run_id, minutes in RUNS.items():
        labels = {"run_id": run_id, "profile": "ci", "shard": "0/1", "job": "soak-load"}
        series.add("soak_run_info", labels, 1, minutes)
    for index, service in enumerate(SERVICES, start=1):
        s = {"service": service, "job": "soak-exporter"}
        series.add("soak_process_resident_memory_bytes", s, lambda t, i=index: 50e6 * i + 100 * t)
        series.add("soak_process_unique_memory_bytes", s, 40e6 * index)
        series.add("soak_process_virtual_memory_bytes", s, 400e6 * index)
        # beta restarts once, in r2 (RESTART_MINUTE): a new start time, the counter at 1.
        restarts = service == "beta"
        series.add(
            "soak_process_start_time_seconds",
            s,
            lambda t, r=restarts: (
                start + RESTART_MINUTE * 60 if r and t >= RESTART_SECOND else start - 600
            ),
        )
        series.add(
            "soak_process_restarts_total",
            s,
            lambda t, r=restarts: 1 if r and t >= RESTART_SECOND else 0,
        )
        series.add("soak_process_up", s, 1)
        series.add("soak_process_threads", s, 4 * index)
        series.add("soak_process_open_fds", s, 20 * index)
        for mode in ("user", "system"):
            series.add("soak_process_cpu_seconds_total", {**s, "mode": mode}, lambda t: 0.05 * t)
        for generation in ("0", "1", "2"):
            series.add(
                "soak_gc_collections_total", {**s, "generation": generation}, lambda t: t / 10
            )
        series.add("soak_gc_collected_objects_total", s, lambda t: 40.0 * t)
        series.add("soak_gc_examined_objects_total", s, lambda t: 100.0 * t)
        _histogram(series, "soak_gc_pause_seconds", s, 0.1)
        for state in ("established", "idle"):
            series.add("soak_pool_connections", {**s, "pool": "redis", "state": state}, 2 * index)
        series.add("soak_probe_success", {**s, "probe": "health"}, 1)
        series.add("soak_probe_duration_seconds", {**s, "probe": "health"}, 0.01 * index)
        # The recording rules' series (soak rules prometheus), per service.
        series.add("soak:memory_growth:slope_bytes_per_hour", s, 360000 * index)
        series.add("soak:memory_growth:smoothed_bytes", s, 50e6 * index)
        series.add("soak:gc_efficiency:ratio", s, 0.4)
    for scenario, service in SCENARIOS.items():
        load = {"scenario": scenario, "service": service, "shard": "0/1", "job": "soak-load"}
        for outcome, per_second in (("ok", 20.0), ("http_5xx", 0.5)):
            series.add(
                "soak_load_requests_total",
                {**load, "outcome": outcome},
                lambda t, r=per_second: r * t,
            )
        _histogram(series, "soak_load_request_duration_seconds", load, 20.0)
        for kind in ("http", "websocket"):
            series.add(
                "soak_load_open_connections",
                {"kind": kind, "service": service, "shard": "0/1", "job": "soak-load"},
                3,
            )
        # Summed by scenario in the rules: what the driver's service label was is kept only
        # when the scrape gave one (the recorded series then carry it too).
        recorded = {"scenario": scenario, "service": service}
        series.add("soak:error_ratio:ratio", recorded, 0.024)
        series.add("soak:latency_degradation:quantile_seconds", recorded, 0.012)
        series.add("soak:latency_degradation:baseline_quantile_seconds", recorded, 0.010)
    series.add(
        "ALERTS",
        {
            "alertname": "SoakMemoryGrowth",
            "alertstate": "firing",
            "soak_rule": "memory_growth",
            "severity": "warning",
            "service": str(ALERT["service"]),
            "run_id": str(ALERT["run_id"]),
        },
        1,
        ALERT["minutes"],  # type: ignore[arg-type]  # a (first, last) pair of minutes
    )
    path.write_text(series.text(), encoding="utf-8")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    """A real Prometheus serving the series above; and the Unix time of minute 0."""
    import time

    promtool = servers.require_binary("promtool", "prometheus")
    work = tmp_path_factory.mktemp("dashboard-queries")
    start = (int(time.time()) - 3 * 3600) // 60 * 60
    source = work / "series.om"
    write_series(source, start)
    storage = work / "prometheus" / "tsdb"
    storage.mkdir(parents=True)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(storage)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    server = servers.start_prometheus_on_tsdb(work / "prometheus", storage)
    try:
        yield server, start
    finally:
        server.stop()


def targets() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every target of every panel, annotations included."""
    out = []
    for path in COMMITTED:
        data = json.loads(path.read_text(encoding="utf-8"))
        for panel in panels_of(data):
            for target in panel["targets"]:
                out.append((path.stem, panel["title"], target["expr"]))
        for annotation in data["annotations"]["list"]:
            if "expr" in annotation:
                out.append((path.stem, f"annotation {annotation['name']}", annotation["expr"]))
    return out


def substituted(expr: str, *, service: str, run_id: str) -> str:
    """What Grafana sends: a value as it is, several (or All) as a regex group (a|b)."""
    values = {
        "$__rate_interval": "1m",
        "$__range": "10m",
        "$service": service,
        "$run_id": run_id,
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def ask(prometheus: tuple[Any, int], expr: str, minute: int, **variables: str) -> list[Any]:
    server, start = prometheus
    result: list[Any] = server.query(substituted(expr, **variables), at=start + minute * 60)
    return result


def _count(result: list[Any]) -> float:
    ((only),) = result
    return float(only["value"][1])


TARGETS = targets()
GATED = [t for t in TARGETS if RUN_GATE in t[2]]
ALERT_COUNTS = [t for t in TARGETS if t[2].startswith("count(ALERTS")]
RUN_STATS = [t for t in TARGETS if t[1] == "Run"]


def test_every_target_is_either_gated_by_the_run_or_filters_by_run_id_itself() -> None:
    assert len(TARGETS) >= 60
    assert len(GATED) >= len(TARGETS) - 8
    for dashboard, title, expr in TARGETS:
        assert RUN_GATE in expr or "$run_id" in expr, f"{dashboard} / {title}: {expr}"
        assert "$service" in expr or title == "Run", f"{dashboard} / {title}: {expr}"


@pytest.mark.parametrize("dashboard,title,expr", TARGETS, ids=[f"{d}/{t}" for d, t, _ in TARGETS])
def test_each_query_returns_only_the_selected_service_and_run(
    prometheus: tuple[Any, int], dashboard: str, title: str, expr: str
) -> None:
    result = ask(prometheus, expr, IN_R1, service="alpha", run_id="r1")
    if expr in (t[2] for t in ALERT_COUNTS):
        assert _count(result) == 0  # the one firing alert is beta's
        beta = ask(prometheus, expr, IN_R1, service="beta", run_id="r1")
        assert _count(beta) == 1
        assert _count(ask(prometheus, expr, IN_R1, service="beta", run_id="r2")) == 0
        return
    if title == "annotation Soak alerts":
        assert result == []
        (alert,) = ask(prometheus, expr, IN_R1, service="beta", run_id="(r1|r2)")
        assert alert["metric"]["service"] == "beta"
        assert ask(prometheus, expr, IN_R1, service="beta", run_id="r2") == []
        return
    if title == "annotation Restarts":  # only beta restarted, in r2
        assert result == []
        assert ask(prometheus, expr, IN_R2, service="alpha", run_id="r2") == []
        (restart,) = ask(prometheus, expr, IN_R2, service="beta", run_id="r2")
        assert restart["metric"]["service"] == "beta"
        return
    assert result, f"no series for service alpha in run r1: {expr}"
    for series in result:
        labels = series["metric"]
        assert labels.get("service", "alpha") == "alpha", (title, labels)
        assert labels.get("run_id", "r1") == "r1", (title, labels)
        if "scenario" in labels:
            assert SCENARIOS[labels["scenario"]] in ("alpha", ""), (title, labels)
        assert math.isfinite(float(series["value"][1])), (title, series)
    scenarios = {s["metric"].get("scenario") for s in result} - {None}
    if scenarios:
        assert scenarios == {"alpha-api", "shared"}, (title, scenarios)


@pytest.mark.parametrize("dashboard,title,expr", GATED, ids=[f"{d}/{t}" for d, t, _ in GATED])
def test_a_gated_query_leaves_out_the_time_of_another_run_and_keeps_the_time_between_runs(
    prometheus: tuple[Any, int], dashboard: str, title: str, expr: str
) -> None:
    assert ask(prometheus, expr, IN_R2, service="beta", run_id="r1") == []
    assert ask(prometheus, expr, IN_R2, service="beta", run_id="r2")
    assert ask(prometheus, expr, IN_R2, service="beta", run_id="(r1|r2)")  # "All"
    if title == "annotation Restarts":
        return  # beta restarted in r2 only: nothing to find between runs
    # No run in progress: nothing to tell runs apart by, so nothing is left out.
    assert ask(prometheus, expr, IN_GAP, service="beta", run_id="r2")
    assert ask(prometheus, expr, AFTER, service="beta", run_id="r1")


def test_the_run_stat_shows_the_selected_runs_only(prometheus: tuple[Any, int]) -> None:
    assert len(RUN_STATS) == 2
    for _, _, expr in RUN_STATS:
        (r1,) = ask(prometheus, expr, IN_R1, service="alpha", run_id="r1")
        assert r1["metric"]["run_id"] == "r1"
        assert ask(prometheus, expr, IN_R2, service="alpha", run_id="r1") == []
        (r2,) = ask(prometheus, expr, IN_R2, service="alpha", run_id="(r1|r2)")
        assert r2["metric"]["run_id"] == "r2"


def test_the_growth_panel_answers_in_the_rules_unit(prometheus: tuple[Any, int]) -> None:
    growth = [t for t in TARGETS if t[1].startswith("Memory growth")]
    assert len(growth) == 2
    for _, title, expr in growth:
        assert re.search(r"\(MB/h\b", title)
        (alpha,) = ask(prometheus, expr, IN_R1, service="alpha", run_id="r1")
        # 360000 bytes/hour recorded: 0.36 MB/h shown
        assert float(alpha["value"][1]) == pytest.approx(0.36)
