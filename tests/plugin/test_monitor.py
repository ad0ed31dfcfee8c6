"""issue 15: a soak test that cannot pass a leak. The marker's duration, threshold and rules, the
``soak_monitor.iterations()`` helper, an inconclusive verdict failing by default, progress
under -s / -v, and settings errors once, at configure. Inner pytest runs of the real plugin; the
leaks are real (retained objects), measured as RSS by the real sampler."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

# imported here, outside the inner in-process runs, which unload the modules they import (and
# numpy cannot be loaded twice in one process)
import soakwatch.analyzer.evaluate  # noqa: F401
from soakwatch.rules.model import DEFAULT_RULES_PATH

# 20,000 parsed documents kept alive over a 4 s test: the leak of issue 15, which passed.
LEAKY_AND_HEALTHY = """
import json
import time

import pytest

DOC = json.dumps({"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]}
                            for i in range(20)]})
KEPT = []

@pytest.mark.soak("parser", duration="4s")
def test_leaky(soak_monitor):
    for _ in soak_monitor.iterations(max_iterations=20_000):
        KEPT.append(json.loads(DOC))
        time.sleep(0.0001)
    assert len(KEPT) > 1000

@pytest.mark.soak("parser", duration="4s")
def test_healthy(soak_monitor):
    for _ in soak_monitor.iterations():
        json.loads(DOC)
"""

# A body that returns at once: 2 samples, too few to judge.
QUICK = """
import pytest

@pytest.mark.soak("quick")
def test_quick(soak_monitor):
    pass
"""


def test_a_leaking_test_fails_and_a_healthy_one_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(LEAKY_AND_HEALTHY)
    # a child process: memory the outer run freed earlier would hide or fake growth
    result = pytester.runpytest_subprocess("--run-soak", "-rf")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "_* test_leaky _*",
            "soak_monitor: memory growth +* MB/h [[]+*, +*[]], threshold 2: fail (leak)",
        ]
    )
    found = re.search(r"soak_monitor: memory growth \+([0-9.]+) MB/h", result.stdout.str())
    assert found is not None and float(found.group(1)) > 1000, result.stdout.str()


def test_iterations_run_the_body_for_the_markers_duration_and_the_command_line_wins(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import time
        import pytest

        @pytest.mark.soak("timed", duration="1500ms")
        def test_timed(soak_monitor):
            started = time.monotonic()
            count = sum(1 for _ in soak_monitor.iterations())
            took = time.monotonic() - started
            assert soak_monitor.duration_seconds == float(__import__("os").environ["EXPECTED"])
            assert abs(took - soak_monitor.duration_seconds) < 0.5, took
            assert count > 100
            assert len(soak_monitor.samples) >= 25  # every 20 ms, not once a second

        @pytest.mark.soak("bounded", duration="1h")
        def test_bounded(soak_monitor):
            assert sum(1 for _ in soak_monitor.iterations(max_iterations=7)) == 7
            soak_monitor.verdict()  # asked for: the test judges it (here: not at all)
        """
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXPECTED", "1.5")
        pytester.runpytest("--run-soak", "-k", "timed").assert_outcomes(passed=1)
        patch.setenv("EXPECTED", "1.0")
        pytester.runpytest("--run-soak", "--soak-duration", "1s", "-k", "timed").assert_outcomes(
            passed=1
        )
    pytester.runpytest("--run-soak", "-k", "bounded").assert_outcomes(passed=1)


