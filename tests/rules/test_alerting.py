"""The Prometheus rule generator: exact generated rules for small specs, the committed files kept
fresh, promtool's check, and the CLI end to end."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from soakwatch.rules import cli
from soakwatch.rules.alerting import (
    AlertingRule,
    RecordingRule,
    alert_name,
    generate,
    has_prometheus_form,
    prometheus_duration,
    render_rule_file,
)
from soakwatch.rules.model import load_rules

REPO = Path(__file__).resolve().parents[2]
COMMITTED_RULES = REPO / "rules" / "prometheus" / "soak.rules.yaml"
COMMITTED_PROMETHEUS_RULE = REPO / "deploy" / "kubernetes" / "prometheusrule.yaml"
PROMTOOL = "promtool"  # on PATH: the tests that run it carry @needs_promtool
needs_promtool = pytest.mark.requires_binary("promtool", "prometheus")

NO_RUN = "soak_run_info == 1"


def spec(tmp_path: Path, rules: str) -> Path:
    """A rules spec file holding ``rules`` (YAML of the ``rules:`` mapping)."""
    path = tmp_path / "soak.yaml"
    path.write_text("version: 1\nrules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))
    return path


SLOPE_RULE = """
memory_growth:
  kind: slope
  metrics: {value: soak_process_resident_memory_bytes, start_time: soak_process_start_time_seconds}
  group_by: [service]
  threshold: 2
  unit: MB/h
  comparison: "<"
  warmup: 5m
  window: 10m
  alert: {range: 2h, for: 1h, severity: warning}
