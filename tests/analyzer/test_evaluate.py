"""Rule evaluation on series built in the test: limits, sliding windows, baselines, subjects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from soakwatch.analyzer.baseline import baseline_results
from soakwatch.analyzer.evaluate import evaluate_rule, evaluate_sliding
from soakwatch.analyzer.series import Series
from soakwatch.rules import load_rules
from soakwatch.rules.model import BaselineRule

MB = 1e6
T0 = 1.7e9


def memory(
    service: str,
    hours: float,
    rate_mb_per_hour: float,
    *,
    leak_from: float = 0.0,
    leak_until: float = 1e9,
) -> Series:
    t = T0 + np.arange(0.0, hours * 3600, 15.0)
    h = (t - T0) / 3600
    y = 300 * MB + rate_mb_per_hour * MB * (np.clip(h, leak_from, leak_until) - leak_from)
    y += np.random.default_rng(1).normal(0, 0.3 * MB, t.size)
    return Series("soak_process_resident_memory_bytes", {"service": service}, t, y)


def test_a_failing_leak_projects_when_it_reaches_the_configured_limit() -> None:
    rule = dataclasses.replace(load_rules().rules["memory_growth"], limit=1e9)
    series = memory("api", 12, 50.0)  # 300 MB -> 900 MB, 50 MB/h: 1 GB in about 2 h more
    (result,) = evaluate_rule(rule, {"value": [series]}, series.t[0], series.t[-1])
    assert result.status == "fail"
    hours_left = result.details["projected_seconds_to_limit"] / 3600
    assert 1.6 < hours_left < 2.4
    assert "reaches the limit 1e+09 in about" in result.reason


def test_a_leak_confined_to_one_window_fails_the_sliding_judgement() -> None:
    rule = load_rules().rules["memory_growth"]
    # flat, then 6 MB/h from hour 10 to 13, then flat: over the whole day the slope is small
    series = memory("api", 24, 6.0, leak_from=10.0, leak_until=13.0)
    data = {"value": [series]}
    (whole,) = evaluate_rule(rule, data, series.t[0], series.t[-1])
    assert whole.status != "fail"
    (sliding,) = evaluate_sliding(rule, data, series.t[0], series.t[-1], 4 * 3600)
    assert sliding.rule == "memory_growth@4h"
    assert sliding.status == "fail"
    statuses = [w["status"] for w in sliding.details["windows"]]
    assert statuses[0] == "pass" and statuses[-1] == "pass" and "fail" in statuses


def test_two_instances_of_one_service_are_judged_separately() -> None:
    rule = load_rules().rules["memory_growth"]
    a = memory("api", 6, 0.0)
    b = memory("api", 6, 20.0)
    a = Series(a.name, {"service": "api", "instance": "a"}, a.t, a.v)
    b = Series(b.name, {"service": "api", "instance": "b"}, b.t, b.v)
    results = evaluate_rule(rule, {"value": [a, b]}, a.t[0], a.t[-1])
    assert {r.subject_text: r.status for r in results} == {
        "service=api,instance=a": "pass",
        "service=api,instance=b": "fail",
    }


def test_a_required_rule_without_any_series_is_inconclusive_not_a_pass() -> None:
    rule = load_rules().rules["memory_growth"]
    (result,) = evaluate_rule(rule, {"value": []}, T0, T0 + 3600)
    assert result.status == "inconclusive"
    assert "required metric soak_process_resident_memory_bytes has no series" in result.reason
    optional = load_rules().rules["gc_efficiency"]
    (result,) = evaluate_rule(optional, {"numerator": [], "denominator": []}, T0, T0 + 3600)
    assert result.status == "not_applicable"


def test_a_disabled_service_override_skips_only_that_service() -> None:
    rule = load_rules().rules["memory_growth"]
    override = dataclasses.replace(rule.services.get("x") or _override(), enabled=False)
    rule = dataclasses.replace(rule, services={"batch": override})
    results = evaluate_rule(
        rule, {"value": [memory("batch", 6, 20.0), memory("api", 6, 0.0)]}, T0, T0 + 6 * 3600
    )
    assert {r.subject_text: r.status for r in results} == {
        "service=api": "pass",
        "service=batch": "not_applicable",
    }


def _override():  # type: ignore[no-untyped-def]
    from soakwatch.rules.model import RuleOverride

    return RuleOverride()


def baseline_report(p95: float, status: str = "pass") -> dict:
    return {
        "results": [
            {
                "rule": "latency_degradation",
                "kind": "quantile_change",
                "subject": {"scenario": "browse"},
                "status": status,
                "figure": 1.0,
                "details": {"last": p95},
            }
        ]
    }


def test_a_baseline_rule_fails_when_p95_is_over_ten_percent_above_the_passing_median() -> None:
    rule = dataclasses.replace(
        load_rules().rules["latency_degradation"], baseline=BaselineRule(0.10, 3)
    )
    from soakwatch.analyzer.report import Result

    now = Result(
        "latency_degradation",
        "quantile_change",
        {"scenario": "browse"},
        "pass",
        2.0,
        "percent",
        25,
        "<",
        "",
        {"last": 0.240},
    )
    history = [
        baseline_report(0.150),
        baseline_report(0.200),
        baseline_report(0.210),
        baseline_report(0.100, status="fail"),
        baseline_report(0.205),
    ]
    (result,) = baseline_results(rule, [now], history)
    # the last 3 passing runs: 0.200, 0.210, 0.205 -> median 0.205, allowed 0.2255
    assert result.rule == "latency_degradation~baseline"
    assert result.status == "fail"
    assert result.details["history"] == [0.200, 0.210, 0.205]
    assert result.details["allowed"] == pytest.approx(0.2255)
    faster = dataclasses.replace(now, details={"last": 0.220})
    assert baseline_results(rule, [faster], history)[0].status == "pass"
    assert baseline_results(rule, [now], [])[0].status == "not_applicable"


def latency_histogram(before: dict[str, float], after: dict[str, float]) -> list[Series]:
    """Two hours of ``soak_load_request_duration_seconds`` buckets for scenario "browse", sampled
    every 15 s; each sample adds the cumulative counts ``before`` (first hour) or ``after``."""
    t = T0 + np.arange(0.0, 2 * 3600 + 1, 15.0)
    late = t - T0 >= 3600
    return [
        Series(
            "soak_load_request_duration_seconds_bucket",
            {"scenario": "browse", "le": le},
            t,
            np.cumsum(np.where(late, after[le], before[le])),
        )
        for le in before
    ]


# p95 with every request under 6 ms (5.7 ms), then every request in (6 ms, 7.5 ms] (7.425 ms)
FAST_FIRST = {"0.006": 10.0, "0.0075": 10.0, "0.04": 10.0, "0.06": 10.0, "+Inf": 10.0}
FAST_LATER = {"0.006": 0.0, "0.0075": 10.0, "0.04": 10.0, "0.06": 10.0, "+Inf": 10.0}
# p95 with every request in (7.5 ms, 40 ms] (38.4 ms), then in (40 ms, 60 ms] (59 ms)
SLOW_LATER = {"0.006": 0.0, "0.0075": 0.0, "0.04": 0.0, "0.06": 10.0, "+Inf": 10.0}
SLOW_FIRST = {"0.006": 0.0, "0.0075": 0.0, "0.04": 10.0, "0.06": 10.0, "+Inf": 10.0}


def test_a_thirty_percent_rise_of_under_two_milliseconds_passes_with_the_floor_only() -> None:
    buckets = latency_histogram(FAST_FIRST, FAST_LATER)
    end = buckets[0].t[-1]
    rule = dataclasses.replace(load_rules().rules["latency_degradation"], min_increase_seconds=0)
    (without,) = evaluate_rule(rule, {"histogram": buckets}, T0, end)
    assert without.status == "fail"
    assert without.figure == pytest.approx(30.26, abs=0.01)
    floored = dataclasses.replace(rule, min_increase_seconds=0.005)
    (result,) = evaluate_rule(floored, {"histogram": buckets}, T0, end)
    assert result.status == "pass"
    assert result.figure == pytest.approx(30.26, abs=0.01)
    assert result.details["increase"] == pytest.approx(0.001725)
    assert result.reason.startswith("p95 change 30.3 percent but only +1.72 ms (< 5 ms)")


def test_a_fifty_percent_rise_of_twenty_milliseconds_fails_despite_the_floor() -> None:
    buckets = latency_histogram(SLOW_FIRST, SLOW_LATER)
    rule = dataclasses.replace(
        load_rules().rules["latency_degradation"], min_increase_seconds=0.005
    )
    (result,) = evaluate_rule(rule, {"histogram": buckets}, T0, buckets[0].t[-1])
    assert result.status == "fail"
    assert result.figure == pytest.approx(53.75, abs=0.01)
    assert result.details["increase"] == pytest.approx(0.020625)
    assert result.reason.startswith("p95 change 53.7 percent >= 25 percent")


def requests(samples: int, interval: float = 15.0) -> dict[str, list[Series]]:
    """error_ratio's roles for a run of ``samples`` scrapes: no errors, 10 requests/s."""
    t = T0 + np.arange(samples) * interval
    ok = Series("soak_load_requests_total", {"scenario": "s", "outcome": "ok"}, t, 10.0 * (t - T0))
    errors = Series(
        "soak_load_requests_total", {"scenario": "s", "outcome": "error"}, t, np.zeros(t.size)
    )
    return {"numerator": [errors], "denominator": [ok, errors]}


def test_a_ten_minute_run_meets_a_ten_minute_minimum_though_its_samples_span_one_less() -> None:
    rule = load_rules().rules["error_ratio"]  # min_duration 10m, no warm-up
    data = requests(40)  # 40 scrapes at 15 s: first to last 9m45s
    (result,) = evaluate_rule(rule, data, T0, T0 + 600.0)
    assert rule.min_duration_seconds == 600.0
    assert result.details["analysed_seconds"] == 585.0
    assert result.status == "pass", result.reason


def test_a_span_short_of_the_minimum_by_more_than_one_sample_interval_stays_inconclusive() -> None:
    rule = load_rules().rules["error_ratio"]
    data = requests(39)  # first to last 9m30s: two intervals short
    (result,) = evaluate_rule(rule, data, T0, T0 + 600.0)
    assert result.status == "inconclusive"
    assert "not enough data: 39 samples over 9m30s" in result.reason
    assert "15s short counts" in result.reason
