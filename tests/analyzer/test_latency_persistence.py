"""latency_degradation judges a change that lasts: a burst in one window passes, a sustained
+40 % fails, and two scenarios slowed together by one loaded window do not both "degrade".

The series are histogram-bucket counters drawn from a seeded lognormal request latency (the
known answer is the factor applied to it), judged by ``evaluate_rule`` and, once, through a
real Prometheus (blocks made by promtool from the same samples)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from soakwatch.analyzer.evaluate import evaluate_rule
from soakwatch.analyzer.quantiles import WindowedHistogram, median_interval
from soakwatch.analyzer.series import Series
from soakwatch.rules import load_rules

T0 = 1_764_000_000.0
STEP = 15.0
BOUNDS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, math.inf)
RULE = load_rules().rules["latency_degradation"]  # p95, 25 %, 5 ms floor, 10m warm-up, 30m window


def buckets(
    hours: float,
    factor: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int,
    scenario: str = "browse",
    median: float = 0.05,
    rate: float = 10.0,
    bounds: tuple[float, ...] = BOUNDS,
) -> list[Series]:
    """``soak_load_request_duration_seconds_bucket`` of one scenario every 15 s: ``rate``
    requests/s, lognormal latency (``median``, sigma 0.5) times ``factor(elapsed seconds)``."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0.0, hours * 3600 + 1, STEP)
    centre = np.log(median * factor(t - T0))[:, None]
    finite = np.log(np.array(bounds[:-1]))[None, :]
    below = 0.5 * (1 + np.vectorize(math.erf)((finite - centre) / (0.5 * math.sqrt(2))))
    p = np.diff(np.c_[np.zeros(t.size), below, np.ones(t.size)], axis=1)
    per_bucket = np.array(
        [
            rng.multinomial(n, row / row.sum())
            for n, row in zip(rng.poisson(rate * STEP, t.size), p, strict=True)
        ]
    )
    cumulative = np.cumsum(np.cumsum(per_bucket, axis=1), axis=0).astype(np.float64)
    return [
        Series(
            "soak_load_request_duration_seconds_bucket",
            {"scenario": scenario, "le": "+Inf" if math.isinf(le) else f"{le:g}"},
            t,
            cumulative[:, i],
        )
        for i, le in enumerate(bounds)
    ]


def expected_change(
    times: float, median: float = 0.05, bounds: tuple[float, ...] = BOUNDS
) -> float:
    """The known answer in percent: the change of p95 as histogram_quantile reads it from the
    true bucket probabilities (linear inside a bucket, so not exactly ``times - 1``)."""
    from soakwatch.analyzer.quantiles import histogram_quantile

    def p95(scale: float) -> float:
        z = [(math.log(b) - math.log(median * scale)) / 0.5 for b in bounds[:-1]]
        cumulative = [0.5 * (1 + math.erf(x / math.sqrt(2))) for x in z] + [1.0]
        return histogram_quantile(0.95, np.array(bounds), np.array(cumulative))

    return (p95(times) / p95(1.0) - 1) * 100


def judge(series: list[Series], rule: Any = RULE) -> Any:
    end = float(series[0].t[-1])
    (result,) = evaluate_rule(rule, {"histogram": series}, T0, end)
    return result


