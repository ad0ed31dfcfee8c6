"""soak-analyze end to end on recorded run directories: verdicts, exit codes, formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

from soakwatch.analyzer.cli import main, parse_time
from soakwatch.errors import UsageError


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def by_rule(report: dict) -> dict[tuple[str, str], dict]:
    return {
        (r["rule"], ",".join(f"{k}={v}" for k, v in r["subject"].items())): r
        for r in report["results"]
    }


def test_a_leaking_service_fails_with_exit_code_1_and_the_flat_one_passes(
    capsys: pytest.CaptureFixture[str], leaky_run: Path
) -> None:
    code, out, _ = run(capsys, "--run-dir", str(leaky_run), "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert report["schema"] == "soakwatch.report/v1"
    assert report["verdict"] == "fail" and report["exit_code"] == 1
    results = by_rule(report)
    api = results[("memory_growth", "service=api")]
    assert api["status"] == "fail" and api["unit"] == "MB/h"
    assert api["details"]["lower"] <= 10.0 <= api["details"]["upper"]
    assert results[("memory_growth", "service=worker")]["status"] == "pass"
    assert results[("latency_degradation", "scenario=browse")]["status"] == "fail"
    assert results[("error_ratio", "scenario=browse")]["figure"] == pytest.approx(0.2)


def test_a_rule_whose_metric_a_service_lacks_is_not_applicable_and_does_not_fail(
    capsys: pytest.CaptureFixture[str], healthy_run: Path
) -> None:
    code, out, _ = run(capsys, "--run-dir", str(healthy_run), "--format", "json")
    report = json.loads(out)
    results = by_rule(report)
    assert results[("gc_efficiency", "service=worker")]["status"] == "not_applicable"
    assert results[("gc_efficiency", "service=api")]["status"] == "pass"
    assert report["verdict"] == "pass" and code == 0


def test_only_and_selector_restrict_the_rules_and_the_series(
    capsys: pytest.CaptureFixture[str], leaky_run: Path
) -> None:
    code, out, _ = run(
        capsys,
        "--run-dir",
        str(leaky_run),
        "--only",
        "memory_growth",
        "--selector",
        '{service="worker"}',
        "--format",
        "json",
    )
    report = json.loads(out)
    assert [(r["rule"], r["subject"]) for r in report["results"]] == [
        ("memory_growth", {"service": "worker"})
    ]
    assert code == 0


def test_a_short_range_is_inconclusive_with_exit_code_3_and_says_why(
    capsys: pytest.CaptureFixture[str], healthy_run: Path
) -> None:
    code, out, _ = run(
        capsys,
        "--run-dir",
        str(healthy_run),
        "--range",
        "40m",
        "--only",
        "memory_growth",
    )
    assert code == 3
    assert "not enough data" in out and "needs 8 over 1h" in out


def test_a_restart_splits_the_memory_series_and_is_a_finding_of_its_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, runs: ModuleType
) -> None:
    runs.write_run(tmp_path, hours=6, restart_at_hours=3.0, leak_mb_per_hour={"api": 6.0})
    code, out, _ = run(capsys, "--run-dir", str(tmp_path), "--format", "json")
    results = by_rule(json.loads(out))
    memory = results[("memory_growth", "service=api")]
    assert memory["status"] == "fail" and memory["details"]["segments"] == 2
    assert "restart" in memory["reason"]
    assert results[("restarts", "service=api")]["status"] == "fail"
    assert results[("restarts", "service=api")]["figure"] == 1
    assert results[("memory_growth", "service=worker")]["status"] == "pass"
    assert code == 1


def test_junit_has_one_testcase_per_rule_and_subject(
    capsys: pytest.CaptureFixture[str], leaky_run: Path
) -> None:
    code, out, _ = run(capsys, "--run-dir", str(leaky_run), "--format", "junit")
    suite = ET.fromstring(out).find("testsuite")
    assert suite is not None and code == 1
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "0")) == len(cases) >= 10
    failed = [c for c in cases if c.find("failure") is not None]
    assert {c.get("classname") for c in failed} == {
        "soakwatch.memory_growth",
        "soakwatch.latency_degradation",
    }
    assert any(c.find("skipped") is not None for c in cases)


def test_markdown_and_html_reports_are_written_to_the_output_file(
    capsys: pytest.CaptureFixture[str], leaky_run: Path, tmp_path: Path
) -> None:
    html_path = tmp_path / "report.html"
    code, _, err = run(
        capsys,
        "--run-dir",
        str(leaky_run),
        "--format",
        "html",
        "--output",
        str(html_path),
        "--only",
        "memory_growth,latency_degradation",
    )
    assert code == 1 and "report written" in err
    text = html_path.read_text()
    assert text.count('src="data:image/png;base64,') == 3  # two services + one scenario
    assert "<script" not in text and "http://" not in text and "https://" not in text
    code, out, _ = run(capsys, "--run-dir", str(leaky_run), "--format", "markdown")
    assert out.startswith("# Soak verdict: FAIL")
    assert "| memory_growth | service=api | **FAIL** |" in out


def test_compare_shows_how_each_figure_moved_since_earlier_runs(
    capsys: pytest.CaptureFixture[str], leaky_run: Path, healthy_run: Path, tmp_path: Path
) -> None:
    baseline = tmp_path / "previous.json"
    run(capsys, "--run-dir", str(healthy_run), "--format", "json", "--output", str(baseline))
    code, out, _ = run(
        capsys,
        "--run-dir",
        str(leaky_run),
        "--format",
        "json",
        "--compare",
        str(baseline),
    )
    rows = {(r["rule"], r["subject"].get("service")): r for r in json.loads(out)["comparison"]}
    api = rows[("memory_growth", "api")]
    assert api["previous"][0] < 1.0 and api["figure"] == pytest.approx(10.0, rel=0.05)
    assert api["change_vs_latest"] > 5
    code, out, _ = run(capsys, "--run-dir", str(leaky_run), "--compare", str(baseline))
    assert code == 1 and "Compared with earlier runs:" in out


def test_list_rules_names_every_rule_of_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--list-rules")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines() if not line.startswith(" ")]
    assert names == [
        "memory_growth",
        "gc_efficiency",
        "pool_variation",
        "latency_degradation",
        "error_ratio",
        "restarts",
        "probe_failures",
        "fd_growth",
        "handle_growth",
        "thread_growth",
        "cpu_per_request",
        "throughput",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give --prometheus URL or --run-dir DIR"),
        (["--run-dir", "/nonexistent/run"], "run directory not found"),
        (["--prometheus", "http://127.0.0.1:9"], "--range is required"),
        (["--prometheus", "not a url", "--range", "1h"], "--prometheus: not a valid URL"),
        (["--run-dir", ".", "--only", "memory"], "unknown rule(s) memory"),
        (["--run-dir", ".", "--end", "yesterday"], "--end: not a Unix timestamp"),
        (["--run-dir", ".", "--range", "-1h"], "--range"),
        (["--run-dir", ".", "--format", "pdf"], "invalid choice: 'pdf'"),
        (["--run-dir", ".", "--rules", "/nonexistent.yaml"], "cannot read config file"),
    ],
)
def test_usage_and_config_errors_exit_with_2_and_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert out == ""


def test_an_unreachable_prometheus_is_a_source_error_never_a_pass(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import servers

    # every attempt is retried as in production, only without the half-second waits
    monkeypatch.setenv("SOAK_PROMETHEUS_BACKOFF", "10ms")
    port = servers.free_port()  # nothing listens there
    code, out, err = run(
        capsys,
        "--prometheus",
        f"http://127.0.0.1:{port}",
        "--range",
        "1h",
    )
    assert code == 2 and out == ""
    assert f"cannot read from http://127.0.0.1:{port}" in err
    assert "ConnectionError after 4 attempts" in err


def test_a_bad_backoff_in_the_environment_is_a_config_error_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAK_PROMETHEUS_BACKOFF", "soon")
    code, out, err = run(capsys, "--prometheus", "http://127.0.0.1:9", "--range", "1h")
    assert code == 2 and out == ""
    assert "environment: SOAK_PROMETHEUS_BACKOFF: not a duration: 'soon'" in err


def test_end_takes_unix_seconds_or_rfc3339() -> None:
    assert parse_time("1764000000") == 1764000000.0
    assert parse_time("2025-11-24T16:00:00Z") == 1764000000.0
    assert parse_time("2025-11-24T17:00:00+01:00") == 1764000000.0
    with pytest.raises(UsageError):
        parse_time("soon")


def test_watch_stops_at_the_first_look_that_fails(
    capsys: pytest.CaptureFixture[str], leaky_run: Path
) -> None:
    code, out, _ = run(
        capsys, "--run-dir", str(leaky_run), "--watch", "1h", "--only", "memory_growth"
    )
    assert code == 1 and "FAIL" in out  # no sleep: the first look was decisive


def test_watch_never_passes_early_and_ends_with_the_last_look(
    capsys: pytest.CaptureFixture[str], healthy_run: Path
) -> None:
    code, _out, err = run(
        capsys,
        "--run-dir",
        str(healthy_run),
        "--watch",
        "0.2s",
        "--watch-for",
        "0.5s",
        "--only",
        "memory_growth",
    )
    assert code == 0 and "next look in" in err


def test_sliding_window_results_appear_next_to_the_whole_run(
    capsys: pytest.CaptureFixture[str], leaky_run: Path
) -> None:
    code, out, _ = run(
        capsys,
        "--run-dir",
        str(leaky_run),
        "--only",
        "memory_growth",
        "--sliding-window",
        "3h",
        "--format",
        "json",
    )
    rules = {(r["rule"], r["subject"]["service"]): r["status"] for r in json.loads(out)["results"]}
    assert rules[("memory_growth@3h", "api")] == "fail"
    assert rules[("memory_growth@3h", "worker")] == "pass"
    assert code == 1


def test_the_json_report_keeps_the_documented_schema(
    capsys: pytest.CaptureFixture[str], healthy_run: Path
) -> None:
    _code, out, _ = run(capsys, "--run-dir", str(healthy_run), "--format", "json")
    report = json.loads(out)
    assert list(report) == [
        "schema",
        "verdict",
        "exit_code",
        "range",
        "source",
        "selector",
        "rules",
        "generated_at",
        "counts",
        "results",
    ]
    assert set(report["counts"]) == {"pass", "fail", "inconclusive", "not_applicable"}
    for result in report["results"]:
        assert list(result) == [
            "rule",
            "kind",
            "subject",
            "status",
            "figure",
            "unit",
            "threshold",
            "comparison",
            "reason",
            "details",
        ]
    memory = next(r for r in report["results"] if r["rule"] == "memory_growth")
    assert {"slope", "lower", "upper", "confidence", "points", "segments"} <= set(memory["details"])


def test_memory_limit_adds_the_projected_time_to_reach_it(
    capsys: pytest.CaptureFixture[str], leaky_run: Path
) -> None:
    code, out, _ = run(
        capsys,
        "--run-dir",
        str(leaky_run),
        "--only",
        "memory_growth",
        "--selector",
        '{service="api"}',
        "--memory-limit",
        "250MB",
        "--format",
        "json",
    )
    (result,) = json.loads(out)["results"]
    # about 210 MB at the end, growing 10 MB/h: 250 MB in about 4 h
    assert 3 * 3600 < result["details"]["projected_seconds_to_limit"] < 5 * 3600
    assert "reaches the limit 2.5e+08 in about" in result["reason"]
    assert code == 1
    code, _, err = run(capsys, "--run-dir", str(leaky_run), "--memory-limit", "lots")
    assert code == 2 and "--memory-limit: not a size" in err
