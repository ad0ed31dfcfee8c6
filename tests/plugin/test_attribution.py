"""issue 17: a soak test that leaks at a known line fails with that file and line in its message
when ``soak_monitor`` samples allocation sites (the marker's ``attribution=True``,
``--soak-attribution``, SOAK_ATTRIBUTION or ini ``soak_attribution``), and without attribution
the message names no site. Inner pytest runs of the real plugin with the exporter's real
tracemalloc sampler; the leaks are real (kept bytearrays)."""

from __future__ import annotations

import re

import pytest

# imported here, outside the inner in-process runs, which unload the modules they import (and
# numpy cannot be loaded twice in one process)
import soakwatch.analyzer.evaluate
import soakwatch.exporter.attribution  # noqa: F401
from soakwatch.sampling import SoakMonitor, test_attribution_config

LEAKS = """
import time

import pytest

KEPT = []


def handle():
    time.sleep(0.01)


@pytest.mark.soak("leak", duration="4s", attribution=True)
def test_leak_attributed(soak_monitor):
    for _ in soak_monitor.iterations():
        KEPT.append(bytearray(50_000))  # the leak
        handle()


@pytest.mark.soak("leak", duration="4s")
def test_leak_unattributed(soak_monitor):
    for _ in soak_monitor.iterations():
        KEPT.append(bytearray(50_000))
        handle()


@pytest.mark.soak("healthy", duration="4s", attribution=True)
def test_healthy_attributed(soak_monitor):
    for _ in soak_monitor.iterations():
        bytes(bytearray(50_000))
        handle()
"""
LEAK_LINE = LEAKS.splitlines().index("        KEPT.append(bytearray(50_000))  # the leak")


def _failure_line(output: str, test: str) -> str:
    """The ``soak_monitor: ...`` line of the failure section of ``test``."""
    section = output.split(f"_ {test} _", 1)[1]
    found = re.search(r"^soak_monitor: .*$", section, re.M)
    assert found is not None, output
    return found.group(0)


@pytest.mark.slow
def test_a_leak_fails_naming_its_line_with_attribution_and_no_site_without(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_leak=LEAKS)
    # a child process: memory the outer run freed earlier would hide or fake growth
    result = pytester.runpytest_subprocess("--run-soak", "-rA")
    result.assert_outcomes(failed=2, passed=1)
    output = result.stdout.str()
    attributed = _failure_line(output, "test_leak_attributed")
    assert re.fullmatch(
        r"soak_monitor: memory growth \+[0-9.]+ MB/h \[.*\], threshold 2: fail \(leak\); "
        rf"mostly at test_leak\.py:{LEAK_LINE} \(test_leak_attributed, \+[0-9.]+ MB/h\)",
        attributed,
    ), attributed
    # the site's growth is the leak's own: 50 kB every ~10 ms is ~18 GB/h, measured as RSS too
    rss, site = (float(x) for x in re.findall(r"\+([0-9.]+) MB/h", attributed))
    assert 0.5 * rss < site < 1.5 * rss, attributed
    unattributed = _failure_line(output, "test_leak_unattributed")
    assert unattributed.endswith("fail (leak)"), unattributed
    assert "mostly at" not in unattributed and "allocation" not in unattributed
    assert "PASSED test_leak.py::test_healthy_attributed" in output


CHOICE = """
import pytest


@pytest.mark.soak("choice"{marker})
def test_choice(soak_monitor):
    assert (soak_monitor.allocations is not None) is {expected}
    soak_monitor.verdict()  # judged by the test: nothing to fail after the body
"""


@pytest.mark.parametrize(
    ("arguments", "environment", "ini", "marker", "expected"),
    [
        ([], {}, None, "", False),  # off by default
        (["--soak-attribution"], {}, None, "", True),
        ([], {"SOAK_ATTRIBUTION": "1"}, None, "", True),
        ([], {}, "yes", "", True),
        ([], {"SOAK_ATTRIBUTION": "0"}, "on", "", False),  # environment > ini
        (["--soak-attribution"], {}, None, ", attribution=False", False),  # the marker wins
        ([], {}, None, ", attribution=True", True),
    ],
)
def test_attribution_from_command_line_environment_ini_or_marker(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    environment: dict[str, str],
    ini: str | None,
    marker: str,
    expected: bool,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if ini is not None:
        pytester.makeini(f"[pytest]\nsoak_attribution = {ini}\n")
    pytester.makepyfile(CHOICE.format(marker=marker, expected=expected))
    result = pytester.runpytest("--run-soak", *arguments)
    result.assert_outcomes(passed=1)


def test_a_bad_attribution_setting_is_a_usage_error_and_a_bad_marker_value_a_marker_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(CHOICE.format(marker=", attribution='yes'", expected=True))
    result = pytester.runpytest("--run-soak")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*bad @pytest.mark.soak(*): attribution must be True or False, got 'yes'*"]
    )
    monkeypatch.setenv("SOAK_ATTRIBUTION", "maybe")
    result = pytester.runpytest("--run-soak")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*SOAK_ATTRIBUTION: expected 1/0, *, got 'maybe'*"])


def test_when_tracemalloc_is_taken_the_leak_still_fails_and_says_why_there_is_no_site(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_taken="""
        import time

        import pytest

        KEPT = []

        @pytest.mark.soak("leak", duration="2s", attribution=True)
        def test_taken(soak_monitor):
            for _ in soak_monitor.iterations():
                KEPT.append(bytearray(20_000))
                time.sleep(0.001)
        """
    )
    monkeypatch.setenv("PYTHONTRACEMALLOC", "1")  # someone else traces: soakwatch steps back
    result = pytester.runpytest_subprocess("--run-soak", "-rf")
    result.assert_outcomes(failed=1)
    line = _failure_line(result.stdout.str(), "test_taken")
    assert "fail (leak); allocation sites unavailable: tracemalloc is already tracing" in line
    assert "Traceback" not in result.stdout.str()


def test_short_tests_get_three_windows_and_long_ones_the_exporters_defaults() -> None:
    from soakwatch.exporter.attribution import AttributionConfig

    defaults = AttributionConfig()
    long = test_attribution_config(600.0, "/srv")
    assert (long.window_seconds, long.interval_seconds, long.frames) == (
        defaults.window_seconds,
        defaults.interval_seconds,
        defaults.frames,
    )
    assert str(long.root) == "/srv"
    short = test_attribution_config(20.0)
    assert short.interval_seconds == pytest.approx(20.0 / 3)
    assert short.window_seconds == defaults.window_seconds
    tiny = test_attribution_config(1.0)
    assert tiny.interval_seconds == 0.4 and tiny.window_seconds == pytest.approx(0.1)


def test_a_monitor_without_attribution_has_no_sampler_and_no_sites() -> None:
    monitor = SoakMonitor(0.05, duration_seconds=0.5)
    assert monitor.allocations is None
    for _ in monitor.iterations():
        pass
    verdict = monitor.verdict()
    assert verdict.allocation_sites == () and verdict.allocation_note is None
    assert verdict.top_site is None
