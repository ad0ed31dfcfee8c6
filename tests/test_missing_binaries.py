"""A missing program skips the test naming its Debian package, and fails it when ``CI`` is set:
through ``servers.require_binary`` and through the ``requires_binary`` marker of conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import servers
from soakwatch.errors import SoakwatchError
from soakwatch.run import localservers

TESTS_DIR = Path(__file__).parent
MISSING = "/nonexistent/soak-no-such-server"


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("1", pytest.fail.Exception)]
)
def test_a_missing_binary_skips_the_test_or_fails_it_under_ci(
    ci: str, outcome: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="install the Debian package 'soak-nothing'"):
        servers.require_binary(MISSING, "soak-nothing")


def test_a_missing_binary_is_a_soakwatch_error_naming_the_package_outside_pytest() -> None:
    with pytest.raises(SoakwatchError, match="install the Debian package 'soak-nothing'"):
        localservers.find_binary(MISSING, "soak-nothing")


def test_a_binary_on_path_is_returned_with_its_full_path() -> None:
    found = servers.require_binary("sh", "dash")
    assert Path(found).is_absolute() and Path(found).name == "sh"


def _run_marked_test(pytester: pytest.Pytester, binary: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text())
    pytester.makepyfile(
        test_inner=f"""
        import pytest

        @pytest.mark.requires_binary({binary!r}, "soak-nothing")
        def test_runs_the_program():
            pass
        """
    )
    return pytester.runpytest("--strict-markers", "-p", "no:cacheprovider", "-rs")


def test_the_requires_binary_marker_skips_a_test_whose_program_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = _run_marked_test(pytester, MISSING)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*install the Debian package 'soak-nothing'*"])


def test_the_requires_binary_marker_fails_a_test_whose_program_is_missing_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    result = _run_marked_test(pytester, MISSING)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*install the Debian package 'soak-nothing'*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_requires_binary_marker_runs_a_test_whose_program_is_there(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    _run_marked_test(pytester, "sh").assert_outcomes(passed=1)
