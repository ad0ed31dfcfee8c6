"""The ready-made soak suite: the eight scenarios, run against the target of a soak config.

    RUN_SOAK_TESTS=1 pytest --pyargs soakwatch.suite --soak-config soak.yaml --soak-profile ci
    RUN_COMPLETE_SOAK_TEST=1 ...   # also the complete suite (every scenario in one run)

Each test is one ``soak run`` (through the ``soak_run`` fixture) with the load scenarios of the
config that exercise it, judged by the rules that concern it. A test whose scenarios are absent
from the config, or all left out because an optional service is down, is skipped with the
reason; a required service down is an error listing each (see docs/pytest.md). A rule that
fails fails its test; one that is only inconclusive does too, unless ``--soak-inconclusive``
says skip or pass. Without ``--soak-config`` the suite is one usage error (the plugin's
``pytest_collection_finish``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pytest

from soakwatch.errors import SoakwatchError
from soakwatch.run import RunResult, check_availability
from soakwatch.run.config import RunConfig, load_run_config

if TYPE_CHECKING:
    from soakwatch.analyzer.report import Report

__all__: list[str] = []

HTTP = ("http",)
DATABASES = ("redis", "postgres", "clickhouse")
ALL_KINDS = ("http", "websocket", "sessions", *DATABASES)


def _config(request: pytest.FixtureRequest) -> RunConfig:
    from soakwatch.pytest_plugin import settings_key

    path = request.config.stash[settings_key].config_path
    if path is None:
        pytest.fail("the soak suite needs a target: --soak-config soak.yaml", pytrace=False)
    return load_run_config(path)


def _soak(
    request: pytest.FixtureRequest,
    soak_run: Callable[..., RunResult],
    kinds: tuple[str, ...],
    what: str,
) -> RunResult:
    """One run with the config's scenarios of ``kinds``; skip when there are none to run."""
    config = _config(request)
    scenarios = config.scenarios_of_kind(*kinds)
    if not scenarios:
        pytest.skip(f"the soak config has no {what} scenario ({', '.join(kinds)})")
    try:
        _, left_out = check_availability(config, scenarios)
    except SoakwatchError as exc:
        pytest.fail(str(exc), pytrace=False)
    reasons = {s: r for s, r in left_out.items() if s in scenarios}
    if len(reasons) == len(scenarios):
        text = "; ".join(f"{s}: {r}" for s, r in reasons.items())
        pytest.skip(f"every {what} scenario was left out: {text}")
    return soak_run(config, scenarios=scenarios)


def _report(result: RunResult) -> Report | None:
    """The run's verdict as the analyzer's typed report (None: the run has no verdict)."""
    if result.verdict is None:
        return None
    from soakwatch.analyzer.report import Report

    try:
        return Report.from_json(result.verdict, source=f"{result.run_dir}/verdict.json")
    except SoakwatchError as exc:
        pytest.fail(str(exc), pytrace=False)


def _failures(report: Report | None, rules: Iterable[str]) -> list[str]:
    wanted = set(rules)
    return [
        f"{r.rule} {','.join(f'{k}={v}' for k, v in r.subject.items())}: {r.status} ({r.reason})"
        for r in (report.results if report else [])
        if r.rule in wanted and r.status in ("fail", "inconclusive")
    ]


def _assert_rules(request: pytest.FixtureRequest, result: RunResult, *rules: str) -> None:
    report = _report(result)
    assert report is not None, f"no verdict: see {result.run_dir}/logs/analyze.log"
    judged = [r for r in report.results if r.rule in rules]
    assert judged, f"no result for {', '.join(rules)} in {result.run_dir}/verdict.json"
    problems = _failures(report, rules)
    _judge(
        request, result, problems, all_inconclusive=all(": inconclusive (" in p for p in problems)
    )


def _judge(
    request: pytest.FixtureRequest,
    result: RunResult,
    problems: list[str],
    *,
    all_inconclusive: bool,
) -> None:
    """A failed rule fails the test; inconclusive ones alone go by --soak-inconclusive."""
    if not problems:
        return
    text = f"{result.run_dir}:\n  " + "\n  ".join(problems)
    if all_inconclusive:
        from soakwatch.pytest_plugin import inconclusive

        inconclusive(request.config, f"inconclusive: {text}")
        return
    pytest.fail(text, pytrace=False)


@pytest.mark.soak("memory_leak_detection")
def test_memory_leak_detection(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """No service's memory grows beyond the threshold under the HTTP load."""
    result = _soak(request, soak_run, (*HTTP, "sessions"), "HTTP")
    _assert_rules(request, result, "memory_growth")


@pytest.mark.soak("websocket_connections_with_authentication")
def test_websocket_connections_with_authentication(
    request: pytest.FixtureRequest, soak_run: Any
) -> None:
    """Held WebSocket connections (authenticated where configured): no errors, no growth."""
    result = _soak(request, soak_run, ("websocket",), "WebSocket")
    _assert_rules(request, result, "error_ratio", "memory_growth")


@pytest.mark.soak("session_churn")
def test_session_churn(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """Sessions created, used and deleted at the profile's rate leave nothing behind."""
    result = _soak(request, soak_run, ("sessions",), "session churn")
    _assert_rules(request, result, "memory_growth", "error_ratio")


@pytest.mark.soak("database_operations")
def test_database_operations(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """Direct database operations at the profile's rate succeed throughout."""
    result = _soak(request, soak_run, DATABASES, "database")
    _assert_rules(request, result, "error_ratio")


@pytest.mark.soak("connection_pool_stability")
def test_connection_pool_stability(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """Connection pools keep a steady size under the whole load."""
    result = _soak(request, soak_run, ALL_KINDS, "load")
    _assert_rules(request, result, "pool_variation")


@pytest.mark.soak("latency_degradation")
def test_latency_degradation(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """p95 latency at the end of the run is close to the first window's."""
    result = _soak(request, soak_run, HTTP, "HTTP")
    _assert_rules(request, result, "latency_degradation")


@pytest.mark.soak("gc_efficiency")
def test_gc_efficiency(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """Garbage collection still frees what it examines (Python services with in-process
    metrics; not applicable to others)."""
    result = _soak(request, soak_run, ALL_KINDS, "load")
    if result.verdict_of("gc_efficiency") in (None, "not_applicable"):
        pytest.skip("no GC series: the target publishes no in-process GC metrics")
    _assert_rules(request, result, "gc_efficiency")


@pytest.mark.soak("complete", complete=True)
def test_complete_suite(request: pytest.FixtureRequest, soak_run: Any) -> None:
    """Every scenario of the config in one run, judged by every rule."""
    result = _soak(request, soak_run, ALL_KINDS, "load")
    report = _report(result)
    every_rule = [r.rule for r in report.results] if report else []
    if result.status == "inconclusive":
        _judge(request, result, _failures(report, every_rule), all_inconclusive=True)
        return
    assert result.status == "pass", f"{result.status}: {result.run_dir}\n  " + "\n  ".join(
        _failures(report, every_rule)
    )