"""


def with_run_id(condition: str) -> str:
    return (
        f"(\n{condition}\n) * on () group_left (run_id) topk(1, soak_run_info == 1)\n"
        f"or (\n{condition}\n) unless on () {NO_RUN}"
    )


def test_a_slope_rule_becomes_a_smoothed_series_its_slope_per_hour_and_an_alert_gated_on_uptime(
    tmp_path: Path,
) -> None:
    (group,) = generate(load_rules(spec(tmp_path, SLOPE_RULE)), grafana_url="http://g:3000/")
    assert group.name == "soak.memory_growth"
    assert group.records == (
        RecordingRule(
            "soak:memory_growth:smoothed_bytes",
            "min_over_time(soak_process_resident_memory_bytes[10m])",
        ),
        RecordingRule(
            "soak:memory_growth:slope_bytes_per_hour",
            "deriv(soak:memory_growth:smoothed_bytes[2h]) * 3600",
        ),
        RecordingRule(
            "soak:memory_growth:fast_slope_bytes_per_hour",
            "min_over_time(\n"
            "  (deriv(min_over_time(soak_process_resident_memory_bytes[10m])[10m:]) * 3600)[5m:]\n"
            ")",
        ),
    )
    alert, fast = group.alerts
    assert alert.alert == "SoakMemoryGrowth"
    assert alert.expr == with_run_id(
        "soak:memory_growth:slope_bytes_per_hour >= 2000000\n"
        "and on (service) (time() - soak_process_start_time_seconds) > 8100"
    )
    assert alert.for_seconds == 3600
    assert dict(alert.labels) == {"severity": "warning", "soak_rule": "memory_growth"}
    assert alert.annotations["dashboard"] == (
        "http://g:3000/d/soakwatch-service/soak-service?var-service={{ $labels.service }}"
        "&var-run_id={{ $labels.run_id }}"
    )
    assert "(limit 2 MB/h)" in alert.annotations["summary"]
    # The fast alert: 5 x the threshold, judged once warm-up + window + range + hold have passed.
    assert fast.alert == "SoakMemoryGrowthFast"
    assert fast.expr == with_run_id(
        "soak:memory_growth:fast_slope_bytes_per_hour >= 10000000\n"
        "and on (service) (time() - soak_process_start_time_seconds) > 1800"
    )
    assert fast.for_seconds == 0  # the hold is in the expression
    assert dict(fast.labels) == {"severity": "critical", "soak_rule": "memory_growth"}


def test_a_service_override_gets_its_own_alert_and_is_left_out_of_the_default_one(
    tmp_path: Path,
) -> None:
    rules = SLOPE_RULE + textwrap.indent(
        "services:\n  cache: {threshold: 50}\n  batch: {enabled: false}\n", "  "
    )
    (group,) = generate(load_rules(spec(tmp_path, rules)))
    default, cache = [a for a in group.alerts if a.alert == "SoakMemoryGrowth"]
    default_fast, cache_fast = [a for a in group.alerts if a.alert == "SoakMemoryGrowthFast"]
    assert default_fast.expr.startswith(
        '(\nsoak:memory_growth:fast_slope_bytes_per_hour{service!~"batch|cache"} >= 10000000\n'
    )
    assert cache_fast.expr.startswith(
        '(\nsoak:memory_growth:fast_slope_bytes_per_hour{service="cache"} >= 250000000\n'
    )
    assert default.expr.startswith(
        '(\nsoak:memory_growth:slope_bytes_per_hour{service!~"batch|cache"} >= 2000000\n'
    )
    assert cache.expr.startswith(
        '(\nsoak:memory_growth:slope_bytes_per_hour{service="cache"} >= 50000000\n'
    )
    assert "(limit 50 MB/h)" in cache.annotations["summary"]


def test_a_counter_ratio_is_judged_only_on_a_range_that_lies_after_the_warm_up(
    tmp_path: Path,
) -> None:
    rules = """
    error_ratio:
      kind: counter_ratio
      metrics:
        numerator: soak_load_requests_total{outcome!="ok"}
        denominator: soak_load_requests_total
      group_by: [scenario]
      threshold: 1
      unit: percent
      comparison: "<="
      warmup: 5m
      alert: {range: 15m, for: 5m, severity: critical}
    """
    (group,) = generate(load_rules(spec(tmp_path, rules)))
    assert group.records == (
        RecordingRule(
            "soak:error_ratio:ratio",
            'sum by (scenario) (increase(soak_load_requests_total{outcome!="ok"}[15m]))\n'
            "/ sum by (scenario) (increase(soak_load_requests_total[15m]))",
        ),
    )
    assert group.alerts[0].expr == with_run_id(
        "soak:error_ratio:ratio > 0.01\n"
        "and on (scenario) group by (scenario) (soak_load_requests_total offset 20m)"
    )
    assert (
        group.alerts[0]
        .annotations["dashboard"]
        .startswith("http://localhost:3000/d/soakwatch-overview/")
    )


def test_a_disabled_rule_generates_no_group(tmp_path: Path) -> None:
    rules = SLOPE_RULE + "  enabled: false\n"
    assert generate(load_rules(spec(tmp_path, rules))) == ()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (7200, "2h"),
        (90, "1m30s"),
        (0.5, "500ms"),
        (0, "0s"),
        (86400 * 8, "1w1d"),
        (65.25, "1m5s250ms"),
    ],
)
def test_durations_are_written_the_way_prometheus_reads_them(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


def test_alert_names_are_the_rule_name_in_camel_case_after_soak() -> None:
    assert alert_name("latency_degradation") == "SoakLatencyDegradation"


def test_every_kind_of_the_packaged_rules_yields_recordings_and_an_alert() -> None:
    groups = generate(load_rules())
    judged = [rule for rule in load_rules().rules.values() if has_prometheus_form(rule)]
    assert [g.name for g in groups] == [f"soak.{r.name}" for r in judged] + ["soak.exporter"]
    for group in groups:
        # soak.exporter reads the recorded watched series of the rules
        assert (group.records or group.name == "soak.exporter") and group.alerts, group.name
        for alert in group.alerts:
            assert isinstance(alert, AlertingRule)
            assert set(alert.annotations) == {"summary", "description", "look_at", "dashboard"}


def test_the_committed_rule_file_is_what_the_generator_makes_now() -> None:
    expected = cli.generate_text(None)
    assert COMMITTED_RULES.read_text(encoding="utf-8") == expected, (
        "rules/prometheus/soak.rules.yaml is stale: run "
        "`soak rules prometheus -o rules/prometheus/soak.rules.yaml`"
    )


def test_the_committed_prometheus_rule_manifest_is_what_the_generator_makes_now() -> None:
    expected = cli.generate_text(None, output_format="kubernetes", namespace="soak")
    assert COMMITTED_PROMETHEUS_RULE.read_text(encoding="utf-8") == expected, (
        "deploy/kubernetes/prometheusrule.yaml is stale: run `soak rules prometheus --format "
        "kubernetes --namespace soak -o deploy/kubernetes/prometheusrule.yaml`"
    )
    manifest = yaml.safe_load(expected)
    assert manifest["kind"] == "PrometheusRule"
    assert (
        manifest["spec"]["groups"]
        == yaml.safe_load(render_rule_file(generate(load_rules())))["groups"]
    )


@needs_promtool
def test_promtool_accepts_the_committed_rule_file() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(COMMITTED_RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


SHIPPED_SPECS = [
    REPO / "rules" / "soakwatch" / "rules" / "soak.yaml",
    *sorted((REPO / "run" / "soakwatch" / "run" / "demo").glob("*rules*.yaml")),
]


@needs_promtool
@pytest.mark.parametrize("spec_path", SHIPPED_SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_rules_spec_the_project_ships_generates_rules_promtool_accepts(
    spec_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "generated.rules.yaml"
    out.write_text(render_rule_file(generate(load_rules(spec_path))), encoding="utf-8")
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "check", "rules", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cli_writes_the_rule_file_and_check_tells_fresh_from_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "soak.rules.yaml"
    assert cli.main(["prometheus", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == COMMITTED_RULES.read_text(encoding="utf-8")
    assert cli.main(["prometheus", "--output", str(out), "--check"]) == 0
    out.write_text(out.read_text(encoding="utf-8") + "# edited by hand\n", encoding="utf-8")
    assert cli.main(["prometheus", "--output", str(out), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err


def test_the_cli_prints_to_stdout_with_the_given_grafana_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        cli.main(
            [
                "prometheus",
                "--rules",
                str(spec(tmp_path, SLOPE_RULE)),
                "--grafana-url",
                "https://grafana.example",
            ]
        )
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    (alert,) = [r for r in printed["groups"][0]["rules"] if r.get("alert") == "SoakMemoryGrowth"]
    assert alert["annotations"]["dashboard"].startswith("https://grafana.example/d/")


def test_the_cli_names_the_file_and_key_of_a_bad_spec_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = spec(tmp_path, SLOPE_RULE.replace("threshold: 2", "threshold: two"))
    assert cli.main(["prometheus", "--rules", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "memory_growth.threshold" in err


def test_the_cli_without_a_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "soak rules prometheus" in capsys.readouterr().err


REQUIRED_SLOPE_RULE = SLOPE_RULE + "  required: true\n"


def test_a_required_rule_per_service_latches_who_it_watches_and_alerts_when_they_vanish(
    tmp_path: Path,
) -> None:
    groups = generate(load_rules(spec(tmp_path, REQUIRED_SLOPE_RULE)))
    assert [g.name for g in groups] == ["soak.memory_growth", "soak.exporter"]
    memory, exporter = groups
    assert memory.records[-1] == RecordingRule(
        "soak:memory_growth:watched",
        "group by (service, job, instance) (soak_process_resident_memory_bytes)\n"
        "or (soak:memory_growth:watched and on () soak_run_info == 1)",
    )
    absent = memory.alerts[-1]
    assert absent.alert == "SoakMemoryGrowthAbsent"
    during_run = ") * on () group_left (run_id) topk(1, soak_run_info == 1)"
    assert absent.expr == (
        "(\nsoak:memory_growth:watched unless on (service) soak_process_resident_memory_bytes\n"
        + during_run
    )  # only while a run is in progress: no "or … unless" branch
    assert absent.for_seconds == 120
    (down,) = exporter.alerts
    assert down.alert == "SoakExporterDown"
    assert down.expr == (
        "(\ngroup by (job, instance, service) (soak:memory_growth:watched)\n"
        "unless on (job, instance) up == 1\n" + during_run
    )
    assert down.labels["severity"] == "critical"


def test_a_rule_that_is_not_required_gets_no_absence_alerts(tmp_path: Path) -> None:
    (group,) = generate(load_rules(spec(tmp_path, SLOPE_RULE)))
    assert not [a for a in group.alerts if a.alert.endswith("Absent")]


def test_the_header_names_the_rules_file_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = spec(tmp_path, SLOPE_RULE)
    out = tmp_path / "out.yaml"
    assert cli.main(["prometheus", "--rules", str(mine), "-o", str(out)]) == 0
    first = out.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# Generated by `soak rules prometheus` from {mine}. Do not edit:"
    assert "rules/soakwatch/rules/soak.yaml" not in out.read_text(encoding="utf-8")
    assert cli.main(["prometheus", "--format", "kubernetes", "--rules", str(mine)]) == 0
    assert capsys.readouterr().out.startswith(
        f"# Generated by `soak rules prometheus` from {mine}."
    )
    # Without --rules: the packaged spec, by its place in the repository.
    assert COMMITTED_RULES.read_text(encoding="utf-8").startswith(
        "# Generated by `soak rules prometheus` from rules/soakwatch/rules/soak.yaml."
    )


def test_output_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "deeper" / "x.yaml"
    assert cli.main(["prometheus", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == COMMITTED_RULES.read_text(encoding="utf-8")


def test_output_below_a_file_is_one_usage_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main(["prometheus", "-o", str(blocker / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("soak rules: cannot write ") and "is not a folder" in err
    assert "Traceback" not in err


def test_the_generated_command_line_tool_exits_2_on_an_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "soakwatch.commands",
            "rules",
            "prometheus",
            "-o",
            str(blocker / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "is not a folder" in done.stderr
