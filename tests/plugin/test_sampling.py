"""soak_monitor's memory verdict is the analyzer's: the same samples give soak-analyze and
judge_memory the same slope, and without the analyzer extra the monitor says so at once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soakwatch.analyzer.cli import main as soak_analyze
from soakwatch.recording import SampleWriter
from soakwatch.sampling import ResourceSample, judge_memory, memory_rule

MB = 1e6
START = 1_764_000_000.0


def leaking_samples(
    *, hours: float, interval: float, leak_mb_per_hour: float
) -> list[ResourceSample]:
    """RSS of a process that leaks steadily under a GC sawtooth (5-minute period) and noise."""
    rng = np.random.default_rng(7)
    samples = []
    for ts in START + np.arange(0.0, hours * 3600.0, interval):
        hours_in = (ts - START) / 3600.0
        rss = 200 * MB + leak_mb_per_hour * MB * hours_in + ((ts % 300) / 300) * 8 * MB
        rss += rng.normal(0, 0.3 * MB)
        samples.append(ResourceSample(float(ts), int(rss), 4, 10, (0, 0, 0), (0, 0, 0), (0, 0, 0)))
    return samples


def soak_analyze_memory_result(
    samples: list[ResourceSample], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, object]:
    """soak-analyze's memory_growth result for ``samples`` recorded as a run directory."""
    labels = {"service": "under-test", "instance": "local", "job": "soak"}
    with SampleWriter(run_dir) as writer:
        for sample in samples:
            writer.write_sample(
                "soak_process_resident_memory_bytes", labels, sample.rss_bytes, sample.timestamp
            )
    capsys.readouterr()
    code = soak_analyze(["--run-dir", str(run_dir), "--only", "memory_growth", "--format", "json"])
    out = capsys.readouterr().out
    assert code in (0, 1, 3), out
    (result,) = json.loads(out)["results"]
    return dict(result)


@pytest.mark.parametrize("leak_mb_per_hour", [0.0, 6.0])
def test_soak_analyze_and_the_monitor_find_the_same_slope_on_the_same_samples(
    leak_mb_per_hour: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = leaking_samples(hours=2.5, interval=15.0, leak_mb_per_hour=leak_mb_per_hour)
    rule = memory_rule()

    verdict = judge_memory(samples, warmup_seconds=rule_warmup(), min_points=rule.min_points)
    result = soak_analyze_memory_result(samples, tmp_path, capsys)

    details = result["details"]
    assert isinstance(details, dict)
    assert verdict.slope_mb_per_hour == pytest.approx(details["slope"], rel=1e-9)
    assert verdict.lower_mb_per_hour == pytest.approx(details["lower"], rel=1e-9)
    assert verdict.upper_mb_per_hour == pytest.approx(details["upper"], rel=1e-9)
    assert verdict.status == result["status"] == ("fail" if leak_mb_per_hour else "pass")
    assert verdict.slope_mb_per_hour == pytest.approx(leak_mb_per_hour, abs=0.5)


def rule_warmup() -> float:
    """The shipped memory rule's warm-up: soak-analyze skips it, so the monitor is told to."""
    from soakwatch.rules.model import load_rules

    return load_rules().rules["memory_growth"].warmup_seconds


@pytest.mark.parametrize("fixture", ["soak_monitor", "soak_run"])
def test_the_fixtures_name_the_missing_analyzer_extra_before_the_test_runs(
    pytester: pytest.Pytester, fixture: str
) -> None:
    pytester.makeconftest(
        """
        import sys

        # numpy uninstalled, as far as this process can tell: import and find_spec both fail
        sys.modules["numpy"] = None
        """
    )
    pytester.makepyfile(
        f"""
        import pathlib

        def test_long({fixture}):
            pathlib.Path("body-ran").write_text("yes")
        """
    )
    result = pytester.runpytest_subprocess()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*{fixture}: needs the 'analyzer' extra (numpy is not installed): "
            "pip install 'soakwatch?analyzer?'*"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert not (pytester.path / "body-ran").exists()
