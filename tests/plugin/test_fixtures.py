"""The plugin's fixtures: soak_config, soak_services and soak_monitor, in inner pytest runs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A real TCP listener on 127.0.0.1: a service that is up."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def closed_port() -> int:
    """A port nobody listens on (bound, then released): a service that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_soak_config_is_the_profile_with_the_duration_option_applied(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_profile(soak_config):
            assert soak_config.name == "staging"
            assert soak_config.duration_seconds == 1800
            assert soak_config.sampling_interval_seconds == 60
            assert soak_config.max_concurrent_connections == 500
        """
    )
    result = pytester.runpytest("--soak-profile", "staging", "--soak-duration", "30m")
    result.assert_outcomes(passed=1)


def test_command_line_beats_environment_which_beats_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(
        """
        [pytest]
        soak_profile = production
        soak_duration = 2h
        """
    )
    pytester.makepyfile(
        """
        import os

        def test_profile(soak_config):
            expected = os.environ["EXPECTED"].split(",")
            assert soak_config.name == expected[0]
            assert soak_config.duration_seconds == float(expected[1])
        """
    )
    monkeypatch.setenv("EXPECTED", "production,7200")
    pytester.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("SOAK_DURATION", "90m")
    monkeypatch.setenv("EXPECTED", "production,5400")
    pytester.runpytest().assert_outcomes(passed=1)
    monkeypatch.setenv("EXPECTED", "ci,60")
    pytester.runpytest("--soak-profile", "ci", "--soak-duration", "1m").assert_outcomes(passed=1)


def test_soak_config_applies_the_profile_environment_overrides(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAK_TEST_DURATION_HOURS", "3")
    monkeypatch.setenv("SOAK_MAX_CONNECTIONS", "7")
    pytester.makepyfile(
        """
        def test_profile(soak_config):
            assert (soak_config.duration_seconds, soak_config.max_concurrent_connections) == (
                10800, 7)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def soak_config_file(pytester: pytest.Pytester, up: int, down: int) -> None:
    pytester.makefile(
        ".yaml",
        soak=f"""
        checks:
          - {{name: backend, kind: tcp, target: "127.0.0.1:{up}"}}
          - {{name: postgres, kind: tcp, target: "127.0.0.1:{down}", timeout: 2s}}
          - {{name: auth, kind: tcp, target: "127.0.0.1:{down}", required: false}}
        """,
    )


def test_soak_services_reports_each_service_that_is_up(
    pytester: pytest.Pytester, listening_port: int
) -> None:
    soak_config_file(pytester, listening_port, closed_port())
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak(services=["backend"])
        def test_up(soak_services):
            assert list(soak_services) == ["backend"]
            assert soak_services["backend"].up
        """
    )
    result = pytester.runpytest("--run-soak", "--soak-config", "soak.yaml")
    result.assert_outcomes(passed=1)


def test_a_required_service_down_is_an_error_listing_each_one(
    pytester: pytest.Pytester, listening_port: int
) -> None:
    soak_config_file(pytester, listening_port, closed_port())
    pytester.makepyfile(
        """
        def test_all(soak_services):
            pass
        """
    )
    result = pytester.runpytest("--soak-config", "soak.yaml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*required service(s) unavailable:",
            "*postgres (tcp 127.0.0.1:*): ConnectionRefusedError*",
        ]
    )
    result.stdout.no_fnmatch_line("*  backend (tcp*")


def test_an_optional_service_down_skips_the_test_with_the_reason(
    pytester: pytest.Pytester, listening_port: int
) -> None:
    soak_config_file(pytester, listening_port, closed_port())
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak("websocket_auth", services=["backend", "auth"])
        def test_auth(soak_services):
            pass
        """
    )
    result = pytester.runpytest("--run-soak", "--soak-config", "soak.yaml", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*optional service(s) unavailable: auth (ConnectionRefused*"])


def test_a_service_the_marker_names_but_the_config_lacks_is_an_error(
    pytester: pytest.Pytester, listening_port: int
) -> None:
    soak_config_file(pytester, listening_port, closed_port())
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.soak(services=["clickhouse"])
        def test_missing(soak_services):
            pass
        """
    )
    result = pytester.runpytest("--run-soak", "--soak-config", "soak.yaml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*service(s) clickhouse not configured in soak.yaml*"])


def test_a_bad_soak_config_file_is_a_usage_error_naming_the_file_and_key(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", soak="checks:\n  - {name: db, kind: carrier-pigeon, target: x}\n")
    pytester.makepyfile("def test_all(soak_services):\n    pass\n")
    result = pytester.runpytest("--soak-config", "soak.yaml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*soak.yaml: checks[[]0[]].kind: must be one of http, tcp*"])


def test_soak_monitor_fails_a_test_whose_code_keeps_allocating(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAK_SAMPLING_INTERVAL", "0.05")
    pytester.makepyfile(
        """
        import time

        KEPT = []

        def test_leaky(soak_monitor):
            for _ in range(30):
                KEPT.append(b"x" * 1_000_000)
                time.sleep(0.05)
            verdict = soak_monitor.verdict()
            KEPT.clear()
            assert verdict.status == "fail", verdict.summary
            assert verdict.slope_mb_per_hour > 10_000
            assert verdict.points >= 8

        def test_healthy(soak_monitor):
            time.sleep(1.5)
            verdict = soak_monitor.verdict(threshold_mb_per_hour=1000)
            assert verdict.status == "pass", verdict.summary
        """
    )
    # A child process: memory freed by earlier tests in this one would hide the growth.
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_soak_monitor_judges_after_the_body_when_the_test_did_not_ask(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAK_SAMPLING_INTERVAL", "0.05")
    pytester.makepyfile(
        """
        import time

        KEPT = []

        def test_leaky(soak_monitor):
            for _ in range(30):
                KEPT.append(b"x" * 1_000_000)
                time.sleep(0.05)

        def teardown_module():
            KEPT.clear()
        """
    )
    result = pytester.runpytest_subprocess()
    # issue 15: the leak fails the test itself (it was an error at teardown, after a pass)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*soak_monitor: memory growth * fail (leak)*"])
