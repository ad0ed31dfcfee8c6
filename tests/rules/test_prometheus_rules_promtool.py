"""`promtool test rules` on the committed generated rules (rules/prometheus/soak.rules.yaml), with
the production windows: every alert fires on a series that breaks its rule and stays silent on
one that does not, sawtooth, warm-up and restarts included.

The promtool unit-test files are built here from small builder functions (series as plain lists,
so a GC sawtooth is one line of Python) and written to a temporary folder; promtool evaluates them.
Firing is checked on the ALERTS series (exact labels, without the annotation texts); silence with
an ``alert_rule_test`` that expects no alert at all.

The same groups make the committed promtool test file
(rules/prometheus/tests/soak.rules.test.yaml); a test only compares it, never writes it:
``.venv/bin/python tests/rules/regenerate.py`` rewrites it after a change of the rules or the
scenarios.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from soakwatch.rules.alerting import absent_for_seconds, alert_name, fast_lived_seconds
from soakwatch.rules.model import Rule, load_rules

REPO = Path(__file__).resolve().parents[2]
RULES_FILE = REPO / "rules" / "prometheus" / "soak.rules.yaml"
COMMITTED_TESTS = REPO / "rules" / "prometheus" / "tests" / "soak.rules.test.yaml"
REGENERATE = ".venv/bin/python tests/rules/regenerate.py"
# The tests that run promtool skip without it, and fail under CI (tests/servers.py).
needs_promtool = pytest.mark.requires_binary("promtool", "prometheus")

MB = 1e6


# -- builders -----------------------------------------------------------------------------------
def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


STALE = float("nan")  # a staleness marker: the series vanished (a failed scrape writes them)


def expanding_notation(values: Sequence[float | None]) -> str:
    """``values`` in promtool's notation, runs with a constant step as ``a+bxn`` (a, a+b, …,
    a+n·b), so a committed test file stays readable: a GC tooth is one term. ``None`` is a
    minute without a sample (``_``), :data:`STALE` a staleness marker (``stale``)."""
    terms, i = [], 0
    while i < len(values):
        first = values[i]
        if first is None or first != first:  # None or NaN (STALE)
            terms.append("_" if first is None else "stale")
            i += 1
            continue
        j = i + 1
        if j < len(values) and values[j] is not None and values[j] == values[j]:
            step = values[j] - first  # type: ignore[operator]
            while (
                j + 1 < len(values)
                and values[j + 1] is not None
                and values[j + 1] == values[j + 1]
                and values[j + 1] - values[j] == step  # type: ignore[operator]
            ):
                j += 1
            if j - i >= 2:
                sign = "+" if step >= 0 else "-"
                terms.append(f"{_number(first)}{sign}{_number(abs(step))}x{j - i}")
                i = j + 1
                continue
        terms.append(_number(first))
        i += 1
    return " ".join(terms)


def series(name: str, labels: dict[str, str], values: Sequence[float | None]) -> dict[str, str]:
    """One input series sampled every minute."""
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": expanding_notation(values)}


def sawtooth(
    minutes: int, *, base: float, amplitude: float, period: int, slope_per_hour: float = 0.0
) -> list[float]:
    """Memory under a garbage collector: climbs for ``period`` minutes, drops back, repeat; the
    troughs rise by ``slope_per_hour`` (a leak) or stay put (healthy)."""
    return [
        base + slope_per_hour * t / 60 + amplitude * (t % period) / (period - 1)
        for t in range(minutes + 1)
    ]


def counter(minutes: int, per_minute: Callable[[int], float]) -> list[float]:
    """A counter whose increase in minute ``t`` is ``per_minute(t)``."""
    total, out = 0.0, []
    for t in range(minutes + 1):
        out.append(total)
        total += per_minute(t)
    return out


def constant(minutes: int, value: float) -> list[float]:
    return [value] * (minutes + 1)


def step(minutes: int, before: float, after: float, at: int) -> list[float]:
    return [before if t < at else after for t in range(minutes + 1)]


def histogram(
    name: str, labels: dict[str, str], minutes: int, per_minute: Callable[[int], dict[str, float]]
) -> list[dict[str, str]]:
    """Bucket and count series of a histogram; ``per_minute(t)`` gives the cumulative bucket
    counts (by ``le``) of the requests in minute ``t``."""
    les = list(per_minute(0))
    buckets = [
        series(
            f"{name}_bucket",
            {**labels, "le": le},
            counter(minutes, lambda t, le=le: per_minute(t)[le]),
        )
        for le in les
    ]
    count = series(f"{name}_count", labels, counter(minutes, lambda t: per_minute(t)["+Inf"]))
    return [*buckets, count]


@dataclass(frozen=True)
class Check:
    alertname: str
    minute: int
    firing: bool
    labels: dict[str, str] | None = None  # the alert's labels (firing checks)


def fires(alertname: str, minute: int, **labels: str) -> Check:
    return Check(alertname, minute, True, labels)


def silent(alertname: str, *minutes: int) -> list[Check]:
    return [Check(alertname, minute, False) for minute in minutes]


def _alerts_selector(alertname: str, labels: dict[str, str]) -> str:
    every = {"alertname": alertname, "alertstate": "firing", **labels}
    return "ALERTS{" + ",".join(f'{k}="{v}"' for k, v in sorted(every.items())) + "}"


def promtool_group(
    name: str, input_series: list[dict[str, str]], checks: list[Check]
) -> dict[str, Any]:
    """One promtool test group: the series, silence checks on alerts, firing checks on ALERTS."""
    alert_tests = [
        {"eval_time": f"{c.minute}m", "alertname": c.alertname, "exp_alerts": []}
        for c in checks
        if not c.firing
    ]
    expr_tests = [
        {
            "expr": f'ALERTS{{alertname="{c.alertname}",alertstate="firing"}}',
            "eval_time": f"{c.minute}m",
            "exp_samples": [{"labels": _alerts_selector(c.alertname, c.labels or {}), "value": 1}],
        }
        for c in checks
        if c.firing
    ]
    test: dict[str, Any] = {"name": name, "interval": "1m", "input_series": input_series}
    if alert_tests:
        test["alert_rule_test"] = alert_tests
    if expr_tests:
        test["promql_expr_test"] = expr_tests
    return test


def unit_test_file(
    groups: list[dict[str, Any]], rule_file: str = str(RULES_FILE)
) -> dict[str, Any]:
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": groups}


def run_promtool(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "unit.test.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- scenarios ----------------------------------------------------------------------------------
# memory_growth: judged once a process has lived warm-up + range + window, and fires `for:`
# later. The timeline is read from the rule, so a change of its windows moves the checks along.
def _memory_rule() -> Rule:
    rule: Rule = load_rules().rules["memory_growth"]
    return rule


def _minutes(seconds: float) -> int:
    return int(seconds // 60)


MEMORY = _memory_rule()
LIVED = _minutes(MEMORY.warmup_seconds + MEMORY.alert.range_seconds + MEMORY.window_seconds)
FIRES = LIVED + _minutes(MEMORY.alert.for_seconds)  # the earliest minute it may fire
API = {"service": "api"}
RSS = "soak_process_resident_memory_bytes"
START = "soak_process_start_time_seconds"
RESTARTS = "soak_process_restarts_total"
GROWTH_LABELS = {"service": "api", "severity": "warning", "soak_rule": "memory_growth"}


def leaking(minutes: int) -> list[float]:
    """12 MB/h under a 30 MB GC sawtooth of 7 minutes (the limit is 2 MB/h)."""
    return sawtooth(minutes, base=200 * MB, amplitude=30 * MB, period=7, slope_per_hour=12 * MB)


def memory_leak_under_sawtooth() -> tuple[list[dict[str, str]], list[Check]]:
    m = FIRES + 40
    return (
        [series(RSS, API, leaking(m)), series(START, API, constant(m, 0))],
        [
            # Nothing before the process has lived long enough plus `for:`.
            *silent("SoakMemoryGrowth", 60, LIVED - 5, FIRES - 5),
            fires("SoakMemoryGrowth", FIRES + 5, **GROWTH_LABELS),
            fires("SoakMemoryGrowth", m, **GROWTH_LABELS),
        ],
    )


def healthy_sawtooth() -> tuple[list[dict[str, str]], list[Check]]:
    m = FIRES + 100
    rss = sawtooth(m, base=200 * MB, amplitude=30 * MB, period=7)
    return (
        [series(RSS, API, rss), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowth", 100, FIRES, FIRES + 50, m),
    )


def slow_growth_below_the_threshold() -> tuple[list[dict[str, str]], list[Check]]:
    m = FIRES + 100
    rss = sawtooth(m, base=200 * MB, amplitude=30 * MB, period=7, slope_per_hour=0.6 * MB)
    return (
        [series(RSS, API, rss), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowth", FIRES, FIRES + 50, m),
    )


def memory_warm_up() -> tuple[list[dict[str, str]], list[Check]]:
    # +300 MB in the first 5 minutes (imports, caches), flat afterwards: judged without the
    # warm-up gate, the slope over a range that holds the climb would fire from ~70 min on.
    m = FIRES + 100
    flat = sawtooth(m, base=300 * MB, amplitude=30 * MB, period=7)
    rss = [min(t * 60 * MB, flat[t]) if t < 5 else flat[t] for t in range(m + 1)]
    return (
        [series(RSS, API, rss), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowth", 70, 100, LIVED - 10, FIRES + 10, m),
    )


def leak_then_restart() -> tuple[list[dict[str, str]], list[Check]]:
    # Leaking and firing; then restarted: the new process is judged afresh.
    restart = FIRES + 10
    m = restart + 90
    return (
        [
            series(RSS, API, leaking(restart - 1) + leaking(m - restart)),
            series(START, API, step(m, 0, restart * 60, restart)),
            series(RESTARTS, API, step(m, 0, 1, restart)),
        ],
        [
            fires("SoakMemoryGrowth", restart - 5, **GROWTH_LABELS),
            *silent("SoakMemoryGrowth", restart + 2, restart + 40, m),
            fires(
                "SoakRestarts",
                restart + 2,
                service="api",
                severity="critical",
                soak_rule="restarts",
            ),
            *silent("SoakRestarts", restart - 5, restart + 30),
        ],
    )


def restart_seen_only_by_start_time() -> tuple[list[dict[str, str]], list[Check]]:
    m = 60
    return (
        [series(START, API, step(m, 0, 1800, 30)), series(RESTARTS, API, constant(m, 0))],
        [
            *silent("SoakRestarts", 29, 50),
            fires("SoakRestarts", 31, service="api", severity="critical", soak_rule="restarts"),
        ],
    )


def steady_process_never_restarts() -> tuple[list[dict[str, str]], list[Check]]:
    m = 60
    return (
        [series(START, API, constant(m, 0)), series(RESTARTS, API, constant(m, 0))],
        silent("SoakRestarts", 10, 30, 60),
    )


# SoakMemoryGrowthFast: the lowest slope of the troughs over one window (10m) during the last
# half window, at least FAST_FACTOR x the threshold, once the process has lived warm-up + window
# + range + hold (40 min with the packaged 15 min warm-up). The bound: a leak at 10x the
# threshold that starts after a warm-up settled within 15 minutes fires within 30 minutes.
FAST_LIVED = _minutes(fast_lived_seconds(MEMORY))
FAST_LABELS = {"service": "api", "severity": "critical", "soak_rule": "memory_growth"}
TEN_TIMES = 10 * MEMORY.threshold_base  # bytes/hour
WARM_UP_SETTLED = 15  # minute


def warm_up_then(
    minutes: int, *, leak_from: int | None, per_hour: float = TEN_TIMES
) -> list[float]:
    """+200 MB during the first 12 minutes (imports, caches), settled by minute 15, under a
    30 MB GC sawtooth of 7 minutes; from ``leak_from`` on the troughs rise by ``per_hour``."""
    out = []
    for t in range(minutes + 1):
        ramp = 200 * MB * min(t, 12) / 12
        leak = per_hour * max(0, t - leak_from) / 60 if leak_from is not None else 0.0
        out.append(100 * MB + ramp + leak + 30 * MB * (t % 7) / 6)
    return out


def fast_leak_at_ten_times_after_warm_up() -> tuple[list[dict[str, str]], list[Check]]:
    leak_from = WARM_UP_SETTLED
    m = leak_from + 60
    assert leak_from + 30 - 2 >= FAST_LIVED, "the gate alone would miss the 30 minute bound"
    return (
        [
            series(RSS, API, warm_up_then(m, leak_from=leak_from)),
            series(START, API, constant(m, 0)),
        ],
        [
            *silent("SoakMemoryGrowthFast", 10, 20, 30, FAST_LIVED - 1),
            # Within 30 minutes of the leak's start, and on from there.
            fires("SoakMemoryGrowthFast", leak_from + 28, **FAST_LABELS),
            fires("SoakMemoryGrowthFast", leak_from + 30, **FAST_LABELS),
            fires("SoakMemoryGrowthFast", m, **FAST_LABELS),
            # The slow alert has not judged yet: that is why the fast one exists.
            *silent("SoakMemoryGrowth", leak_from + 30, m),
        ],
    )


def fast_leak_starting_late_in_the_run() -> tuple[list[dict[str, str]], list[Check]]:
    leak_from = 80
    m = leak_from + 45
    return (
        [
            series(RSS, API, warm_up_then(m, leak_from=leak_from)),
            series(START, API, constant(m, 0)),
        ],
        [
            *silent("SoakMemoryGrowthFast", 45, 70, leak_from, leak_from + 10),
            fires("SoakMemoryGrowthFast", leak_from + 28, **FAST_LABELS),
        ],
    )


def fast_alert_silent_on_the_warm_up_ramp() -> tuple[list[dict[str, str]], list[Check]]:
    m = 180
    return (
        [series(RSS, API, warm_up_then(m, leak_from=None)), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowthFast", 5, 12, 20, 30, FAST_LIVED, FAST_LIVED + 1, 60, 120, m),
    )


def irregular_healthy_sawtooth(minutes: int) -> list[float]:
    """A healthy collector as it looks: teeth of 5 to 9 minutes and 20 to 40 MB, troughs that
    land anywhere within 1.5 MB above the live set (seeded: the same file every time)."""
    import random

    rng = random.Random(15)
    out: list[float] = []
    while len(out) <= minutes:
        period, amplitude = rng.randint(5, 9), rng.uniform(20, 40) * MB
        trough = 300 * MB + rng.uniform(0, 1.5 * MB)
        out.extend(trough + amplitude * k / (period - 1) for k in range(period))
    return [round(v) for v in out[: minutes + 1]]


def fast_alert_silent_on_a_healthy_sawtooth() -> tuple[list[dict[str, str]], list[Check]]:
    m = 240
    return (
        [series(RSS, API, irregular_healthy_sawtooth(m)), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowthFast", *range(FAST_LIVED, m + 1, 5)),
    )


def fast_alert_silent_on_a_flat_series() -> tuple[list[dict[str, str]], list[Check]]:
    m = 120
    return (
        [series(RSS, API, constant(m, 250 * MB)), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowthFast", 30, FAST_LIVED + 1, 90, m),
    )


def fast_alert_silent_on_a_leak_at_twice_the_threshold() -> tuple[
    list[dict[str, str]], list[Check]
]:
    # 4 MB/h: the slow alert's business (hours), not a page within the CI run.
    m = 180
    rss = warm_up_then(m, leak_from=WARM_UP_SETTLED, per_hour=2 * MEMORY.threshold_base)
    return (
        [series(RSS, API, rss), series(START, API, constant(m, 0))],
        silent("SoakMemoryGrowthFast", FAST_LIVED + 1, 60, 120, m),
    )


# Absence: the exporter stops (its target is down, the series get staleness markers) or the
# watched process is gone (the exporter is up, the series vanish), while a run is in progress.
EXPORTER = {"job": "soak-exporter", "instance": "exporter:9464"}
WATCHED = {**API, **EXPORTER}
RUN = {"run_id": "r-15", "profile": "ci"}
ABSENT_FOR = _minutes(absent_for_seconds(MEMORY))
DOWN_LABELS = {**WATCHED, "run_id": "r-15", "severity": "critical", "soak_rule": "memory_growth"}


def present_until(minutes: int, stop: int, value: float) -> list[float]:
    return [value if t < stop else STALE if t == stop else None for t in range(minutes + 1)]  # type: ignore[misc]  # None: no sample


def exporter_stops_during_a_run() -> tuple[list[dict[str, str]], list[Check]]:
    stop, m = 30, 60
    return (
        [
            series(RSS, WATCHED, present_until(m, stop, 300 * MB)),
            series(START, WATCHED, present_until(m, stop, 0)),
            series("up", EXPORTER, step(m, 1, 0, stop)),
            series("soak_run_info", RUN, constant(m, 1)),
        ],
        [
            *silent("SoakExporterDown", 10, stop - 1, stop + ABSENT_FOR - 1),
            *silent("SoakMemoryGrowthAbsent", 10, stop - 1, stop + ABSENT_FOR - 1),
            fires("SoakExporterDown", stop + ABSENT_FOR, **DOWN_LABELS),
            fires("SoakMemoryGrowthAbsent", stop + ABSENT_FOR, **DOWN_LABELS),
            fires("SoakExporterDown", m, **DOWN_LABELS),  # not resolved: no good news
        ],
    )


def watched_process_gone_while_the_exporter_runs() -> tuple[list[dict[str, str]], list[Check]]:
    stop, m = 30, 60
    return (
        [
            series(RSS, WATCHED, present_until(m, stop, 300 * MB)),
            series("up", EXPORTER, constant(m, 1)),
            series("soak_run_info", RUN, constant(m, 1)),
        ],
        [
            fires("SoakMemoryGrowthAbsent", stop + ABSENT_FOR + 1, **DOWN_LABELS),
            *silent("SoakExporterDown", stop + ABSENT_FOR + 1, m),
        ],
    )


def exporter_stops_after_the_run() -> tuple[list[dict[str, str]], list[Check]]:
    # The run (soak_run_info) ended at minute 20; the exporter stopping at 30 is no finding.
    stop, m = 30, 60
    return (
        [
            series(RSS, WATCHED, present_until(m, stop, 300 * MB)),
            series("up", EXPORTER, step(m, 1, 0, stop)),
            series("soak_run_info", RUN, present_until(m, 20, 1)),
        ],
        [
            *silent("SoakExporterDown", stop + ABSENT_FOR + 1, m),
            *silent("SoakMemoryGrowthAbsent", stop + ABSENT_FOR + 1, m),
        ],
    )


def _rule(name: str) -> Rule:
    rule: Rule = load_rules().rules[name]
    return rule


def gate_and_for(rule: Rule) -> tuple[int, int]:
    """(minute from which the range lies after the warm-up, minute it may fire from)."""
    age = _minutes(rule.warmup_seconds + rule.alert.range_seconds)
    return age, age + _minutes(rule.alert.for_seconds)


# gc_efficiency: ratio >= 0.3 over the range after the warm-up.
GC = _rule("gc_efficiency")
COLLECTED = "soak_gc_collected_objects_total"
EXAMINED = "soak_gc_examined_objects_total"


def gc_inefficient() -> tuple[list[dict[str, str]], list[Check]]:
    gate, earliest = gate_and_for(GC)
    m = earliest + 25
    return (
        [
            series(COLLECTED, API, counter(m, lambda t: 100)),
            series(EXAMINED, API, counter(m, lambda t: 1000)),
        ],
        [
            *silent("SoakGcEfficiency", gate - 5, earliest - 5),
            fires(
                "SoakGcEfficiency",
                earliest + 5,
                service="api",
                severity="warning",
                soak_rule="gc_efficiency",
            ),
        ],
    )


def gc_efficient_after_a_costly_warm_up() -> tuple[list[dict[str, str]], list[Check]]:
    # During the warm-up the collector examines much and frees little (imports build long-lived
    # objects): over a range that held it, the ratio would fail.
    warm_up = _minutes(GC.warmup_seconds)
    gate, earliest = gate_and_for(GC)
    m = earliest + 55
    return (
        [
            series(COLLECTED, API, counter(m, lambda t: 0 if t < warm_up else 500)),
            series(EXAMINED, API, counter(m, lambda t: 10000 if t < warm_up else 1000)),
        ],
        silent("SoakGcEfficiency", 40, gate - 5, gate + 25, earliest, m),
    )


# pool_variation: coefficient of variation < 5 % over the range after the warm-up.
POOLS = _rule("pool_variation")
POOL = "soak_pool_connections"
POOL_SUBJECT = {"service": "api", "pool": "postgres"}
POOL_LABELS = {**POOL_SUBJECT, "state": "established"}


def pool_steady_after_ramp_up() -> tuple[list[dict[str, str]], list[Check]]:
    # The pool opens its 10 connections one a minute during the warm-up.
    ramp = _minutes(POOLS.warmup_seconds)
    gate, earliest = gate_and_for(POOLS)
    m = earliest + 50
    return (
        [series(POOL, POOL_LABELS, [min(t, ramp) for t in range(m + 1)])],
        silent("SoakPoolVariation", gate - 20, gate + 10, earliest + 20, m),
    )


def close_wait_flicker(minutes: int) -> list[float | None]:
    """The sidecar publishes close_wait only while non-zero: 1 or 2 sockets during 2 minutes of
    every 4, absent otherwise (often enough that the series is never stale, so judged on its
    own it would vary by about 30 %)."""
    return [float(1 + (t // 4) % 2) if t % 4 < 2 else None for t in range(minutes + 1)]


def pool_leaking_connections() -> tuple[list[dict[str, str]], list[Check]]:
    # After the warm-up one more established connection every minute, never given back; the
    # flickering close_wait beside it does not hide the growth.
    ramp = _minutes(POOLS.warmup_seconds)
    gate, earliest = gate_and_for(POOLS)
    m = earliest + 50
    return (
        [
            series(POOL, POOL_LABELS, [min(t, ramp) + max(0, t - ramp) for t in range(m + 1)]),
            series(POOL, {**POOL_SUBJECT, "state": "close_wait"}, close_wait_flicker(m)),
        ],
        [
            *silent("SoakPoolVariation", gate - 10, earliest - 5),
            fires(
                "SoakPoolVariation",
                earliest + 5,
                **POOL_SUBJECT,
                severity="warning",
                soak_rule="pool_variation",
            ),
        ],
    )


def pool_alert_stays_silent_when_only_close_wait_flickers() -> tuple[
    list[dict[str, str]], list[Check]
]:
    # 10 established connections throughout, close_wait flickering beside them.
    gate, earliest = gate_and_for(POOLS)
    m = earliest + 50
    return (
        [
            series(POOL, POOL_LABELS, constant(m, 10)),
            series(POOL, {**POOL_SUBJECT, "state": "close_wait"}, close_wait_flicker(m)),
        ],
        silent("SoakPoolVariation", gate - 10, gate + 10, earliest + 20, m),
    )


def pool_in_use_and_idle_trade_places_under_load() -> tuple[list[dict[str, str]], list[Check]]:
    # An in-process pool of 10: load moves connections between in_use and idle, the size stays.
    gate, earliest = gate_and_for(POOLS)
    m = earliest + 50
    busy = [float(t % 10) for t in range(m + 1)]
    return (
        [
            series(POOL, {**POOL_SUBJECT, "state": "in_use"}, busy),
            series(POOL, {**POOL_SUBJECT, "state": "idle"}, [10 - b for b in busy]),
        ],
        silent("SoakPoolVariation", gate - 10, gate + 10, earliest + 20, m),
    )


# latency_degradation: p95 of the last window against the first window after the warm-up.
LATENCY_RULE = _rule("latency_degradation")
LATENCY_WARM_UP = _minutes(LATENCY_RULE.warmup_seconds)
LATCHED = LATENCY_WARM_UP + _minutes(LATENCY_RULE.window_seconds)  # the baseline is set then
DEGRADES = LATCHED + 20
LATENCY = "soak_load_request_duration_seconds"
HELLO = {"scenario": "hello"}
SLOW_START = {"0.1": 0.0, "0.25": 20.0, "0.5": 80.0, "1": 100.0, "+Inf": 100.0}
FAST = {"0.1": 90.0, "0.25": 100.0, "0.5": 100.0, "1": 100.0, "+Inf": 100.0}
DEGRADED = {"0.1": 50.0, "0.25": 80.0, "0.5": 100.0, "1": 100.0, "+Inf": 100.0}


def slow_then(t: int, later: dict[str, float]) -> dict[str, float]:
    return SLOW_START if t < LATENCY_WARM_UP else later


def latency_steady_after_slow_warm_up() -> tuple[list[dict[str, str]], list[Check]]:
    m = LATCHED + 140
    return (
        histogram(LATENCY, HELLO, m, lambda t: slow_then(t, FAST)),
        silent("SoakLatencyDegradation", 30, LATCHED + 20, LATCHED + 50, LATCHED + 80, m),
    )


def degrading(t: int) -> dict[str, float]:
    return slow_then(t, FAST if t < DEGRADES else DEGRADED)


def latency_degrading_after_an_hour() -> tuple[list[dict[str, str]], list[Check]]:
    # The warm-up is slow too: the baseline must come from after it, or nothing would fire.
    fires_by = DEGRADES + _minutes(LATENCY_RULE.window_seconds + LATENCY_RULE.alert.for_seconds)
    m = fires_by + 10
    return (
        histogram(LATENCY, HELLO, m, degrading),
        [
            *silent("SoakLatencyDegradation", DEGRADES - 10, DEGRADES + 2),
            fires(
                "SoakLatencyDegradation",
                fires_by,
                scenario="hello",
                severity="warning",
                soak_rule="latency_degradation",
            ),
        ],
    )


# min_increase: the change must also be at least this many seconds. Millisecond buckets, so
# p95 can rise by far more than the relative threshold while staying a few milliseconds.
FLOOR = LATENCY_RULE.min_increase_seconds
QUICK = {"0.002": 100.0, "0.005": 100.0, "0.05": 100.0, "0.1": 100.0, "+Inf": 100.0}
JITTERY = {"0.002": 0.0, "0.005": 100.0, "0.05": 100.0, "0.1": 100.0, "+Inf": 100.0}
SLUGGISH = {"0.002": 0.0, "0.005": 0.0, "0.05": 100.0, "0.1": 100.0, "+Inf": 100.0}


def latency_rises_a_lot_in_percent_but_only_milliseconds() -> tuple[
    list[dict[str, str]], list[Check]
]:
    # p95 1.9 ms -> 4.85 ms: +155 %, far past the threshold, but +2.95 ms is below the floor.
    assert FLOOR > 0.00295
    m = DEGRADES + _minutes(LATENCY_RULE.window_seconds + LATENCY_RULE.alert.for_seconds) + 30
    return (
        histogram(LATENCY, HELLO, m, lambda t: QUICK if t < DEGRADES else JITTERY),
        silent("SoakLatencyDegradation", DEGRADES + 10, DEGRADES + 40, DEGRADES + 70, m),
    )


def latency_rises_by_tens_of_milliseconds() -> tuple[list[dict[str, str]], list[Check]]:
    # p95 1.9 ms -> 47.75 ms: past the threshold and the floor; the same timeline fires.
    fires_by = DEGRADES + _minutes(LATENCY_RULE.window_seconds + LATENCY_RULE.alert.for_seconds)
    m = fires_by + 10
    return (
        histogram(LATENCY, HELLO, m, lambda t: QUICK if t < DEGRADES else SLUGGISH),
        [
            *silent("SoakLatencyDegradation", DEGRADES - 10),
            fires(
                "SoakLatencyDegradation",
                fires_by,
                scenario="hello",
                severity="warning",
                soak_rule="latency_degradation",
            ),
        ],
    )


# error_ratio: range 15m, for 5m, ratio <= 1 %.
REQUESTS = "soak_load_requests_total"


def errors_within_budget() -> tuple[list[dict[str, str]], list[Check]]:
    m = 90
    return (
        [
            series(REQUESTS, {"scenario": "hello", "outcome": "ok"}, counter(m, lambda t: 100)),
            series(REQUESTS, {"scenario": "hello", "outcome": "error"}, counter(m, lambda t: 0.5)),
        ],
        silent("SoakErrorRatio", 20, 45, 90),
    )


def errors_over_budget_during_a_run() -> tuple[list[dict[str, str]], list[Check]]:
    m = 60
    return (
        [
            series(REQUESTS, {"scenario": "hello", "outcome": "ok"}, counter(m, lambda t: 100)),
            series(
                REQUESTS,
                {"scenario": "hello", "outcome": "error"},
                counter(m, lambda t: 0 if t < 30 else 5),
            ),
            series("soak_run_info", {"run_id": "r-42", "profile": "ci"}, constant(m, 1)),
        ],
        [
            *silent("SoakErrorRatio", 25),
            fires(
                "SoakErrorRatio",
                45,
                scenario="hello",
                run_id="r-42",
                severity="critical",
                soak_rule="error_ratio",
            ),
        ],
    )


# probe_failures: range 10m, for 5m, failed share <= 1 %.
PROBE = "soak_probe_success"
PROBE_LABELS = {"service": "api", "probe": "health"}


def probe_always_succeeds() -> tuple[list[dict[str, str]], list[Check]]:
    m = 60
    return ([series(PROBE, PROBE_LABELS, constant(m, 1))], silent("SoakProbeFailures", 20, 60))


def probe_fails_from_minute_30() -> tuple[list[dict[str, str]], list[Check]]:
    m = 60
    return (
        [series(PROBE, PROBE_LABELS, step(m, 1, 0, 30))],
        [
            *silent("SoakProbeFailures", 29, 33),
            fires(
                "SoakProbeFailures",
                40,
                **PROBE_LABELS,
                severity="critical",
                soak_rule="probe_failures",
            ),
        ],
    )


# The other slope rules (open fds, handles, threads: counts per hour) are built like memory:
# each gets a leak (slow and fast alert fire) and a steady count (both silent).
def _count_slope_scenarios() -> dict[str, Callable[[], tuple[list[dict[str, str]], list[Check]]]]:
    out: dict[str, Callable[[], tuple[list[dict[str, str]], list[Check]]]] = {}
    for rule in load_rules().rules.values():
        if rule.kind != "slope" or rule.name == "memory_growth":
            continue
        value = _metric_name(rule)
        lived = _minutes(rule.warmup_seconds + rule.alert.range_seconds + rule.window_seconds)
        slow_fires = lived + _minutes(rule.alert.for_seconds)
        fast_lived = _minutes(fast_lived_seconds(rule))
        name = alert_name(rule.name)
        labels = {"service": "api", "soak_rule": rule.name}

        def leak(
            rule: Rule = rule, value: str = value, slow_fires: int = slow_fires,
            fast_lived: int = fast_lived, name: str = name, labels: dict[str, str] = labels,
        ) -> tuple[list[dict[str, str]], list[Check]]:  # fmt: skip
            m = slow_fires + 10
            per_minute = 10 * rule.threshold_base / 60  # 10x the threshold
            counts = [50 + round(per_minute * t, 3) for t in range(m + 1)]
            return (
                [series(value, API, counts), series(START, API, constant(m, 0))],
                [
                    *silent(name + "Fast", fast_lived - 1),
                    fires(name + "Fast", fast_lived + 2, **labels, severity="critical"),
                    *silent(name, slow_fires - 5),
                    fires(name, slow_fires + 5, **labels, severity=rule.alert.severity),
                ],
            )

        def steady(
            value: str = value, slow_fires: int = slow_fires, fast_lived: int = fast_lived,
            name: str = name,
        ) -> tuple[list[dict[str, str]], list[Check]]:  # fmt: skip
            m = slow_fires + 10
            return (
                [series(value, API, constant(m, 50)), series(START, API, constant(m, 0))],
                [*silent(name + "Fast", fast_lived + 2, m), *silent(name, slow_fires + 5, m)],
            )

        out[f"{rule.name}_leaking_at_ten_times"] = leak
        out[f"{rule.name}_steady"] = steady
    return out


def _metric_name(rule: Rule) -> str:
    selector = rule.metric("value")
    assert selector is not None and not selector.matchers, rule.name
    return selector.metric


# throughput: ok / scheduled >= 95 % over the range after the warm-up.
def _throughput_scenarios() -> dict[str, Callable[[], tuple[list[dict[str, str]], list[Check]]]]:
    rules = load_rules().rules
    if "throughput" not in rules:
        return {}
    rule = rules["throughput"]
    gate, earliest = gate_and_for(rule)
    labels = {"scenario": "hello", "severity": rule.alert.severity, "soak_rule": "throughput"}

    def run(ok_per_minute: float) -> list[dict[str, str]]:
        m = earliest + 20
        ok = counter(m, lambda t: ok_per_minute)
        return [
            series(REQUESTS, {"scenario": "hello", "outcome": "ok"}, ok),
            series("soak_load_scheduled_total", {"scenario": "hello"}, counter(m, lambda t: 100)),
        ]

    def falling_behind() -> tuple[list[dict[str, str]], list[Check]]:
        return (
            run(90),
            [*silent("SoakThroughput", gate - 5), fires("SoakThroughput", earliest + 5, **labels)],
        )

    def keeping_up() -> tuple[list[dict[str, str]], list[Check]]:
        return (run(100), silent("SoakThroughput", gate + 5, earliest + 5, earliest + 20))

    return {"throughput_falling_behind": falling_behind, "throughput_keeping_up": keeping_up}


SCENARIOS: dict[str, Callable[[], tuple[list[dict[str, str]], list[Check]]]] = {
    f.__name__: f
    for f in (
        memory_leak_under_sawtooth,
        healthy_sawtooth,
        slow_growth_below_the_threshold,
        memory_warm_up,
        leak_then_restart,
        fast_leak_at_ten_times_after_warm_up,
        fast_leak_starting_late_in_the_run,
        fast_alert_silent_on_the_warm_up_ramp,
        fast_alert_silent_on_a_healthy_sawtooth,
        fast_alert_silent_on_a_flat_series,
        fast_alert_silent_on_a_leak_at_twice_the_threshold,
        exporter_stops_during_a_run,
        watched_process_gone_while_the_exporter_runs,
        exporter_stops_after_the_run,
        restart_seen_only_by_start_time,
        steady_process_never_restarts,
        gc_inefficient,
        gc_efficient_after_a_costly_warm_up,
        pool_steady_after_ramp_up,
        pool_leaking_connections,
        pool_alert_stays_silent_when_only_close_wait_flickers,
        pool_in_use_and_idle_trade_places_under_load,
        latency_steady_after_slow_warm_up,
        latency_degrading_after_an_hour,
        latency_rises_a_lot_in_percent_but_only_milliseconds,
        latency_rises_by_tens_of_milliseconds,
        errors_within_budget,
        errors_over_budget_during_a_run,
        probe_always_succeeds,
        probe_fails_from_minute_30,
    )
}
SCENARIOS.update(_count_slope_scenarios())
SCENARIOS.update(_throughput_scenarios())


def latch_group() -> dict[str, Any]:
    """The latency baseline is latched from the first window after warm-up and kept."""
    # FAST: 90 % of requests under 0.1 s, the rest under 0.25 s -> p95 = 0.1 + 0.15 * 0.5.
    input_series = histogram(LATENCY, HELLO, DEGRADES + 90, degrading)
    group = promtool_group("latency_baseline_latched_after_warm_up", input_series, [])
    # In milliseconds, rounded: promtool compares floats exactly.
    group["promql_expr_test"] = [
        {
            "expr": "round(soak:latency_degradation:baseline_quantile_seconds * 1000)",
            "eval_time": f"{minute}m",
            "exp_samples": [{"labels": '{scenario="hello"}', "value": 175}],
        }
        for minute in (LATCHED + 1, DEGRADES + 30, DEGRADES + 90)
    ] + [
        {
            "expr": "soak:latency_degradation:baseline_quantile_seconds",
            "eval_time": f"{LATCHED - 1}m",
            "exp_samples": [],
        }
    ]
    return group


def annotations_group() -> dict[str, Any]:
    """The restart alert as a person reads it: every annotation rendered."""
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    (generated,) = [
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "SoakRestarts"
    ]
    notes = generated["annotations"]
    input_series, _ = restart_seen_only_by_start_time()
    group = promtool_group("restart_alert_annotations", input_series, [])
    labels = {"service": "api", "severity": "critical", "soak_rule": "restarts"}
    group["alert_rule_test"] = [
        {
            "eval_time": "31m",
            "alertname": "SoakRestarts",
            "exp_alerts": [
                {
                    "exp_labels": labels,
                    "exp_annotations": {
                        "summary": "api restarted 1 time(s) in the last 10m (limit 0)",
                        "description": notes["description"],
                        "look_at": notes["look_at"],
                        # No run in progress: the run_id part of the link is empty.
                        "dashboard": notes["dashboard"]
                        .replace("{{ $labels.service }}", "api")
                        .replace("{{ $labels.run_id }}", ""),
                    },
                }
            ],
        }
    ]
    return group


def all_groups() -> list[dict[str, Any]]:
    return [
        *(promtool_group(name, *build()) for name, build in SCENARIOS.items()),
        latch_group(),
        annotations_group(),
    ]


def committed_text() -> str:
    """The committed promtool test file: every group above, the rule file by relative path."""
    header = (
        "# Generated by tests/rules/regenerate.py from the scenarios of\n"
        "# tests/rules/test_prometheus_rules_promtool.py; do not edit.\n"
        "# Run: promtool test rules rules/prometheus/tests/soak.rules.test.yaml\n"
    )
    document = unit_test_file(all_groups(), rule_file="../soak.rules.yaml")
    return header + yaml.safe_dump(document, sort_keys=False, width=1_000_000)


@needs_promtool
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_generated_alerts_fire_on_breaking_series_and_stay_silent_on_healthy_ones(
    scenario: str, tmp_path: Path
) -> None:
    run_promtool(tmp_path, unit_test_file([promtool_group(scenario, *SCENARIOS[scenario]())]))


def test_every_generated_alert_is_shown_both_firing_and_silent_by_some_scenario() -> None:
    generated = {
        rule["alert"]
        for group in yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    checks = [check for build in SCENARIOS.values() for check in build()[1]]
    assert generated == {c.alertname for c in checks if c.firing}
    assert generated == {c.alertname for c in checks if not c.firing}


@needs_promtool
def test_the_latency_baseline_is_latched_from_the_first_window_after_warm_up(
    tmp_path: Path,
) -> None:
    run_promtool(tmp_path, unit_test_file([latch_group()]))


@needs_promtool
def test_the_restart_alert_renders_its_annotations_for_a_person(tmp_path: Path) -> None:
    run_promtool(tmp_path, unit_test_file([annotations_group()]))


def test_the_committed_promtool_test_file_is_current() -> None:
    assert COMMITTED_TESTS.read_text(encoding="utf-8") == committed_text(), (
        f"rules/prometheus/tests/soak.rules.test.yaml is stale: run {REGENERATE}"
    )


@pytest.mark.slow  # promtool over every group at once: 4-6 s; the groups run one by one above
@needs_promtool
def test_the_committed_promtool_test_file_passes() -> None:
    done = subprocess.run(
        ["promtool", "test", "rules", str(COMMITTED_TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
