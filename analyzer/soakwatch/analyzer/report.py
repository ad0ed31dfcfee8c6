"""The analyzer's results: one :class:`Result` per rule and subject, a :class:`Report` with the
verdict, and the stable JSON form (schema ``soakwatch.report/v1``, documented in
docs/analyzer.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from soakwatch.errors import SourceError
from soakwatch.exitcodes import exit_code_of

__all__ = [
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

FloatArray = npt.NDArray[np.float64]
# The report's plots are 880 px wide, their axes narrower: a series of evidence is kept as at
# most four points (first, lowest, highest, last) in each of this many time buckets, which
# draws the same line at that width (M4, Jugel et al., "M4: A Visualization-Oriented Time
# Series Data Aggregation", VLDB 2014) and keeps every spike and sawtooth drop.
EVIDENCE_BUCKETS = 800
# A counter's drops (resets) are kept as well, both sides of each, when there are at most this
# many: then the increase through resets, which the ratio plots check against the judged
# figure, is that of every sample (between kept points the counter only rises).
EVIDENCE_RESETS = 256


@dataclass(frozen=True, eq=False)
class Evidence:
    """What a plot of the finding shows (not part of the JSON): the series, a fitted line with
    its confidence band, shaded spans (warm-up, compared windows) and marked instants
    (restarts, steps). Times are Unix seconds; values in the series' own unit.

    ``series`` is kept compact (a report holds the evidence of every finding: at 1,000
    services that was 285 MB): each series of more than 4 x EVIDENCE_BUCKETS samples is
    reduced by :func:`compact_series`, and values that are exactly float32 (counts, sizes in
    pages, 0/1 outcomes) are held as float32."""

    series: list[tuple[str, FloatArray, FloatArray]] = field(default_factory=list)
    points: tuple[FloatArray, FloatArray] | None = None
    lines: list[tuple[str, FloatArray, FloatArray]] = field(default_factory=list)
    bands: list[tuple[FloatArray, FloatArray, FloatArray]] = field(default_factory=list)
    spans: list[tuple[str, float, float]] = field(default_factory=list)
    marks: list[tuple[str, float]] = field(default_factory=list)
    y_label: str = ""

    def __post_init__(self) -> None:
        # a reduced copy of a long series: the fetched one is freed once its rule is judged
        edges = [x for _label, a, b in self.spans for x in (a, b)]
        compact = [(label, *compact_series(t, v, edges)) for label, t, v in self.series]
        object.__setattr__(self, "series", compact)


def compact_series(
    t: FloatArray, v: FloatArray, edges: list[float] | tuple[float, ...] = ()
) -> tuple[FloatArray, FloatArray]:
    """(t, v) as evidence keeps them: with more than 4 x EVIDENCE_BUCKETS samples, only the
    first, lowest, highest and last sample of each of EVIDENCE_BUCKETS equal time buckets (in
    time order, each once), both sides of every drop when there are at most EVIDENCE_RESETS
    and of each time in ``edges`` (the spans': a ratio plot counts from the warm-up's end);
    the values as float32 when that is exact. Times stay float64 (Unix seconds need its 53
    bits). A series with NaN or infinite samples is kept whole."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v)
    if t.size > 4 * EVIDENCE_BUCKETS and t.size == v.size and np.all(np.isfinite(v)):
        kept = _m4_kept(t, v.astype(np.float64, copy=False))
        if len(edges):
            after = np.searchsorted(t, np.asarray(edges, dtype=np.float64))
            kept[np.clip(np.r_[after - 1, after], 0, t.size - 1)] = True
        t, v = t[kept], v[kept]
    # the times as given: series fetched at one step share one times array
    narrow = v.astype(np.float32)
    if np.array_equal(narrow, v):
        return t, cast("FloatArray", narrow)
    return t, np.asarray(v, dtype=np.float64)


