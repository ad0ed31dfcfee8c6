"""Accuracy of the memory-growth and latency rules on synthetic traces with a known answer.

Every family of ``benchmarks/_traces.py`` (the original seven, and issue 11's late-onset leaks,
long-period and amplitude-changing sawtooths, sawtooths with rising troughs, restart-hidden
leaks with and without start-time series, restarts more frequent than the warm-up, RSS in
4 KiB pages, flat series with 5 MB noise, a leak that stopped, a small fill still settling
after the warm-up) is drawn at 2 h, 12 h and 48 h
at 15 s (and 15 / 43 min for the 5-minute restarts) and judged, on the same traces, by

- the analyzer: ``memory_growth`` of the packaged rules (threshold 2 MB/h) through
  ``evaluate_rule``, with the start-time series when the family shows its restarts;
- ``deriv``: PromQL ``deriv()`` over the whole run (least squares), fail above the threshold;
- ``oracle`` (leaks only): least squares over the true leaking regime (each restart segment
  after its warm-up, the samples after a late onset) with the known leak-free shape subtracted,
  fail when the lower 95 % bound (iid noise) clears the threshold: what a perfect estimator
  could see, to tell a target the analyzer misses from a target no estimator could meet.

The latency families (a 5..30-minute burst that must pass, a sustained +40 % that must fail)
are judged by ``latency_degradation`` and by the one-window-against-one-window reference (p95
of the last 30 min against the first 30 min after the warm-up, > +25 % and > 5 ms).

The issue's targets are checked at the end (``target ...: OK/MISSED``); the exit code is 1 when
any is missed. A recall target counts only the cells where the oracle's *power* (the chance
that its 95 % lower bound clears the threshold, from the true noise and the trace's layout)
reaches the target: a 2-hour run with noise of 400 MB, or a leak that began 30 minutes before
the end, does not hold the evidence for 99 % at any estimator's 95 % confidence. Those cells
are listed as "not counted" with the oracle's power, never silently dropped.

Rates have a resolution of 1/trials per cell: the default (25 per cell, 4 %) shows the picture
in a minute or two, ``--full`` (200 per cell, 0.5 %) makes 1 % meaningful.

    python -m benchmarks analyzer_accuracy            # 25 traces per cell
    python -m benchmarks analyzer_accuracy --full     # 200 per cell
    python -m benchmarks analyzer_accuracy --trials 50 --family restart_5min --family noise5
    python -m benchmarks analyzer_accuracy --prometheus   # also judge a sample of the traces
                                                      # through a real Prometheus (promtool)
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._measure import RESULTS_DIR, machine, write_results
from benchmarks._servers import import_openmetrics, start_prometheus
from benchmarks._traces import (
    CLASSIC,
    FAMILIES,
    LATENCY_FAMILIES,
    MB,
    STANDARD_WINDOWS,
    TARGETED,
    FloatArray,
    LatencyTrace,
    Trace,
    latency_trace,
)
from soakwatch.analyzer.evaluate import evaluate_rule
from soakwatch.analyzer.quantiles import histogram_quantile
from soakwatch.analyzer.series import Series
from soakwatch.rules import load_rules
from soakwatch.rules.model import Rule

LEAK_FACTORS = (0.5, 1.0, 1.5, 2.0, 5.0, 20.0)  # CLASSIC families
NOISE_FACTORS = (0.1, 1.0, 10.0)  # CLASSIC: noise sd as a multiple of the hourly leak
TARGETED_FACTORS = (2.0, 4.0, 10.0)
LATENCY_WINDOWS = STANDARD_WINDOWS
Z95 = 1.959963984540054

# targets (issue 11, item 10)
MAX_FALSE_FAIL = 0.01
MIN_RECALL_2X = 0.95
MIN_RECALL_10X = 0.99
MAX_NOISE_2H_MB = 5.0
MIN_BURST_PASS = 0.99
MIN_SUSTAINED_FAIL = 0.95


@dataclass(frozen=True)
class CellSpec:
    family: str
    hours: float
    leak_factor: float  # 0 for a leak-free cell
    noise_mb: float | None = None  # absolute noise sd (clean cells cycle the family's list)
    noise_factor: float | None = None  # CLASSIC leak cells: noise = factor x hourly leak

    @property
    def key(self) -> str:
        parts = [self.family, f"{self.hours:g}h"]
        if self.leak_factor:
            parts.append(f"{self.leak_factor:g}x")
            if self.noise_factor is not None:
                parts.append(f"noise{self.noise_factor:g}x")
            elif self.noise_mb is not None:
                parts.append(f"noise{self.noise_mb:g}MB")
        return "/".join(parts)


def cell_specs(families: list[str]) -> list[CellSpec]:
    specs: list[CellSpec] = []
    for name in families:
        if name in LATENCY_FAMILIES:
            specs += [CellSpec(name, hours, 0.0) for hours in LATENCY_WINDOWS]
            continue
        family = FAMILIES[name]
        for hours in family.windows:
            if family.clean:
                specs.append(CellSpec(name, hours, 0.0))
            if family.leaks == CLASSIC:
                specs += [
                    CellSpec(name, hours, f, noise_factor=n)
                    for f in LEAK_FACTORS
                    for n in NOISE_FACTORS
                ]
            elif family.leaks == TARGETED:
                specs += [
                    CellSpec(name, hours, f, noise_mb=n)
                    for f in TARGETED_FACTORS
                    for n in family.noises_mb
                ]
    return specs


# -- judges ----------------------------------------------------------------------------------
def start_times(t: FloatArray, restarts: FloatArray) -> FloatArray:
    """process_start_time_seconds as the exporter reports it: the time of the last restart."""
    starts = np.r_[t[0] - 60.0, restarts]
    return np.asarray(starts[np.searchsorted(restarts, t, side="right")], dtype=np.float64)


def judge(rule: Rule, trace: Trace, *, show_restarts: bool = True) -> str:
    labels = {"service": "bench"}
    t, y = trace.t, trace.y
    data: dict[str, list[Series]] = {"value": [Series("rss", labels, t, y)]}
    if show_restarts:
        data["start_time"] = [Series("start", labels, t, start_times(t, trace.restarts))]
    (result,) = evaluate_rule(rule, data, float(t[0]), float(t[-1]))
    return str(result.status)


def least_squares(x: FloatArray, y: FloatArray) -> float:
    """What PromQL ``deriv(v[range])`` returns (per x-unit)."""
    xc = x - x.mean()
    return float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))


def naive(threshold: float, trace: Trace) -> str:
    return "fail" if least_squares(trace.t, trace.y) * 3600 > threshold else "pass"


def oracle(threshold: float, trace: Trace, leak: float, noise: float) -> tuple[str, float]:
    """Pooled within-segment least squares of (y - known shape) over the leaking regime; fail
    when the lower 95 % bound is above the threshold, pass when the upper one is below. Also
    the oracle's *power* on this trace: the chance that its lower bound clears the threshold,
    from the true noise sd (``noise``) and the trace's layout, free of sampling luck."""
    keep = trace.segment >= 0
    if np.count_nonzero(keep) < 3:
        return "inconclusive", 0.0
    x = (trace.t[keep] - trace.t[0]) / 3600.0
    r = (trace.y - trace.shape)[keep]
    seg = trace.segment[keep]
    _, index = np.unique(seg, return_inverse=True)
    count = np.bincount(index)
    xc = x - (np.bincount(index, x) / count)[index]
    rc = r - (np.bincount(index, r) / count)[index]
    sxx = float(np.dot(xc, xc))
    if sxx <= 0:
        return "inconclusive", 0.0
    if noise > 0:
        power = normal_cdf((leak - threshold) / (noise / math.sqrt(sxx)) - Z95)
    else:
        power = 1.0 if leak > threshold else 0.0
    slope = float(np.dot(xc, rc)) / sxx
    dof = max(int(x.size - count.size - 1), 1)
    sd = math.sqrt(max(float(np.dot(rc - slope * xc, rc - slope * xc)) / dof, 0.0))
    half = Z95 * sd / math.sqrt(sxx) / MB
    slope /= MB
    limit = threshold / MB
    if slope - half > limit:
        return "fail", power
    return ("pass" if slope + half < limit else "inconclusive"), power


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def bucket_series(trace: LatencyTrace) -> list[Series]:
    series = []
    for index, le in enumerate(trace.bounds):
        labels = {"scenario": "bench", "le": "+Inf" if math.isinf(le) else f"{le:g}"}
        series.append(
            Series(
                "soak_load_request_duration_seconds_bucket",
                labels,
                trace.t,
                trace.cumulative[:, index],
            )
        )
    return series


