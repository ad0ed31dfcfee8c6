"""Thresholds: pass/fail criteria of a load run, one grammar for the config and the command line.

    [SCENARIO:]STAT OP VALUE          p95<200ms   http_ok:error_ratio<0.01   rate>=90/s

STAT is ``p50``, ``p90``, ``p95``, ``p99`` or ``max`` (latency, from the time each operation was
due; VALUE with a unit: ``us``, ``ms`` or ``s``), ``error_ratio`` (errors / completed, a number
from 0 to 1 or a percentage: ``1%``) or ``rate`` (achieved operations per second: ``90``,
``90/s``, ``600/min``); OP is ``<``, ``<=``, ``>`` or ``>=``. Without a scenario a threshold
applies to every scenario (a result for each). Thresholds are evaluated on the summary at the
end; one with ``abort_on_fail`` is also evaluated during the run, once its ``abort_grace`` has
passed since the start, and a breach stops the run (k6's ``abortOnFail`` / ``delayAbortEval``).

Every run also has the implicit threshold ``error_ratio<1`` over all its operations: a run in
which every operation failed never passes."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from soakwatch.durations import parse_rate

__all__ = [
    "IMPLICIT",
    "LATENCY_STATS",
    "STATS",
    "Threshold",
    "breached",
    "describe",
    "evaluate",
    "parse_threshold",
]

LATENCY_STATS = ("p50", "p90", "p95", "p99", "max")
STATS = (*LATENCY_STATS, "error_ratio", "rate")
_OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_GRAMMAR = re.compile(
    r"^\s*(?:(?P<scenario>[^:<>=]*?)\s*:)?\s*(?P<stat>[^\s<>=:]*)\s*(?P<op><=|>=|<|>|=+|!=)?"
    r"\s*(?P<value>.*?)\s*$",
    re.DOTALL,
)
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_HELP = "expected [SCENARIO:]STAT OP VALUE, e.g. 'p95<200ms' or 'http:error_ratio<0.01'"


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold. ``value`` is in seconds for latencies, per second for ``rate``."""

    text: str  # as written, for the summary and messages
    stat: str
    op: str
    value: float
    scenario: str | None = None  # None: every scenario
    abort_on_fail: bool = False
    abort_grace_seconds: float = 0.0

    def holds(self, observed: float) -> bool:
        return _OPS[self.op](observed, self.value)


IMPLICIT = Threshold(text="error_ratio<1", stat="error_ratio", op="<", value=1.0)


