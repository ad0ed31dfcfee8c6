"""The soak marker, the options and when soak tests run."""

from __future__ import annotations

import pytest

SOAK_AND_PLAIN = """
import pytest

@pytest.mark.soak("memory_leak")
def test_soak():
    pass

def test_plain():
    pass
"""


def test_the_markers_listing_shows_the_soak_marker_with_its_full_signature(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.soak(scenario=None, *, services=(), complete=False, duration=None, "
            "max_growth=None, rules=None, attribution=None): a soak test*"
        ]
    )


def test_soak_tests_are_skipped_by_default_with_a_reason_that_says_how_to_run_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SOAK_AND_PLAIN)
    result = pytester.runpytest("--strict-markers", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["SKIPPED * soak test: set RUN_SOAK_TESTS=1 or pass --soak-profile PROFILE*"]
    )


@pytest.mark.parametrize(
    ("environment", "arguments"),
    [
        ({"RUN_SOAK_TESTS": "1"}, []),
        ({"RUN_SOAK_TESTS": "yes"}, []),
        ({}, ["--soak-profile", "ci"]),
        ({}, ["--run-soak"]),
    ],
)
def test_soak_tests_run_when_asked_for_by_environment_or_option(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    environment: dict[str, str],
    arguments: list[str],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(SOAK_AND_PLAIN)
    pytester.runpytest("--strict-markers", *arguments).assert_outcomes(passed=2)


def test_run_soak_tests_set_to_zero_keeps_them_skipped(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_SOAK_TESTS", "0")
    pytester.makepyfile(SOAK_AND_PLAIN)
    pytester.runpytest().assert_outcomes(passed=1, skipped=1)


def test_the_complete_suite_also_needs_run_complete_soak_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUN_SOAK_TESTS", "1")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak("complete", complete=True)
        def test_complete():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*complete soak suite: set RUN_COMPLETE_SOAK_TEST=1 to run it*"])
    monkeypatch.setenv("RUN_COMPLETE_SOAK_TEST", "1")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("5", "scenario must be a string, got 5"),
        ("services=3", "services must be a list of service names, got 3"),
        ("complete='yes'", "complete must be True or False, got 'yes'"),
        ("timeout=3", "soak() got an unexpected keyword argument 'timeout'"),
        ("'a', 'b'", "soak() takes from 0 to 1 positional arguments but 2 were given"),
        ("duration='soon'", "duration must be a duration greater than 0 such as '10m'*got 'soon'"),
        ("duration=0", "duration must be a duration greater than 0*got 0"),
        (
            "max_growth='lots'",
            "max_growth must be a memory growth greater than 0 such as '2 MB/h'"
            " (units: MB/h, MiB/h, KB/h, KiB/h, bytes/h; a bare number is MB/h), got 'lots'",
        ),
        ("max_growth='2 MB'", "max_growth must be a memory growth*got '2 MB'"),
        ("max_growth=-1", "max_growth must be a memory growth greater than 0*got -1"),
        ("rules=3", "rules must be a rules file or a packaged name, got 3"),
        ("rules='missing.yaml'", "rules: no such rules file: */missing.yaml"),
        ("rules='quik'", "rules: unknown rules name 'quik'; known: default; presets: *quick*"),
    ],
)
def test_bad_marker_arguments_are_an_error_that_names_the_marker_and_the_problem(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, arguments: str, message: str
) -> None:
    monkeypatch.setenv("RUN_SOAK_TESTS", "1")
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.soak({arguments})
        def test_soak():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*bad @pytest.mark.soak(*): {message}*"])


def test_bad_marker_arguments_are_reported_even_when_soak_tests_are_not_asked_for(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak(services=3)
        def test_soak():
            pass
        """
    )
    pytester.runpytest().assert_outcomes(errors=1)


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--soak-profile", "weekly"], {}, "--soak-profile: unknown soak profile 'weekly'*"),
        (["--soak-duration", "soon"], {}, "--soak-duration: not a duration: 'soon'*"),
        ([], {"SOAK_DURATION": "-5m"}, "SOAK_DURATION: not a duration*"),
        ([], {"RUN_SOAK_TESTS": "maybe"}, "RUN_SOAK_TESTS: expected 1/0, true/false*"),
    ],
)
def test_bad_settings_stop_the_session_with_a_message_naming_where_they_came_from(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    arguments: list[str],
    environment: dict[str, str],
    message: str,
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(SOAK_AND_PLAIN)
    result = pytester.runpytest(*arguments)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
