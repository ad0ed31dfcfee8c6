"""The analyzer's results: one :class:`Result` per rule and subject, a :class:`Report` with the
verdict, and the stable JSON form (schema ``soakwatch.report/v1``, documented in
docs/analyzer.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXIT_CODES",
    "SCHEMA",
    "STATUSES",
    "Evidence",
    "Report",
    "Result",
    "Status",
    "verdict_of",
]

SCHEMA = "soakwatch.report/v1"
Status = Literal["pass", "fail", "inconclusive", "not_applicable"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "inconclusive", "not_applicable")
EXIT_CODES: Mapping[str, int] = {"pass": 0, "fail": 1, "inconclusive": 3}

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Evidence:
    """What a plot of the finding shows (not part of the JSON): the series, a fitted line with
    its confidence band, shaded spans (warm-up, compared windows) and marked instants
    (restarts, steps). Times are Unix seconds; values in the series' own unit."""

    series: list[tuple[str, FloatArray, FloatArray]] = field(default_factory=list)
    points: tuple[FloatArray, FloatArray] | None = None
    lines: list[tuple[str, FloatArray, FloatArray]] = field(default_factory=list)
    bands: list[tuple[FloatArray, FloatArray, FloatArray]] = field(default_factory=list)
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    marks: list[tuple[str, float]] = field(default_factory=list)
    y_label: str = ""


@dataclass(frozen=True, eq=False)
class Result:
    """One rule judged for one subject (a service, a pool, a scenario). ``figure`` and
    ``threshold`` are in ``unit``, the unit of the rules file; ``details`` holds the method's
    numbers (JSON-safe)."""

    rule: str
    kind: str
    subject: Mapping[str, str]
    status: Status
    figure: float | None
    unit: str
    threshold: float
    comparison: str
    reason: str
    details: Mapping[str, Any] = field(default_factory=dict)
    evidence: Evidence | None = None

    @property
    def subject_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.subject.items()) or "-"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "kind": self.kind,
            "subject": dict(self.subject),
            "status": self.status,
            "figure": _json_number(self.figure),
            "unit": self.unit,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "reason": self.reason,
            "details": _json_safe(dict(self.details)),
        }


def verdict_of(results: list[Result]) -> Literal["pass", "fail", "inconclusive"]:
    """fail if any rule failed; inconclusive if none failed but one was inconclusive, or if
    nothing applied at all (no data is never a pass); pass otherwise."""
    statuses = {r.status for r in results}
    if "fail" in statuses:
        return "fail"
    if "inconclusive" in statuses or "pass" not in statuses:
        return "inconclusive"
    return "pass"


@dataclass(frozen=True, eq=False)
class Report:
    """The outcome of one analysis."""

    start: float
    end: float
    source: str
    rules_source: str
    rules_version: int
    results: list[Result]
    generated_at: float
    selector: str | None = None

    @property
    def verdict(self) -> Literal["pass", "fail", "inconclusive"]:
        return verdict_of(self.results)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in STATUSES}

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "range": {"start": self.start, "end": self.end, "seconds": self.end - self.start},
            "source": self.source,
            "selector": self.selector,
            "rules": {"source": self.rules_source, "version": self.rules_version},
            "generated_at": self.generated_at,
            "counts": self.counts(),
            "results": [r.to_json() for r in self.results],
        }


def _json_number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _json_number(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value
