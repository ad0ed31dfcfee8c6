"""The dashboards as committed: fresh, valid against Grafana's dashboard model, and wired to the
series, the variables and the alert links the rest of soakwatch uses."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

from soakwatch.dashboards import cli
from soakwatch.dashboards.build import (
    OVERVIEW_UID,
    SERVICE_UID,
    build_all,
    panels_of,
    render_configmap,
)
from soakwatch.rules import alerting, load_rules, resolve_rules
from soakwatch.rules.alerting import generate

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "dashboards" / "soakwatch" / "dashboards"
COMMITTED = sorted(DASHBOARDS_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def through_grafana_model(data: dict[str, Any]) -> dict[str, Any]:
    """Decode into the SDK's typed dashboard model (panel options, field config and Prometheus
    queries by their plugin types) and encode again: what the model does not know is dropped."""
    register_default_plugins()
    result: dict[str, Any] = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    return result


def test_the_committed_dashboards_are_what_the_code_builds_now() -> None:
    built = build_all()
    assert sorted(built) == [p.name for p in COMMITTED]
    for path in COMMITTED:
        assert path.read_text(encoding="utf-8") == built[path.name], (
            f"{path.name} is stale: run `soak dashboards build -o dashboards/soakwatch/dashboards`"
        )


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_each_dashboard_survives_grafanas_dashboard_model_unchanged(path: Path) -> None:
    data = load(path)
    assert through_grafana_model(data) == data


def test_the_model_check_catches_a_key_grafana_does_not_know() -> None:
    data = load(COMMITTED[0])
    broken = copy.deepcopy(data)
    panel = next(p for p in broken["panels"] if p["type"] == "timeseries")
    panel["targets"][0]["exprr"] = panel["targets"][0]["expr"]
    assert through_grafana_model(broken) != broken


def test_the_dashboards_have_unique_uids_and_the_alert_links_point_at_the_service_one() -> None:
    uids = {load(p)["uid"] for p in COMMITTED}
    assert uids == {OVERVIEW_UID, SERVICE_UID}
    links = {
        alert.annotations["dashboard"] for group in generate(load_rules()) for alert in group.alerts
    }
    linked = {re.search(r"/d/([^/]+)/", link).group(1) for link in links}  # type: ignore[union-attr]
    assert linked <= uids and SERVICE_UID in linked


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_each_dashboard_is_templated_by_service_and_run_and_marks_runs(path: Path) -> None:
    data = load(path)
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert {"datasource", "service", "run_id"} <= set(variables)
    assert variables["service"]["multi"] is (data["uid"] == OVERVIEW_UID)
    annotations = {a["name"]: a for a in data["annotations"]["list"]}
    assert annotations["Soak runs"]["target"]["tags"] == ["$run_id"]
    assert variables["run_id"]["includeAll"] and "allValue" not in variables["run_id"]
    assert "soak_process_start_time_seconds" in annotations["Restarts"]["expr"]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_panel_queries_prometheus_through_the_datasource_variable(path: Path) -> None:
    panels = panels_of(load(path))
    assert len(panels) >= 12
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
        per_service = [t for t in panel["targets"] if "soak_process" in t["expr"]]
        for target in per_service:
            assert 'service=~"$service"' in target["expr"], panel["title"]


def test_the_overview_covers_memory_gc_pools_probes_and_the_load() -> None:
    exprs = " ".join(
        t["expr"]
        for p in panels_of(load(DASHBOARDS_DIR / "soak-overview.json"))
        for t in p["targets"]
    )
    for series in (
        "soak_process_resident_memory_bytes",
        "soak:memory_growth:slope_bytes_per_hour",
        "soak_gc_collections_total",
        "soak_gc_examined_objects_total",
        "soak_pool_connections",
        "soak_probe_success",
        "soak_load_requests_total",
        "soak_load_request_duration_seconds_bucket",
        "soak_load_open_connections",
        "soak_run_info",
    ):
        assert series in exprs, series
    assert all(f"histogram_quantile({q}," in exprs for q in ("0.5", "0.95", "0.99"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_the_memory_slope_panel_draws_the_soak_rules_limit_in_mb_per_hour(path: Path) -> None:
    rule = load_rules().rules["memory_growth"]
    assert rule.unit == "MB/h"
    (panel,) = (p for p in panels_of(load(path)) if p["title"].startswith("Memory growth"))
    defaults = panel["fieldConfig"]["defaults"]
    # Grafana has no bytes-per-hour unit: a custom suffix unit, the values divided into MB/h.
    assert defaults["unit"] == "suffix:MB/h"
    assert defaults["thresholds"]["steps"][-1]["value"] == rule.threshold == 2
    (target,) = panel["targets"]
    assert "soak:memory_growth:slope_bytes_per_hour" in target["expr"]
    assert " / 1000000\n" in target["expr"]
    assert "10m minimum" in panel["description"] and "deriv() over 2h" in panel["description"]


def ids_by_title(data: dict[str, Any]) -> dict[str, int]:
    """Row and panel ids by title (rows as "row TITLE")."""
    out = {}
    for panel in data["panels"]:
        key = f"row {panel['title']}" if panel["type"] == "row" else panel["title"]
        out[key] = panel["id"]
        for inner in panel.get("panels", []):
            out[inner["title"]] = inner["id"]
    return out


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_panel_and_row_has_a_unique_id(path: Path) -> None:
    data = load(path)
    everything = [*data["panels"], *(q for p in data["panels"] for q in p.get("panels", []))]
    ids = [p.get("id") for p in everything]
    assert all(isinstance(i, int) and i > 0 for i in ids), ids
    assert len(set(ids)) == len(ids) == len(everything)


def test_a_panels_id_is_the_same_on_both_dashboards_and_without_other_panels(
    tmp_path: Path,
) -> None:
    overview, service = (
        ids_by_title(load(DASHBOARDS_DIR / f"soak-{n}.json")) for n in ("overview", "service")
    )
    shared = set(overview) & set(service)
    assert len(shared) >= 15
    assert {t: overview[t] for t in shared} == {t: service[t] for t in shared}
    # Without the memory growth rule its panels go; every other panel keeps its id.
    spec = yaml.safe_load(Path(load_rules().source).read_text(encoding="utf-8"))
    del spec["rules"]["memory_growth"]
    rules_file = tmp_path / "no-growth.yaml"
    rules_file.write_text(yaml.safe_dump(spec), encoding="utf-8")
    built = build_all(load_rules(rules_file))
    for name in ("overview", "service"):
        fewer = ids_by_title(json.loads(built[f"soak-{name}.json"]))
        committed = overview if name == "overview" else service
        assert not any(t.startswith("Memory growth") for t in fewer)
        assert fewer == {t: i for t, i in committed.items() if t in fewer}
        assert len(committed) - len(fewer) == (1 if name == "overview" else 2)


def custom_rules(tmp_path: Path) -> Path:
    """The packaged rules with other thresholds, units and windows."""
    spec = yaml.safe_load(Path(load_rules().source).read_text(encoding="utf-8"))
    growth = spec["rules"]["memory_growth"]
    growth.update(threshold=5, unit="MiB/h", window="20m")
    growth["alert"]["range"] = "1h"
    spec["rules"]["gc_efficiency"]["threshold"] = 0.25
    spec["rules"]["error_ratio"]["threshold"] = 3
    spec["rules"]["error_ratio"]["alert"]["range"] = "30m"
    spec["rules"]["latency_degradation"]["window"] = "15m"
    path = tmp_path / "my-rules.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def test_build_rules_takes_thresholds_units_and_windows_from_the_given_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_file = custom_rules(tmp_path)
    out = tmp_path / "out"
    assert cli.main(["build", "-o", str(out), "--rules", str(rules_file)]) == 0
    for path in sorted(out.glob("*.json")):
        data = load(path)
        assert "Thresholds and windows: my-rules.yaml." in data["description"]
        panels = {p["title"]: p for p in panels_of(data)}
        growth = panels["Memory growth (MiB/h, slope of the GC troughs)"]
        assert growth["fieldConfig"]["defaults"]["unit"] == "suffix:MiB/h"
        assert growth["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 5
        assert " / 1048576\n" in growth["targets"][0]["expr"]
        assert "deriv() over 1h of the 20m minimum" in growth["description"]
        assert "(< 5 MiB/h)" in growth["description"]
        gc = panels["GC efficiency (collected / examined)"]
        assert gc["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 0.25
        errors = panels["Error ratio"]
        assert errors["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == 0.03
        assert errors["targets"][1]["legendFormat"] == "{{scenario}} over 30m (error_ratio)"
        assert "judges over 30m" in errors["description"]
        assert "p95 now vs the first 15m after the 10m warm-up" in panels
    # The committed dashboards are the packaged rules': against these they are stale.
    assert (
        cli.main(["build", "-o", str(DASHBOARDS_DIR), "--check", "--rules", str(rules_file)]) == 1
    )
    assert cli.main(["build", "-o", str(DASHBOARDS_DIR), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_build_rules_that_do_not_load_are_one_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["build", "-o", str(tmp_path), "--rules", str(tmp_path / "nope.yaml")]) == 2
    assert (
        capsys.readouterr().err
        == f"soak dashboards: --rules {tmp_path / 'nope.yaml'}: no such file\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nrules: {memory_growth: {kind: slope, threshold: lots}}\n")
    assert cli.main(["build", "-o", str(tmp_path), "--rules", str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soak dashboards: ") and "broken.yaml" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert list(tmp_path.glob("*.json")) == []


def test_build_check_reports_stale_files_and_build_writes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["build", "--output-dir", str(tmp_path), "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert cli.main(["build", "--output-dir", str(tmp_path)]) == 0
    assert cli.main(["build", "--output-dir", str(tmp_path), "--check"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [p.name for p in COMMITTED]


def test_build_creates_its_output_folder_and_writes_the_committed_dashboards_into_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "grafana" / "provisioning"
    assert cli.main(["build", "-o", str(output)]) == 0
    assert sorted(p.name for p in output.iterdir()) == [p.name for p in COMMITTED]
    for path in COMMITTED:
        assert (output / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    assert f"wrote {output / COMMITTED[0].name}" in capsys.readouterr().out


def test_build_without_an_output_writes_nothing_and_says_what_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in COMMITTED}
    assert cli.main(["build"]) == 2
    assert capsys.readouterr().err == (
        "soak dashboards: build needs --output-dir DIR and/or --configmap FILE\n"
    )
    assert list(tmp_path.iterdir()) == []
    assert {p: p.stat().st_mtime_ns for p in COMMITTED} == before  # the package is untouched


def test_the_kubernetes_configmap_holds_exactly_the_committed_dashboards() -> None:
    path = REPO / "deploy" / "kubernetes" / "grafana-dashboards.yaml"
    files = {p.name: p.read_text(encoding="utf-8") for p in COMMITTED}
    assert path.read_text(encoding="utf-8") == render_configmap(files, namespace="soak"), (
        "stale: run `soak dashboards build --configmap deploy/kubernetes/grafana-dashboards.yaml"
        " --namespace soak`"
    )
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert manifest["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert {name: json.loads(text) for name, text in manifest["data"].items()} == {
        p.name: load(p) for p in COMMITTED
    }


def test_build_rules_takes_a_packaged_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quick = load_rules(resolve_rules("quick")).rules["memory_growth"]
    default = load_rules().rules["memory_growth"]
    assert (quick.window_seconds, quick.alert.range_seconds) != (
        default.window_seconds,
        default.alert.range_seconds,
    )
    assert cli.main(["build", "-o", str(tmp_path), "--rules", "quick"]) == 0
    data = load(tmp_path / "soak-service.json")
    assert "Thresholds and windows: the packaged 'quick' rules." in data["description"]
    (growth,) = (p for p in panels_of(data) if p["title"].startswith("Memory growth"))
    window = alerting.prometheus_duration(quick.window_seconds)
    fit = alerting.prometheus_duration(quick.alert.range_seconds)
    assert f"deriv() over {fit} of the {window} minimum" in growth["description"]
    assert growth["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"] == quick.threshold
    capsys.readouterr()
    assert cli.main(["build", "-o", str(tmp_path / "x"), "--rules", "quik"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soak dashboards: unknown rules name 'quik'; known: default; presets:")
    assert "quick" in err and not (tmp_path / "x").exists()
