"""Issue 11, items 5-6 and "Bad input": honest intervals on short clean windows, the smallest
growth a run could see, the time it still needs, impossible rules files, and ranges without
data. Synthetic series with a known answer (seeded)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from soakwatch.analyzer.cli import main
from soakwatch.analyzer.evaluate import evaluate_rule, shortest_run_seconds, time_needed
from soakwatch.analyzer.report import Result
from soakwatch.analyzer.series import Series
from soakwatch.errors import ConfigError
from soakwatch.rules import load_rules
from soakwatch.rules.model import DEFAULT_RULES_PATH

MB = 1e6
T0 = 1.7e9
Array = npt.NDArray[np.float64]


def timeline(hours: float, step: float = 15.0) -> Array:
    return T0 + np.arange(0.0, hours * 3600.0, step)


def judge(t: Array, y: Array) -> Result:
    rule = load_rules().rules["memory_growth"]
    data = {"value": [Series("soak_process_resident_memory_bytes", {"service": "api"}, t, y)]}
    (result,) = evaluate_rule(rule, data, float(t[0]), float(t[-1]))
    return result


# -- 5. honest intervals ------------------------------------------------------------------------
def test_flat_with_5_mb_noise_over_two_hours_at_15_s_passes_with_an_interval_near_1_mb_h() -> None:
    rng = np.random.default_rng(21)
    results = []
    for _ in range(20):
        t = timeline(2)
        results.append(judge(t, 300 * MB + rng.normal(0, 5 * MB, t.size)))
    # the interval is about +-1 MB/h, so a flat series passes unless its noise drew a slope
    # near 1 MB/h (about one run in twenty)
    assert sum(r.status == "pass" for r in results) >= 17
    for result in results:
        half = (result.details["upper"] - result.details["lower"]) / 2
        assert 0.6 < half < 1.4
        assert result.details["detectable_slope"] == pytest.approx(half)
        assert result.status != "fail"


def test_autocorrelated_noise_widens_the_interval_instead_of_faking_precision() -> None:
    t = timeline(4)
    rng = np.random.default_rng(22)
    ar = np.zeros(t.size)
    shocks = rng.normal(0, 2 * MB, t.size)
    for i in range(1, t.size):
        ar[i] = 0.95 * ar[i - 1] + shocks[i]  # a slow wander of about 6 MB
    result = judge(t, 300 * MB + 3 * MB * (t - T0) / 3600 + ar)
    assert result.details["variance_factor"] > 5
    assert result.details["lower"] <= 3.0 <= result.details["upper"], result.reason


def test_false_fails_on_leak_free_noisy_series_stay_rare() -> None:
    rng = np.random.default_rng(23)
    statuses = []
    for _ in range(60):
        t = timeline(2)
        statuses.append(judge(t, 300 * MB + rng.normal(0, 5 * MB, t.size)).status)
    assert statuses.count("fail") <= 1
    assert statuses.count("pass") >= 50


# -- 6. resolution and time to decide ---------------------------------------------------------
def test_an_inconclusive_run_says_how_much_longer_it_needs_and_the_estimate_holds() -> None:
    rng = np.random.default_rng(24)
    t = timeline(1.5)
    y = 300 * MB + rng.normal(0, 25 * MB, t.size)
    result = judge(t, y)
    assert result.status == "inconclusive", result.reason
    more = result.details["more_seconds_needed"]
    assert more is not None and 600 < more < 12 * 3600
    assert "needs about" in result.reason and "more" in result.reason
    rule = load_rules().rules["memory_growth"]
    assert time_needed(rule, t, y) == pytest.approx(more)
    # the same process run for that much longer (and a margin) decides
    longer = timeline(1.5 + 1.5 * more / 3600)
    decided = judge(longer, 300 * MB + rng.normal(0, 25 * MB, longer.size))
    assert decided.status == "pass", decided.reason
    assert decided.details["more_seconds_needed"] == 0


def test_every_slope_result_carries_the_smallest_growth_it_could_see() -> None:
    t = timeline(12)
    y = 300 * MB + 10 * MB * (t - T0) / 3600 + np.random.default_rng(25).normal(0, 1 * MB, t.size)
    result = judge(t, y)
    assert result.status == "fail"
    assert 0 < result.details["detectable_slope"] < 0.2
    assert result.details["more_seconds_needed"] == 0


def test_a_ten_minute_run_is_known_to_be_too_short_before_it_starts() -> None:
    rule = load_rules().rules["memory_growth"]
    assert shortest_run_seconds(rule) >= rule.min_duration_seconds + rule.warmup_seconds
    assert shortest_run_seconds(rule) > 600


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("    confidence: 0.95\n", "    confidence: 1.0\n", "confidence"),
        ("    confidence: 0.95\n", "    confidence: 0\n", "confidence"),
        ("    window: 10m\n    min_duration: 1h", "    window: 0s\n    min_duration: 1h", "window"),
        ("    min_points: 8\n", "    min_points: 1\n", "min_points"),
    ],
)
def test_an_impossible_rules_file_is_a_config_error_naming_the_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, key: str
) -> None:
    text = DEFAULT_RULES_PATH.read_text()
    assert old in text
    path = tmp_path / "rules.yaml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError, match=key):
        load_rules(path)
    code = main(["--run-dir", str(tmp_path), "--rules", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert key in err


def test_a_range_without_samples_is_inconclusive_never_a_pass() -> None:
    rule = load_rules().rules["memory_growth"]
    empty = Series(
        "soak_process_resident_memory_bytes", {"service": "api"}, np.empty(0), np.empty(0)
    )
    (result,) = evaluate_rule(rule, {"value": [empty]}, T0, T0 + 3600)
    assert result.status == "inconclusive"
    assert "no samples" in result.reason
    optional = dataclasses.replace(rule, required=False)
    (nothing,) = evaluate_rule(optional, {"value": []}, T0, T0 + 3600)
    assert nothing.status != "pass"