def judge_latency(rule: Rule, trace: LatencyTrace) -> str:
    data = {"histogram": bucket_series(trace)}
    (result,) = evaluate_rule(rule, data, float(trace.t[0]), float(trace.t[-1]))
    return str(result.status)


def one_window_reference(rule: Rule, trace: LatencyTrace) -> str:
    """p95 of the last window against the first window after warm-up (counter differences at
    the window edges), failing above the rule's threshold and its absolute floor."""
    t = trace.t
    begin = t[0] + rule.warmup_seconds
    window = rule.window_seconds
    q = rule.quantile if rule.quantile is not None else 0.95

    def p(a: float, b: float) -> float:
        i, j = np.searchsorted(t, [a, b])
        j = min(int(j), t.size - 1)
        return histogram_quantile(q, trace.bounds, trace.cumulative[j] - trace.cumulative[int(i)])

    first, last = p(begin, begin + window), p(t[-1] - window, t[-1])
    change = (last / first - 1) * 100
    degraded = change > rule.threshold and last - first >= rule.min_increase_seconds
    return "fail" if degraded else "pass"


# -- the run ---------------------------------------------------------------------------------
def traces_of(
    spec: CellSpec, threshold: float, trials: int, seed: int
) -> Iterator[tuple[Any, float]]:
    """The cell's traces, each with its noise sd in bytes."""
    rng = np.random.default_rng([seed, zlib.crc32(spec.key.encode())])
    if spec.family in LATENCY_FAMILIES:
        for _ in range(trials):
            yield latency_trace(rng, spec.hours, LATENCY_FAMILIES[spec.family]), 0.0
        return
    family = FAMILIES[spec.family]
    leak = spec.leak_factor * threshold
    for i in range(trials):
        if spec.noise_factor is not None:
            noise = spec.noise_factor * leak
        elif spec.noise_mb is not None:
            noise = spec.noise_mb * MB
        else:
            noise = family.noises_mb[i % len(family.noises_mb)] * MB
        yield family.make(rng, spec.hours, leak, noise), noise