def between(a: float, b: float, times: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda e: np.where((e >= a) & (e < b), times, 1.0)


def test_a_burst_filling_the_last_window_passes_where_one_window_against_one_failed() -> None:
    # 3 h; 2.5x slower for the last 30 minutes only
    result = judge(buckets(3, between(2.5 * 3600, 4 * 3600, 2.5), seed=1))
    assert result.details["last_window_change"] > 100  # one window against one: a fail
    assert result.status == "pass"
    assert abs(result.figure) < 10
    assert "a burst, not sustained" in result.reason


def test_a_burst_in_the_middle_passes() -> None:
    result = judge(buckets(6, between(3 * 3600, 3.5 * 3600, 3.0), seed=2))
    assert result.status == "pass"
    assert max(y for y in result.details["windows"] if math.isfinite(y)) > 0.2  # it was there


def test_a_sustained_forty_percent_fails_with_its_size_and_interval() -> None:
    # 6 h; +40 % from 3 h to the end
    result = judge(buckets(6, lambda e: np.where(e >= 3 * 3600, 1.4, 1.0), seed=3))
    assert result.status == "fail"
    assert expected_change(1.4) == pytest.approx(33.2, abs=0.1)  # +40 % through the buckets
    assert result.figure == pytest.approx(expected_change(1.4), abs=4)
    assert result.details["lower"] <= result.figure <= result.details["upper"]
    assert result.details["lower"] > 25
    assert result.details["sustained_seconds"] == pytest.approx(3 * 1800)
    assert ", sustained (median 5m p95" in result.reason


def test_a_sustained_forty_percent_over_the_last_hour_of_two_fails() -> None:
    result = judge(buckets(2, lambda e: np.where(e >= 3600, 1.4, 1.0), seed=4))
    assert result.status == "fail"
    assert result.figure == pytest.approx(expected_change(1.4), abs=5)


def test_no_change_passes() -> None:
    result = judge(buckets(4, lambda e: np.ones(e.size), seed=5))
    assert result.status == "pass"
    assert abs(result.figure) < 8


def test_two_backends_slowed_together_by_one_loaded_window_both_pass() -> None:
    # one noisy 30-minute stretch of the host (2.7x and 3.3x), straddling two windows
    loaded = buckets(4, between(2.9 * 3600, 3.4 * 3600, 2.7), seed=6, scenario="orders")
    loaded += buckets(4, between(2.9 * 3600, 3.4 * 3600, 3.3), seed=7, scenario="search")
    results = evaluate_rule(RULE, {"histogram": loaded}, T0, float(loaded[0].t[-1]))
    assert {r.subject["scenario"]: r.status for r in results} == {
        "orders": "pass",
        "search": "pass",
    }


def test_a_change_shorter_than_two_windows_is_inconclusive_not_a_fail() -> None:
    # 1 h 40 m less 15 min: the late stretch is 75 minutes, +40 % over it all
    result = judge(buckets(85 / 60, lambda e: np.where(e >= 40 * 60, 1.4, 1.0), seed=8))
    assert result.status == "inconclusive"
    assert "cannot be told from a burst: needs a range of 1h40m" in result.reason
    assert result.figure == pytest.approx(expected_change(1.4), abs=5)


def test_a_sustained_rise_below_the_floor_passes() -> None:
    # fast requests (median 2 ms, p95 about 4.6 ms): +60 % from 2 h on is only about 2.7 ms
    fine = (0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.02, 0.05, math.inf)
    fast = buckets(
        4, lambda e: np.where(e >= 2 * 3600, 1.6, 1.0), seed=9, median=0.002, bounds=fine
    )
    result = judge(fast)
    assert result.figure > 25
    assert result.status == "pass"
    assert "but only +" in result.reason and "(< 5 ms)" in result.reason
    assert judge(fast, dataclasses.replace(RULE, min_increase_seconds=0.0)).status == "fail"


def test_windowed_histogram_counts_through_resets_like_counter_increase() -> None:
    t = np.arange(0.0, 100.0, 10.0)
    inf = np.array([0, 10, 20, 30, 5, 15, 25, 35, 45, 55], dtype=np.float64)  # reset at 40
    h = WindowedHistogram([("+Inf", t, inf), ("0.1", t, inf / 5)])
    _, total = h.quantile(0.5, 0.0, 90.0)
    assert total == 10 + 10 + 10 + 5 + 10 * 5
    _, part = h.quantile(0.5, 35.0, 65.0)
    assert part == 10 + 10  # samples at 40, 50, 60: the reset is seen from 30 only
    assert h.sample_seconds == 10.0


def test_the_median_interval_has_the_sign_test_coverage() -> None:
    values = np.arange(1.0, 17.0)  # 16 values: 95 % leaves out 3 on each side (97.9 %)
    assert median_interval(values, 0.95) == (4.0, 13.0)
    assert median_interval(values[:5], 0.95) == (1.0, 5.0)  # too few: the extremes
    assert all(math.isnan(x) for x in median_interval(np.array([]), 0.95))


@pytest.mark.slow
def test_through_a_real_prometheus_a_burst_passes_and_a_sustained_change_fails(
    tmp_path: Path, prometheus_on_blocks: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from soakwatch.analyzer.cli import main
    from soakwatch.recording import SampleWriter, export_openmetrics

    burst = buckets(4, between(3.5 * 3600, 4 * 3600 + 1, 2.5), seed=11, scenario="burst")
    sustained = buckets(4, lambda e: np.where(e >= 2 * 3600, 1.4, 1.0), seed=12, scenario="slow")
    run = tmp_path / "run"
    run.mkdir()
    with SampleWriter(run) as writer:
        for i in range(burst[0].t.size):
            for s in burst + sustained:
                writer.write_sample(s.name, {**s.labels, "job": "load"}, float(s.v[i]), s.t[i])
    export_openmetrics(run, tmp_path / "run.om")
    server = prometheus_on_blocks(tmp_path / "run.om", tmp_path)
    try:
        code = main(
            [
                "--prometheus",
                server.url,
                "--end",
                f"{burst[0].t[-1]:.0f}",
                "--range",
                "4h",
                "--only",
                "latency_degradation",
                "--format",
                "json",
            ]
        )
    finally:
        server.stop()
    report = json.loads(capsys.readouterr().out)
    got = {r["subject"]["scenario"]: r for r in report["results"]}
    assert code == 1
    assert got["burst"]["status"] == "pass", got["burst"]["reason"]
    assert got["burst"]["details"]["last_window_change"] > 100
    assert got["slow"]["status"] == "fail", got["slow"]["reason"]
    assert got["slow"]["figure"] == pytest.approx(expected_change(1.4), abs=5)