def _m4_kept(t: FloatArray, v: FloatArray) -> npt.NDArray[np.bool_]:
    """Which samples :func:`compact_series` keeps, as a mask (marking them costs 10 us a
    series of 11,520 samples where ``np.unique`` of their indices took 300 us, 40 % of the
    compaction: 0.3 CPU-s of 1,000 services' evidence)."""
    span = float(t[-1] - t[0]) or 1.0
    bucket = ((t - t[0]) * (EVIDENCE_BUCKETS / span)).astype(np.intp)
    np.minimum(bucket, EVIDENCE_BUCKETS - 1, out=bucket)
    # times ascend, so each bucket is one contiguous run of samples
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    sizes = np.diff(np.r_[starts, t.size])
    owner = np.repeat(np.arange(starts.size), sizes)
    chosen = [starts, starts + sizes - 1]
    for extreme in (np.minimum, np.maximum):
        at = np.flatnonzero(v == np.repeat(extreme.reduceat(v, starts), sizes))
        # the first sample of each bucket at its extreme
        chosen.append(at[np.r_[True, owner[at][1:] != owner[at][:-1]]])
    drops = np.flatnonzero(np.diff(v) < 0)
    if drops.size <= EVIDENCE_RESETS:
        chosen += [drops, drops + 1]
    kept = np.zeros(t.size, dtype=np.bool_)
    for indices in chosen:
        kept[indices] = True
    return kept


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

    @classmethod
    def from_json(cls, document: object, *, source: str = "verdict", key: str = "") -> Result:
        """The result of :meth:`to_json` read back (without its evidence, which the JSON does
        not hold). A malformed document is a SourceError naming ``source`` and the key."""
        item = _Reader(document, source, key)
        subject = item.mapping("subject")
        for name, value in subject.items():
            if not isinstance(value, str):
                raise item.error(f"subject.{name}", f"expected a string, got {value!r}")
        result = cls(
            rule=item.string("rule"),
            kind=item.string("kind"),
            subject=cast("dict[str, str]", subject),
            status=item.choice("status", STATUSES),
            figure=item.optional_number("figure"),
            unit=item.string("unit"),
            threshold=item.number("threshold"),
            comparison=item.string("comparison"),
            reason=item.string("reason"),
            details=item.mapping("details"),
        )
        return result


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
        return exit_code_of(self.verdict)

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

    @classmethod
    def from_json(cls, document: object, *, source: str = "verdict") -> Report:
        """The report of :meth:`to_json` (``soak-analyze --format json``) read back into the same
        types. A malformed document -- another schema, a missing or mistyped key, a verdict
        that its results contradict -- is a SourceError naming ``source`` and the key path."""
        top = _Reader(document, source, "")
        schema = top.string("schema")
        if schema != SCHEMA:
            raise top.error("schema", f"expected {SCHEMA!r}, got {schema!r}")
        time_range = top.reader("range")
        rules = top.reader("rules")
        results = top.list("results")
        report = cls(
            start=time_range.number("start"),
            end=time_range.number("end"),
            source=top.string("source"),
            rules_source=rules.string("source"),
            rules_version=rules.integer("version"),
            results=[
                Result.from_json(item, source=source, key=f"results[{index}]")
                for index, item in enumerate(results)
            ],
            generated_at=top.number("generated_at"),
            selector=top.optional_string("selector"),
        )
        verdict = top.string("verdict")
        if verdict != report.verdict:
            raise top.error(
                "verdict", f"{verdict!r} contradicts its results, which make {report.verdict!r}"
            )
        return report


Choice = TypeVar("Choice", bound=str)


class _Reader:
    """One mapping of a JSON document being read back, with the key path that leads to it."""

    def __init__(self, document: object, source: str, path: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(document, Mapping):
            raise SourceError(f"{self._where(None)}expected an object, got {_kind(document)}")
        self.data: Mapping[str, object] = document

    def _where(self, key: str | None) -> str:
        path = ".".join(part for part in (self.path, key) if part)
        return f"{self.source}: {path}: " if path else f"{self.source}: "

    def error(self, key: str, message: str) -> SourceError:
        return SourceError(f"{self._where(key)}{message}")

    def _value(self, key: str, optional: bool) -> object:
        if key not in self.data:
            raise self.error(key, "missing")
        value = self.data[key]
        if value is None and not optional:
            raise self.error(key, "expected a value, got null")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self._value(key, True)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        return value

    def string(self, key: str) -> str:
        value = self._value(key, False)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        return value

    def choice(self, key: str, choices: tuple[Choice, ...]) -> Choice:
        value = self.string(key)
        for choice in choices:
            if value == choice:
                return choice
        raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}")

    def optional_number(self, key: str) -> float | None:
        value = self._value(key, True)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"expected a number, got {_kind(value)}")
        return float(value)

    def number(self, key: str) -> float:
        value = self.optional_number(key)
        if value is None:
            raise self.error(key, "expected a number, got null")
        return value

    def integer(self, key: str) -> int:
        value = self._value(key, False)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected a whole number, got {_kind(value)}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._value(key, False)
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected an object, got {_kind(value)}")
        return {str(k): v for k, v in value.items()}

    def reader(self, key: str) -> _Reader:
        return _Reader(self.mapping(key), self.source, ".".join(p for p in (self.path, key) if p))

    def list(self, key: str) -> list[object]:
        value = self._value(key, False)
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_kind(value)}")
        return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), repr(value)
    )


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