def test_an_inconclusive_verdict_fails_by_default_saying_inconclusive_and_why(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(QUICK)
    result = pytester.runpytest("--run-soak", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*soak_monitor: inconclusive: only * samples over *s (at least 8 needed: run the body "
            "longer, e.g. for _ in soak_monitor.iterations())",
            "*an inconclusive soak test fails: run it longer, or pass "
            "--soak-inconclusive=skip|pass*",
        ]
    )
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize(
    ("arguments", "environment", "ini", "outcome"),
    [
        (["--soak-inconclusive", "skip"], {}, None, {"skipped": 1}),
        (["--soak-inconclusive=pass"], {}, None, {"passed": 1, "warnings": 1}),
        ([], {"SOAK_INCONCLUSIVE": "skip"}, None, {"skipped": 1}),
        ([], {}, "pass", {"passed": 1, "warnings": 1}),
        ([], {"SOAK_INCONCLUSIVE": "skip"}, "pass", {"skipped": 1}),  # environment > ini
        (["--soak-inconclusive", "fail"], {"SOAK_INCONCLUSIVE": "pass"}, None, {"failed": 1}),
    ],
)
def test_soak_inconclusive_from_command_line_environment_or_ini(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    environment: dict[str, str],
    ini: str | None,
    outcome: dict[str, int],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if ini is not None:
        pytester.makeini(f"[pytest]\nsoak_inconclusive = {ini}\n")
    pytester.makepyfile(QUICK)
    result = pytester.runpytest("--run-soak", "-rs", *arguments)
    result.assert_outcomes(**outcome)
    if "skipped" in outcome:
        result.stdout.fnmatch_lines(["SKIPPED * soak_monitor: inconclusive: only * samples*"])
    if "warnings" in outcome:
        result.stdout.fnmatch_lines(["*SoakInconclusiveWarning: soak_monitor: inconclusive: *"])


def test_the_markers_max_growth_is_the_threshold(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time

        import pytest

        KEPT = []

        @pytest.mark.soak("roomy", duration="2s", max_growth="1000000 MB/h")
        def test_roomy(soak_monitor):
            for _ in soak_monitor.iterations():
                KEPT.append(bytearray(20_000))
            assert soak_monitor.verdict().threshold_mb_per_hour == 1_000_000

        @pytest.mark.soak("tight", duration="2s", max_growth="512 KiB/h")
        def test_tight(soak_monitor):
            # paced: on an idle machine 3,000 bare appends end before the sampler's 8th sample
            for _ in soak_monitor.iterations(max_iterations=3000):
                KEPT.append(bytearray(20_000))
                time.sleep(0.0005)
        """
    )
    result = pytester.runpytest_subprocess("--run-soak", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["soak_monitor: memory growth *, threshold 0.524288: fail (leak)"])


def rules_with(tmp: Path, **memory_growth: object) -> Path:
    spec = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    spec["rules"]["memory_growth"].update(memory_growth)
    path = tmp / "my-rules.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_markers_rules_file_gives_the_threshold(pytester: pytest.Pytester) -> None:
    rules_with(pytester.path, threshold=1_000_000)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak("own rules", duration="1s", rules="my-rules.yaml")
        def test_own_rules(soak_monitor):
            for _ in soak_monitor.iterations():
                pass
            assert soak_monitor.verdict().threshold_mb_per_hour == 1_000_000
        """
    )
    pytester.runpytest("--run-soak").assert_outcomes(passed=1)


def test_the_marker_takes_a_preset_by_name(pytester: pytest.Pytester) -> None:
    """``rules="quick"``: the packaged preset's memory rule (20 MB/h), not the default 2 MB/h."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak("preset", duration="1s", rules="quick")
        def test_preset(soak_monitor):
            for _ in soak_monitor.iterations():
                pass
            assert soak_monitor.verdict().threshold_mb_per_hour == 20
        """
    )
    pytester.runpytest("--run-soak").assert_outcomes(passed=1)


def test_a_rules_file_without_a_memory_rule_is_a_marker_error(pytester: pytest.Pytester) -> None:
    spec = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    del spec["rules"]["memory_growth"]
    (pytester.path / "no-memory.yaml").write_text(yaml.safe_dump(spec))
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak(rules="no-memory.yaml")
        def test_soak(soak_monitor):
            pass
        """
    )
    result = pytester.runpytest("--run-soak")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*bad @pytest.mark.soak(*): rules: */no-memory.yaml: rules.memory_growth: no "
            "memory_growth rule of kind slope*"
        ]
    )


@pytest.mark.parametrize("watching", ["-s", "-v"])
def test_progress_lines_while_the_body_runs_under_s_or_v(
    pytester: pytest.Pytester, watching: str
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak("watched", duration="2s")
        def test_watched(soak_monitor):
            for _ in soak_monitor.iterations():
                pass
        """
    )
    result = pytester.runpytest("--run-soak", "--soak-progress", "500ms", watching)
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if line.startswith("soak test_watched: ")]
    assert 3 <= len(lines) <= 6, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "soak test_watched: *ms/2s | * iterations | * samples | RSS * MB | memory +* MB/h*",
            "soak test_watched: 2s/2s | * iterations | * samples | RSS * MB | memory * MB/h *",
        ]
    )


def test_no_progress_lines_unless_watched_or_when_turned_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak("quiet", duration="1s")
        def test_quiet(soak_monitor):
            for _ in soak_monitor.iterations():
                pass
        """
    )
    for arguments in ([], ["-v", "--soak-progress", "0"]):
        result = pytester.runpytest("--run-soak", "--soak-inconclusive=pass", *arguments)
        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("soak test_quiet:*")


@pytest.mark.parametrize(
    ("environment", "arguments", "message"),
    [
        (
            {"SOAK_TEST_DURATION_HOURS": "abc"},
            [],
            "environment: SOAK_TEST_DURATION_HOURS: expected a number, got 'abc'",
        ),
        (
            {"SOAK_SAMPLING_INTERVAL": "often"},
            [],
            "environment: SOAK_SAMPLING_INTERVAL: not a duration: 'often'*",
        ),
        (
            {"SOAK_INCONCLUSIVE": "maybe"},
            [],
            "SOAK_INCONCLUSIVE: expected fail, skip or pass, got 'maybe'",
        ),
        ({}, ["--soak-progress", "lots"], "--soak-progress: not a duration: 'lots'*"),
        ({}, ["--run-soak", "--soak-config", "missing.yaml"], "soak config: *missing.yaml*"),
    ],
)
def test_a_bad_setting_is_one_usage_error_at_configure_not_an_error_in_every_test(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    arguments: list[str],
    message: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(
        """
        import pytest

        def test_one(soak_config):
            pass

        @pytest.mark.soak("two")
        def test_two(soak_config):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*arguments)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert output.count(message.split("*")[0]) == 1, output
