"""The plugin is tested as a user meets it: inner pytest runs through pytester (enabled for the
whole suite with ``-p pytester`` in pyproject's addopts: ``pytest_plugins`` may only be set in
the top-level conftest)."""

from __future__ import annotations

import pytest

SOAK_ENVIRONMENT = (
    "RUN_SOAK_TESTS",
    "RUN_COMPLETE_SOAK_TEST",
    "SOAK_PROFILE",
    "SOAK_DURATION",
    "SOAK_CONFIG",
    "SOAK_TEST_DURATION_HOURS",
    "SOAK_SAMPLING_INTERVAL",
    "SOAK_INCONCLUSIVE",
    "SOAK_PROGRESS",
    "SOAK_ATTRIBUTION",
    "PYTHONTRACEMALLOC",
)


@pytest.fixture(autouse=True)
def clean_soak_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner runs must not see the soak variables of whoever runs the outer suite."""
    for name in SOAK_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
