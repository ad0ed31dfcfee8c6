"""What ``soak run`` is asked to do (:class:`RunRequest`) and what it produced
(:class:`RunResult`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soakwatch.exitcodes import exit_code_of
from soakwatch.profiles import Profile
from soakwatch.run.availability import Availability
from soakwatch.run.config import RunConfig

if TYPE_CHECKING:
    from soakwatch.analyzer import Report

__all__ = ["Progress", "RunRequest", "RunResult"]

# progress(text, final): a status line; ``final`` lines stay, the others are redrawn
Progress = Callable[[str, bool], None]

_WORST_FIRST = ("fail", "inconclusive", "pass", "not_applicable")


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs, resolved: the config, the profile (with its duration), where
    to write, and how to analyze."""

    config: RunConfig
    profile: Profile
    out_dir: Path | None = None
    prometheus_url: str | None = None
    local_prometheus: bool = False
    fail_fast: bool = False
    only_scenarios: tuple[str, ...] | None = None
    progress: Progress | None = None
    stop_event: threading.Event | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    grafana_url: str | None = None


@dataclass
class RunResult:
    """What a run produced. ``verdict`` is the analyzer's JSON result (None when there was
    nothing to analyze) and ``report`` the same analysis as the analyzer's ``Report``;
    ``status`` is its verdict or "error"."""

    run_id: str
    run_dir: Path
    status: str
    verdict: dict[str, Any] | None
    interrupted: bool
    stopped_early: bool
    skipped_scenarios: dict[str, str]
    availability: list[Availability]
    reports: dict[str, Path]
    report: Report | None = None

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.status)

    def verdict_of(self, rule: str, subject: str | None = None) -> str | None:
        """The status of one rule (optionally for one subject, e.g. a service) or None."""
        statuses = [r.get("status") for r in _results(self.verdict, rule, subject)]
        for status in _WORST_FIRST:
            if status in statuses:
                return status
        return None


def _results(
    verdict: Mapping[str, Any] | None, rule: str, subject: str | None
) -> Iterator[dict[str, Any]]:
    for result in (verdict or {}).get("results", []) or []:
        if result.get("rule") != rule:
            continue
        labels = result.get("subject") or result.get("labels") or {}
        if subject is None or subject in (
            labels.values() if isinstance(labels, dict) else [labels]
        ):
            yield result