def run_cell(spec: CellSpec, memory: Rule, latency: Rule, trials: int, seed: int) -> dict[str, Any]:
    threshold = memory.threshold_base
    ours: Counter[str] = Counter()
    reference: Counter[str] = Counter()
    best: Counter[str] = Counter()
    power = 0.0
    latency_cell = spec.family in LATENCY_FAMILIES
    leak = spec.leak_factor * threshold
    for trace, noise in traces_of(spec, threshold, trials, seed):
        if latency_cell:
            ours[judge_latency(latency, trace)] += 1
            reference[one_window_reference(latency, trace)] += 1
            continue
        show = FAMILIES[spec.family].start_times
        ours[judge(memory, trace, show_restarts=show)] += 1
        reference[naive(threshold, trace)] += 1
        if spec.leak_factor:
            verdict, chance = oracle(threshold, trace, leak, noise)
            best[verdict] += 1
            power += chance
    cell: dict[str, Any] = {
        "family": spec.family,
        "hours": spec.hours,
        "leak_factor": spec.leak_factor,
        "noise_mb": spec.noise_mb,
        "noise_factor": spec.noise_factor,
        "trials": trials,
        "analyzer": dict(ours),
        "reference": dict(reference),
        "reference_kind": "one-window p95" if latency_cell else "deriv",
        "fail_rate": ours["fail"] / trials,
        "reference_fail_rate": reference["fail"] / trials,
    }
    if best:
        cell["oracle"] = dict(best)
        cell["oracle_fail_rate"] = best["fail"] / trials
        cell["oracle_power"] = power / trials
    return cell


def run_cells(
    specs: list[CellSpec],
    trials: int,
    seed: int,
    progress: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    rules = load_rules().rules
    memory, latency = rules["memory_growth"], rules["latency_degradation"]
    # ETA: seconds per traced hour, measured per run length (longer runs cost more per hour)
    work = {s.key: s.hours * (3 if s.family in LATENCY_FAMILIES else 1) for s in specs}
    hours_of = {s.key: s.hours for s in specs}
    spent: dict[float, float] = defaultdict(float)
    worked: dict[float, float] = defaultdict(float)
    began = time.perf_counter()
    cells: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, float], list[CellSpec]] = {}
    for s in specs:
        groups.setdefault((s.family, s.hours), []).append(s)
    left = dict(work)
    for number, ((family, hours), members) in enumerate(groups.items(), 1):
        start = time.perf_counter()
        for spec in members:
            cells[spec.key] = run_cell(spec, memory, latency, trials, seed)
            worked[hours] += left.pop(spec.key)
        spent[hours] += time.perf_counter() - start
        overall = sum(spent.values()) / max(sum(worked.values()), 1e-9)
        eta = sum(
            w * (spent[hours_of[k]] / worked[hours_of[k]] if worked[hours_of[k]] else overall)
            for k, w in left.items()
        )
        progress(
            f"[{number}/{len(groups)}] {family} {hours:.3g} h done ({len(members)} cells); "
            f"{time.perf_counter() - began:.0f} s so far, about {eta:.0f} s to go"
        )
    return cells


