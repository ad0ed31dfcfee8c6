from __future__ import annotations

from typing import Any

from soakwatch.run.demo import service_verdicts


def _result(status: str, **subject: str) -> dict[str, Any]:
    return {"rule": "r", "status": status, "subject": subject}


def test_a_failing_scenario_of_a_service_fails_that_service_in_the_demo_summary() -> None:
    verdict = {
        "results": [
            _result("pass", service="healthy"),
            _result("fail", scenario="http_healthy"),
            _result("fail", service="leaky"),
        ]
    }
    assert service_verdicts(verdict, ["healthy", "leaky"]) == {"healthy": "fail", "leaky": "fail"}


def test_shared_scenarios_count_for_no_single_service() -> None:
    verdict = {
        "results": [
            _result("pass", service="healthy"),
            _result("fail", scenario="redis_ops"),
            _result("inconclusive", scenario="sessions_leaky"),
        ]
    }
    assert service_verdicts(verdict, ["healthy", "leaky"]) == {
        "healthy": "pass",
        "leaky": "inconclusive",
    }
