"""Thresholds: the grammar, their results in the summary, exit 99 when one breaks (at the end,
or during the run with abort_on_fail), and the implicit error_ratio<1 of every run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from soakwatch.exitcodes import EXIT_ERROR, EXIT_PASS, EXIT_THRESHOLD
from soakwatch.load.cli import main
from soakwatch.load.thresholds import Threshold, evaluate, parse_threshold


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p95<200ms", Threshold("p95<200ms", "p95", "<", 0.2)),
        (" p99 <= 1.5s ", Threshold("p99 <= 1.5s", "p99", "<=", 1.5)),
        ("max<750us", Threshold("max<750us", "max", "<", 0.00075)),
        (
            "http_ok:error_ratio<0.01",
            Threshold("http_ok:error_ratio<0.01", "error_ratio", "<", 0.01, scenario="http_ok"),
        ),
        ("error_ratio<=2%", Threshold("error_ratio<=2%", "error_ratio", "<=", 0.02)),
        ("api:rate>=600/min", Threshold("api:rate>=600/min", "rate", ">=", 10.0, scenario="api")),
        ("rate>90", Threshold("rate>90", "rate", ">", 90.0)),
    ],
)
def test_the_threshold_grammar(text: str, expected: Threshold) -> None:
    assert parse_threshold(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("p95<200", "'p95<200': a latency needs a number and a unit (us, ms or s), got '200'"),
        (
            "p97<200ms",
            "'p97<200ms': unknown statistic 'p97' (one of p50, p90, p95, p99, max, "
            "error_ratio, rate)",
        ),
        ("p95=200ms", "'p95=200ms': unknown operator '=' (use <, <=, > or >=)"),
        (
            "p95 200ms",
            "'p95 200ms': no operator (use <, <=, > or >=)",
        ),
        ("p95<", "'p95<': no value after '<'"),
        ("error_ratio<2", "'error_ratio<2': error_ratio is between 0 and 1 (0% and 100%)"),
        (":p95<1s", "':p95<1s': the scenario before ':' is empty"),
        ("rate>fast", "'rate>fast': rate is operations per second, e.g. 90 or 90/s or 600/min"),
        (
            "",
            "empty threshold: expected [SCENARIO:]STAT OP VALUE, e.g. 'p95<200ms' or "
            "'http:error_ratio<0.01'",
        ),
    ],
)
def test_a_threshold_that_does_not_parse_says_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_threshold(text)
    assert str(caught.value) == reason


def _summary(**parts: dict[str, Any]) -> dict[str, Any]:
    operations = sum(p["completed"] for p in parts.values())
    errors = sum(p["errors"] for p in parts.values())
    return {
        "scenarios": parts,
        "totals": {
            "operations": operations,
            "error_ratio": errors / operations if operations else 0,
        },
    }


def _part(p95: float | None, completed: int, errors: int, rate: float) -> dict[str, Any]:
    return {
        "latency_seconds": {"p95": p95},
        "completed": completed,
        "errors": errors,
        "error_ratio": errors / completed if completed else 0.0,
        "achieved_rate_per_second": rate,
        "skipped": None,
    }


def test_a_threshold_without_a_scenario_is_judged_for_each_and_the_implicit_one_for_the_run() -> (
    None
):
    summary = _summary(fast=_part(0.05, 100, 0, 10.0), slow=_part(0.5, 100, 100, 10.0))
    results = evaluate([parse_threshold("p95<200ms"), parse_threshold("fast:rate>=9.5")], summary)
    assert [(r["threshold"], r["scenario"], r["value"], r["status"]) for r in results] == [
        ("p95<200ms", "fast", 0.05, "ok"),
        ("p95<200ms", "slow", 0.5, "breached"),
        ("fast:rate>=9.5", "fast", 10.0, "ok"),
        ("error_ratio<1", None, 0.5, "ok"),
    ]
    assert results[-1]["implicit"] is True


def test_no_latency_recorded_is_no_data_not_a_breach_and_every_failure_breaks_the_run() -> None:
    summary = _summary(refused=_part(None, 10, 10, 1.0))
    results = evaluate([parse_threshold("p99<1s")], summary)
    assert [r["status"] for r in results] == ["no_data", "breached"]


# -- soak load, end to end (the test service of tests/load/app.py) -------------------------------
def test_a_breached_threshold_exits_99_and_the_summary_lists_each_with_its_value(
    load_app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "summary.json"
    argv = [
        "--http", f"{load_app.url}/missing", "--rate", "20/s", "--duration", "1s", "--quiet",
        "--summary", str(out), "--threshold", "p99<5s", "--threshold", "http:error_ratio<1%",
    ]  # fmt: skip
    assert main(argv) == EXIT_THRESHOLD
    err = capsys.readouterr().err
    assert "soak load: threshold http: p99<5s: p99=" in err and " ok" in err
    assert "soak load: threshold http: http:error_ratio<1%: error_ratio=1 breached" in err
    assert "every operation of the run failed (run: error_ratio<1: error_ratio=1 breached)" in err
    results = json.loads(out.read_text())["thresholds"]
    assert [(r["threshold"], r["scenario"], r["status"]) for r in results] == [
        ("p99<5s", "http", "ok"),
        ("http:error_ratio<1%", "http", "breached"),
        ("error_ratio<1", None, "breached"),
    ]
    assert results[1]["value"] == 1.0 and results[1]["limit"] == 0.01
    assert 0 < results[0]["value"] < 5


def test_thresholds_that_hold_exit_0(load_app: Any, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    argv = [
        "--http", f"{load_app.url}/ok", "--rate", "20/s", "--duration", "1s", "--quiet",
        "--summary", str(out), "--threshold", "p95<2s", "--threshold", "error_ratio<=0",
    ]  # fmt: skip
    assert main(argv) == EXIT_PASS
    statuses = [r["status"] for r in json.loads(out.read_text())["thresholds"]]
    assert statuses == ["ok", "ok", "ok"]


def test_a_run_whose_every_operation_failed_exits_99_without_any_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import servers

    refused = f"http://127.0.0.1:{servers.free_port()}/"  # nothing listens there
    argv = ["--http", refused, "--rate", "10/s", "--duration", "1s", "--quiet"]
    assert main(argv) == EXIT_THRESHOLD
    assert "every operation of the run failed" in capsys.readouterr().err


def test_abort_on_fail_stops_the_run_once_its_grace_is_over(
    load_app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "load.yaml"
    config.write_text(
        f"""duration: 60s