# -- targets ---------------------------------------------------------------------------------
@dataclass
class Target:
    text: str
    cells: list[dict[str, Any]]
    rate: Callable[[dict[str, Any]], float]
    bound: float
    at_least: bool  # the rate must be >= bound (recall), else <= bound (false fails)
    reachable: bool = False  # only cells where the oracle's power reaches the bound count

    def ok(self, rate: float) -> bool:
        return rate >= self.bound if self.at_least else rate <= self.bound

    def check(self) -> dict[str, Any]:
        counted = self.cells
        beyond: list[dict[str, Any]] = []
        if self.reachable:
            counted = [c for c in self.cells if c.get("oracle_power", 1.0) >= self.bound]
            beyond = [
                {"cell": cell_key(c), "rate": self.rate(c), "oracle_power": c["oracle_power"]}
                for c in self.cells
                if c.get("oracle_power", 1.0) < self.bound
            ]
        if not counted:
            return {
                "target": self.text,
                "ok": None,
                "cells": 0,
                "missed": [],
                "out_of_reach": beyond,
            }
        rates = [(cell_key(c), self.rate(c)) for c in counted]
        missed = [(k, r) for k, r in rates if not self.ok(r)]
        pick = min if self.at_least else max
        worst = pick(rates, key=lambda kr: kr[1])
        return {
            "target": self.text,
            "ok": not missed,
            "cells": len(rates),
            "worst": {"cell": worst[0], "rate": worst[1]},
            "missed": [{"cell": k, "rate": r} for k, r in missed],
            "out_of_reach": beyond,
        }


def cell_key(c: dict[str, Any]) -> str:
    spec = CellSpec(c["family"], c["hours"], c["leak_factor"], c["noise_mb"], c["noise_factor"])
    return spec.key


def is_leak(c: dict[str, Any]) -> bool:
    return c["family"] not in LATENCY_FAMILIES and bool(c["leak_factor"])


def recall_applies(c: dict[str, Any]) -> bool:
    return is_leak(c) and FAMILIES[c["family"]].recall_targets


def noise_mb(c: dict[str, Any]) -> float:
    """The cell's noise sd in MB (CLASSIC cells: a multiple of the hourly leak)."""
    if c["noise_factor"] is not None:
        return float(c["noise_factor"] * c["leak_factor"] * 2.0)  # threshold 2 MB/h
    return float(c["noise_mb"])


def fail_rate(c: dict[str, Any]) -> float:
    return float(c["fail_rate"])


def pass_rate(c: dict[str, Any]) -> float:
    return float(c["analyzer"].get("pass", 0) / c["trials"])