def parse_threshold(text: Any) -> Threshold:
    """A threshold from its text; ValueError with the reason (the caller names the key)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a threshold string ({_HELP}), got {type(text).__name__}")
    found = _GRAMMAR.match(text)
    assert found is not None  # the pattern matches any text
    scenario, stat, op, value = found.group("scenario", "stat", "op", "value")
    if not text.strip():
        raise ValueError(f"empty threshold: {_HELP}")
    if scenario is not None and not scenario:
        raise ValueError(f"{text!r}: the scenario before ':' is empty")
    if stat not in STATS:
        known = ", ".join(STATS)
        raise ValueError(f"{text!r}: unknown statistic {stat!r} (one of {known})")
    if op is None:
        raise ValueError(f"{text!r}: no operator (use <, <=, > or >=)")
    if op not in _OPS:
        raise ValueError(f"{text!r}: unknown operator {op!r} (use <, <=, > or >=)")
    if not value:
        raise ValueError(f"{text!r}: no value after {op!r}")
    return Threshold(
        text=text.strip(), stat=stat, op=op, value=_value(text, stat, value), scenario=scenario
    )


def _value(text: str, stat: str, value: str) -> float:
    number = _NUMBER.match(value)
    rest = value[number.end() :].strip() if number else value
    if stat in LATENCY_STATS:
        if number is None or rest not in _UNITS:
            raise ValueError(
                f"{text!r}: a latency needs a number and a unit (us, ms or s), got {value!r}"
            )
        seconds = float(number.group(0)) * _UNITS[rest]
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{text!r}: a latency cannot be negative, got {value!r}")
        return seconds
    if stat == "error_ratio":
        if number is None or rest not in ("", "%"):
            raise ValueError(f"{text!r}: error_ratio is a number from 0 to 1 or a %, got {value!r}")
        ratio = float(number.group(0)) / (100.0 if rest == "%" else 1.0)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"{text!r}: error_ratio is between 0 and 1 (0% and 100%)")
        return ratio
    try:
        per_second = parse_rate(value)
    except ValueError:
        raise ValueError(
            f"{text!r}: rate is operations per second, e.g. 90 or 90/s or 600/min"
        ) from None
    if per_second < 0:
        raise ValueError(f"{text!r}: a rate cannot be negative")
    return per_second


# -- evaluation ---------------------------------------------------------------------------------
def _observed(stat: str, part: Mapping[str, Any]) -> float | None:
    """The value of ``stat`` in a scenario's (or the totals') part of the summary; None: no
    observation (no latency recorded, nothing completed)."""
    if stat in LATENCY_STATS:
        value = part["latency_seconds"].get(stat)
        return None if value is None else float(value)
    if stat == "error_ratio":
        completed = part.get("completed", part.get("operations", 0))
        return float(part["error_ratio"]) if completed else None
    rate = part.get("achieved_rate_per_second")
    return None if rate is None else float(rate)


def evaluate(
    thresholds: Sequence[Threshold], summary: Mapping[str, Any], *, implicit: bool = True
) -> list[dict[str, Any]]:
    """One result per threshold and scenario it applies to, then the implicit one over the run:
    ``{"threshold", "scenario", "stat", "value", "limit", "status"}`` where ``status`` is
    ``ok``, ``breached`` or ``no_data`` (nothing to judge by: not a breach). ``value`` is in the
    threshold's own unit family (seconds, ratio, per second)."""
    results: list[dict[str, Any]] = []
    scenarios: Mapping[str, Any] = summary["scenarios"]
    for threshold in thresholds:
        names: Iterable[str] = (threshold.scenario,) if threshold.scenario else scenarios
        for name in names:
            part = scenarios.get(name)
            if part is None or part.get("skipped"):
                continue
            results.append(_result(threshold, name, _observed(threshold.stat, part)))
    if implicit:
        totals = summary["totals"]
        observed = float(totals["error_ratio"]) if totals["operations"] else None
        results.append({**_result(IMPLICIT, None, observed), "implicit": True})
    return results


def _result(threshold: Threshold, scenario: str | None, observed: float | None) -> dict[str, Any]:
    status = "no_data"
    if observed is not None:
        status = "ok" if threshold.holds(observed) else "breached"
    return {
        "threshold": threshold.text,
        "scenario": scenario,
        "stat": threshold.stat,
        "value": observed,
        "limit": threshold.value,
        "status": status,
    }


def breached(results: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [result for result in results if result["status"] == "breached"]


def describe(result: Mapping[str, Any]) -> str:
    """``http: p95<200ms: p95=312.4ms breached`` (the run's implicit one: ``run: ...``)."""
    value = result["value"]
    stat = result["stat"]
    if value is None:
        shown = "no data"
    elif stat in LATENCY_STATS:
        shown = f"{stat}={value * 1000:.1f}ms"
    elif stat == "rate":
        shown = f"rate={value:.1f}/s"
    else:
        shown = f"error_ratio={value:.4g}"
    where = result["scenario"] if result["scenario"] is not None else "run"
    return f"{where}: {result['threshold']}: {shown} {result['status']}"


def check_scenarios(thresholds: Sequence[Threshold], names: Iterable[str]) -> Threshold | None:
    """The first threshold naming a scenario not in ``names`` (None: all are known)."""
    known = set(names)
    for threshold in thresholds:
        if threshold.scenario is not None and threshold.scenario not in known:
            return threshold
    return None