summary: {tmp_path / "summary.json"}
thresholds:
  - threshold: "bad:error_ratio<0.5"
    abort_on_fail: true
    abort_grace: 1s
scenarios:
  - {{kind: http, name: bad, url: "{load_app.url}/error", rate: 20/s}}
"""
    )
    started = time.monotonic()
    assert main(["--config", str(config), "--quiet"]) == EXIT_THRESHOLD
    took = time.monotonic() - started
    assert 1.0 <= took < 10, took  # not before the grace, and long before the 60 s
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "stopped"
    assert summary["stop_reason"].startswith("threshold bad: bad:error_ratio<0.5: error_ratio=1")
    assert "stopped by threshold bad: bad:error_ratio<0.5" in capsys.readouterr().err


def test_a_threshold_naming_an_unknown_scenario_on_the_command_line_is_exit_2(
    load_app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--http", f"{load_app.url}/ok", "--rate", "10/s", "--duration", "1s",
            "--threshold", "api:p95<1s", "--quiet"]  # fmt: skip
    before = load_app.stats()["hits"].get("ok", 0)
    assert main(argv) == EXIT_ERROR
    assert capsys.readouterr().err.strip() == (
        "soak load: command line: thresholds[0]: 'api:p95<1s': no scenario named 'api' "
        "(scenarios: http)"
    )
    assert load_app.stats()["hits"].get("ok", 0) == before  # nothing was sent
