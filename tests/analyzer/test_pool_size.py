"""The pool rule judges a pool's size (the sum of its open states per exporter), not each state:
written as a run recording and read back through the analyzer, selector included."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from soakwatch.analyzer.analysis import analyze
from soakwatch.analyzer.evaluate import evaluate_rule
from soakwatch.analyzer.report import Result
from soakwatch.analyzer.series import Series
from soakwatch.analyzer.sources import RunDirSource
from soakwatch.recording import SampleWriter
from soakwatch.rules import load_rules

T0 = 1.7e9
HOURS = 2.0
INTERVAL = 30.0
EXPORTER = {"service": "api", "pool": "db", "instance": "api:9000", "job": "soak"}

# (state, minute) -> value, or None when the exporter publishes no sample for that state
States = Callable[[float], dict[str, float | None]]


def record(run_dir: Path, states: States, labels: dict[str, str] = EXPORTER) -> None:
    with SampleWriter(run_dir) as writer:
        for ts in T0 + np.arange(0.0, HOURS * 3600, INTERVAL):
            for state, value in states((ts - T0) / 60).items():
                if value is not None:
                    writer.write_sample(
                        "soak_pool_connections", {**labels, "state": state}, value, ts
                    )


def judge(run_dir: Path) -> list[Result]:
    source = RunDirSource(run_dir)
    report = analyze(source, load_rules(), T0, T0 + HOURS * 3600, only=["pool_variation"])
    return report.results


def test_a_healthy_pool_with_sporadic_close_wait_connections_passes(tmp_path: Path) -> None:
    def states(minute: float) -> dict[str, float | None]:
        # close_wait is published only while non-zero: 1 or 2 sockets every 7th minute
        flicker = 1.0 + (minute % 2) if int(minute) % 7 == 0 else None
        return {"established": 10.0, "close_wait": flicker}

    record(tmp_path, states)
    (result,) = judge(tmp_path)
    assert result.status == "pass", result.reason
    assert result.subject == {"service": "api", "pool": "db"}
    assert result.figure == 0.0


def test_in_use_and_idle_that_trade_places_under_load_with_a_constant_total_pass(
    tmp_path: Path,
) -> None:
    def states(minute: float) -> dict[str, float | None]:
        busy = float(round(9 * abs(np.sin(minute / 5))))  # 0..9 of 10 connections in use
        return {"in_use": busy, "idle": 10.0 - busy}

    record(tmp_path, states)
    (result,) = judge(tmp_path)
    assert result.status == "pass", result.reason
    assert result.figure == 0.0
    assert result.details["summed"] == [
        "instance=api:9000,job=soak,pool=db,service=api,state=idle",
        "instance=api:9000,job=soak,pool=db,service=api,state=in_use",
    ]
    assert "sum over state" in result.reason
    # the in_use series alone varies far beyond the 5 % threshold
    assert np.std([states(m)["in_use"] or 0 for m in range(120)]) > 1


def test_a_pool_whose_established_count_keeps_growing_fails(tmp_path: Path) -> None:
    def states(minute: float) -> dict[str, float | None]:
        return {"established": 10.0 + minute // 5, "close_wait": None}

    record(tmp_path, states)
    (result,) = judge(tmp_path)
    assert result.status == "fail", result.reason
    assert result.figure is not None and result.figure > 5


def test_two_exporters_of_one_pool_are_summed_apart_not_together(tmp_path: Path) -> None:
    steady = {**EXPORTER, "instance": "a:9000"}
    growing = {**EXPORTER, "instance": "b:9000"}
    record(tmp_path / "a", lambda m: {"in_use": 3.0, "idle": 7.0}, steady)
    record(tmp_path / "b", lambda m: {"in_use": 3.0, "idle": 7.0 + m // 5}, growing)
    rule = load_rules().rules["pool_variation"]
    selector = rule.metrics["value"]
    end = T0 + HOURS * 3600
    members = [
        s for part in ("a", "b") for s in RunDirSource(tmp_path / part).fetch(selector, T0, end)
    ]
    results = evaluate_rule(rule, {"value": members}, T0, end)
    assert {r.subject_text: r.status for r in results} == {
        "service=api,pool=db,instance=a:9000": "pass",
        "service=api,pool=db,instance=b:9000": "fail",
    }


def test_states_scraped_at_different_times_are_aligned_to_the_nearest_scrape() -> None:
    rule = load_rules().rules["pool_variation"]
    t = T0 + np.arange(0.0, HOURS * 3600, INTERVAL)
    busy = np.round(9 * np.abs(np.sin(np.arange(t.size) / 10)))
    in_use = Series("soak_pool_connections", {**EXPORTER, "state": "in_use"}, t, busy)
    idle = Series("soak_pool_connections", {**EXPORTER, "state": "idle"}, t + 0.4, 10.0 - busy)
    (result,) = evaluate_rule(rule, {"value": [in_use, idle]}, T0, t[-1])
    assert result.status == "pass", result.reason
    assert result.figure == 0.0
    assert result.details["aligned_to_nearest"] is True
    assert "not sampled at the same times" in result.reason