def targets(cells: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    values = list(cells.values())
    recall = [c for c in values if recall_applies(c)]
    checks = [
        Target(
            f"false fails <= {MAX_FALSE_FAIL:.0%} per leak-free family at every window",
            [c for c in values if c["family"] in FAMILIES and not c["leak_factor"]],
            fail_rate,
            MAX_FALSE_FAIL,
            at_least=False,
        ),
        Target(
            f"recall >= {MIN_RECALL_2X:.0%} at 2x the threshold over 12 h and 48 h",
            [c for c in recall if c["leak_factor"] == 2 and c["hours"] in (12, 48)],
            fail_rate,
            MIN_RECALL_2X,
            at_least=True,
            reachable=True,
        ),
        Target(
            f"recall >= {MIN_RECALL_2X:.0%} at 2x over 2 h for noise <= {MAX_NOISE_2H_MB:g} MB",
            [
                c
                for c in recall
                if c["leak_factor"] == 2 and c["hours"] == 2 and noise_mb(c) <= MAX_NOISE_2H_MB
            ],
            fail_rate,
            MIN_RECALL_2X,
            at_least=True,
            reachable=True,
        ),
        Target(
            f"recall >= {MIN_RECALL_10X:.0%} at 10x and above over every window of 2 h or more",
            [c for c in recall if c["leak_factor"] >= 10 and c["hours"] >= 2],
            fail_rate,
            MIN_RECALL_10X,
            at_least=True,
            reachable=True,
        ),
        Target(
            f"latency: a burst passes >= {MIN_BURST_PASS:.0%}",
            [c for c in values if c["family"] == "latency_burst"],
            pass_rate,
            MIN_BURST_PASS,
            at_least=True,
        ),
        Target(
            f"latency: a sustained +40 % fails >= {MIN_SUSTAINED_FAIL:.0%}",
            [c for c in values if c["family"] == "latency_sustained"],
            fail_rate,
            MIN_SUSTAINED_FAIL,
            at_least=True,
        ),
    ]
    return [t.check() for t in checks]


# -- report ----------------------------------------------------------------------------------
def counts(c: dict[str, int]) -> str:
    return f"{c.get('pass', 0):>4}/{c.get('fail', 0):>4}/{c.get('inconclusive', 0):>4}"


def table(cells: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "leak-free families: analyzer pass/fail/inconclusive, false-fail rate (analyzer / deriv)",
    ]
    for c in cells.values():
        if c["family"] in FAMILIES and not c["leak_factor"]:
            lines.append(
                f"  {c['family']:<20} {c['hours']:>5.3g} h  {counts(c['analyzer'])}   "
                f"false fails {c['fail_rate']:>6.1%} / {c['reference_fail_rate']:>6.1%}"
            )
    lines.append(
        "leaks, per leak factor (all noise levels of the cell pooled): analyzer "
        "pass/fail/inconclusive, recall (analyzer / deriv / oracle)"
    )
    pooled: dict[tuple[str, float, float], list[dict[str, Any]]] = {}
    for c in cells.values():
        if is_leak(c):
            pooled.setdefault((c["family"], c["hours"], c["leak_factor"]), []).append(c)
    for (family, hours, factor), group in pooled.items():
        n = sum(c["trials"] for c in group)
        total: Counter[str] = Counter()
        for c in group:
            total.update(c["analyzer"])
        rec = sum(c["analyzer"].get("fail", 0) for c in group) / n
        ref = sum(c["reference"].get("fail", 0) for c in group) / n
        best = sum(c.get("oracle", {}).get("fail", 0) for c in group) / n
        exempt = "" if FAMILIES[family].recall_targets else "  (no recall target)"
        lines.append(
            f"  {family:<20} {hours:>5.3g} h {factor:>4g}x  {counts(dict(total))}   "
            f"recall {rec:>6.1%} / {ref:>6.1%} / {best:>6.1%}{exempt}"
        )
    lines.append(
        "latency: analyzer pass/fail/inconclusive; fail rate (analyzer / one-window reference)"
    )
    for c in cells.values():
        if c["family"] in LATENCY_FAMILIES:
            lines.append(
                f"  {c['family']:<20} {c['hours']:>5.3g} h  {counts(c['analyzer'])}   "
                f"fails {c['fail_rate']:>6.1%} / {c['reference_fail_rate']:>6.1%}"
            )
    return lines


def git_head() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


# -- through a real Prometheus ---------------------------------------------------------------
def through_prometheus(trials: int) -> dict[str, Any]:
    """Judge one 12-hour trace per family (half clean, half 2x leaks) through a real Prometheus
    (promtool blocks) and compare the verdicts with those of the pure core on the same samples."""
    from soakwatch.analyzer import PrometheusSource, RunDirSource, analyze
    from soakwatch.recording import SampleWriter, export_openmetrics

    if not shutil.which("promtool") or not shutil.which("prometheus"):
        return {"skipped": "promtool/prometheus not installed"}
    rng = np.random.default_rng(7)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soakwatch-accuracy-")))
        with SampleWriter(work / "run") as writer:
            for name, family in FAMILIES.items():
                for i in range(trials):
                    leak = 0.0 if i % 2 == 0 else 4 * MB
                    trace = family.make(rng, 12, leak, family.noises_mb[0] * MB)
                    labels = {"service": f"{name}-{i}-{'leak' if leak else 'clean'}"}
                    starts = start_times(trace.t, trace.restarts)
                    for ts, value, start in zip(trace.t, trace.y, starts, strict=True):
                        writer.write_sample("soak_process_resident_memory_bytes", labels, value, ts)
                        if family.start_times:
                            writer.write_sample(
                                "soak_process_start_time_seconds", labels, start, ts
                            )
        export_openmetrics(work / "run", work / "run.om")
        import_seconds = import_openmetrics(work / "run.om", work / "tsdb", timeout=600)
        prometheus = stack.enter_context(start_prometheus(work / "tsdb"))
        rules = load_rules()
        local = RunDirSource(work / "run")
        start, end = local.time_range()
        a = analyze(local, rules, start, end, only=["memory_growth"])
        b = analyze(PrometheusSource(prometheus.url), rules, start, end, only=["memory_growth"])
        ours = {r.subject_text: r.status for r in a.results}
        theirs = {r.subject_text: r.status for r in b.results}
        agree = sum(ours[k] == theirs.get(k) for k in ours)
        return {
            "traces": len(ours),
            "promtool_import_seconds": round(import_seconds, 2),
            "verdicts_agreeing_with_pure_core": agree,
            "verdicts": theirs,
        }


def main(argv: list[str]) -> int:
    every = [*FAMILIES, *LATENCY_FAMILIES]
    parser = argparse.ArgumentParser(prog="python -m benchmarks analyzer_accuracy")
    parser.add_argument("--full", action="store_true", help="200 traces per cell")
    parser.add_argument("--trials", type=int, help="traces per cell (default 25, --full 200)")
    parser.add_argument(
        "--family", action="append", choices=every, help="only these families (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--prometheus", action="store_true", help="also judge a sample through a real Prometheus"
    )
    args = parser.parse_args(argv)
    trials = args.trials or (200 if args.full else 25)
    if trials < 1:
        parser.error("--trials must be at least 1")
    families = args.family or every
    specs = cell_specs(families)
    head = git_head()
    print(
        f"analyzer accuracy: {len(specs)} cells x {trials} traces, commit {head}; rates have a "
        f"resolution of {1 / trials:.1%} (0 of {trials} bounds a rate below {3 / trials:.1%} at "
        "95 %)",
        flush=True,
    )
    began = time.perf_counter()
    cells = run_cells(specs, trials, args.seed, lambda s: print(s, file=sys.stderr, flush=True))
    elapsed = time.perf_counter() - began
    for line in table(cells):
        print(line)
    checks = targets(cells)
    print(f"targets ({trials} traces per cell, resolution {1 / trials:.1%}):")
    for check in checks:
        if check["ok"] is None:
            print(f"target {check['target']}: not measured (no such cells selected)")
            continue
        worst = check["worst"]
        verdict = "OK" if check["ok"] else "MISSED"
        print(
            f"target {check['target']}: {verdict} "
            f"({len(check['missed'])} of {check['cells']} cells missed; worst {worst['cell']} "
            f"{worst['rate']:.1%})"
        )
        for miss in check["missed"][:12]:
            print(f"    missed {miss['cell']}: {miss['rate']:.1%}")
        if len(check["missed"]) > 12:
            print(f"    ... and {len(check['missed']) - 12} more (see the JSON)")
        if check["out_of_reach"]:
            shown = ", ".join(
                f"{b['cell']} (oracle {b['oracle_power']:.0%})" for b in check["out_of_reach"][:6]
            )
            more = len(check["out_of_reach"]) - 6
            print(
                f"    not counted, beyond a perfect estimator at 95 % confidence: {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
    print(f"{elapsed:.0f} s")
    output: dict[str, Any] = {
        "benchmark": "analyzer_accuracy",
        "commit": head,
        "machine": machine(),
        "trials_per_cell": trials,
        "seed": args.seed,
        "seconds": elapsed,
        "targets": checks,
        "families": {
            name: {
                "doc": ((f.make.__doc__ or "").strip().splitlines() or [""])[0],
                "note": f.note,
                "windows_hours": list(f.windows),
                "start_times": f.start_times,
                "recall_targets": f.recall_targets,
            }
            for name, f in FAMILIES.items()
            if name in families
        },
        "cells": cells,
    }
    if args.prometheus:
        output["prometheus"] = through_prometheus(4 if not args.full else 20)
        print(
            "through a real Prometheus:",
            {k: v for k, v in output["prometheus"].items() if k != "verdicts"},
        )
    write_results("analyzer_accuracy", output)
    if not args.no_plot:
        from benchmarks._plots import accuracy_plot

        path = accuracy_plot(cells, RESULTS_DIR / "analyzer_accuracy.png", head, trials)
        print(f"plot: {path}")
    missed = [c for c in checks if c["ok"] is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
