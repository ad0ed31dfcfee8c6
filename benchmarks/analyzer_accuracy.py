"""Accuracy of the memory-growth rule on synthetic trace families with a known answer.

For each family and run length (2 h, 12 h, 48 h at 15 s) the benchmark draws traces, judges
them with the analyzer's own rule evaluation (``memory_growth`` of the packaged rules, threshold
2 MB/h) and with the naive reference, PromQL ``deriv()`` over the whole run (least squares),
and reports pass / fail / inconclusive counts, the false-positive rate on leak-free families,
the recall on leaks of 0.5x..20x the threshold under noise from 0.1x to 10x the hourly leak,
and the smallest leak detected with >= 95 % recall.

    python -m benchmarks analyzer_accuracy            # 12 traces per cell (about a minute)
    python -m benchmarks analyzer_accuracy --full     # 200 per cell
    python -m benchmarks analyzer_accuracy --prometheus   # also judge a sample of the traces
                                                      # through a real Prometheus (promtool)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._measure import write_results
from benchmarks._servers import import_openmetrics, start_prometheus
from benchmarks._traces import FAMILIES, MB
from soakwatch.analyzer.evaluate import evaluate_rule
from soakwatch.analyzer.series import Series
from soakwatch.analyzer.slopes import least_squares_slope
from soakwatch.rules import load_rules

DURATIONS_HOURS = (2, 12, 48)
LEAK_FACTORS = (0.5, 1.0, 1.5, 2.0, 5.0, 20.0)
NOISE_FACTORS = (0.1, 1.0, 10.0)  # noise sd as a multiple of the hourly leak
LEAK_FAMILIES = ("flat", "sawtooth", "restarts")
CLEAN_NOISE_MB = (0.5, 2.0, 10.0)  # noise of leak-free traces


def start_times(t: np.ndarray, restarts: np.ndarray) -> np.ndarray:
    """process_start_time_seconds as the exporter reports it: the time of the last restart."""
    starts = np.r_[t[0] - 60.0, restarts]
    return starts[np.searchsorted(restarts, t, side="right")]


def judge(rule: Any, t: np.ndarray, y: np.ndarray, restarts: np.ndarray) -> str:
    labels = {"service": "bench"}
    data: dict[str, list[Series]] = {"value": [Series("rss", labels, t, y)]}
    if restarts.size:
        data["start_time"] = [Series("start", labels, t, start_times(t, restarts))]
    (result,) = evaluate_rule(rule, data, float(t[0]), float(t[-1]))
    return result.status


def naive(threshold: float, t: np.ndarray, y: np.ndarray) -> str:
    return "fail" if least_squares_slope(t, y) * 3600 > threshold else "pass"


def tally(
    rule: Any, threshold: float, traces: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[Counter[str], Counter[str]]:
    """The verdicts of the analyzer and of the deriv() reference on each (t, rss, restarts)."""
    ours: Counter[str] = Counter()
    deriv: Counter[str] = Counter()
    for t, y, restarts in traces:
        ours[judge(rule, t, y, restarts)] += 1
        deriv[naive(threshold, t, y)] += 1
    return ours, deriv


def cell(
    rate: str, ours: Counter[str], deriv: Counter[str], trials: int, **labels: Any
) -> dict[str, Any]:
    """One cell of the results: its ``labels``, the verdict counts of both, and the share of
    "fail" verdicts as ``rate`` (the analyzer's) and ``deriv_<rate>``."""
    return {
        **labels,
        "trials": trials,
        "analyzer": dict(ours),
        "deriv": dict(deriv),
        rate: ours["fail"] / trials,
        f"deriv_{rate}": deriv["fail"] / trials,
    }


def run_cells(trials: int, seed: int = 20261125) -> dict[str, Any]:
    rule = load_rules().rules["memory_growth"]
    threshold = rule.threshold_base
    rng = np.random.default_rng(seed)
    clean: dict[str, dict[str, Any]] = {}
    leaks: dict[str, dict[str, Any]] = {}
    for hours in DURATIONS_HOURS:
        for family, make in FAMILIES.items():
            noises = (CLEAN_NOISE_MB[i % len(CLEAN_NOISE_MB)] * MB for i in range(trials))
            ours, deriv = tally(rule, threshold, (make(rng, hours, 0.0, n) for n in noises))
            clean[f"{family}/{hours}h"] = cell(
                "false_positive_rate", ours, deriv, trials, family=family, hours=hours
            )
        for family in LEAK_FAMILIES:
            for factor in LEAK_FACTORS:
                for noise_factor in NOISE_FACTORS:
                    leak = factor * threshold
                    make = FAMILIES[family]
                    traces = (make(rng, hours, leak, noise_factor * leak) for _ in range(trials))
                    ours, deriv = tally(rule, threshold, traces)
                    leaks[f"{family}/{hours}h/{factor:g}x/noise{noise_factor:g}"] = cell(
                        "recall",
                        ours,
                        deriv,
                        trials,
                        family=family,
                        hours=hours,
                        leak_factor=factor,
                        noise_factor=noise_factor,
                    )
    return {"clean": clean, "leaks": leaks}


def summarise(cells: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for hours in DURATIONS_HOURS:
        clean = [c for c in cells["clean"].values() if c["hours"] == hours]
        trials = sum(c["trials"] for c in clean)
        fails = sum(c["analyzer"].get("fail", 0) for c in clean)
        deriv_fails = sum(c["deriv"].get("fail", 0) for c in clean)
        inconclusive = sum(c["analyzer"].get("inconclusive", 0) for c in clean)
        recall_by_factor = {}
        deriv_by_factor = {}
        for factor in LEAK_FACTORS:
            group = [
                c
                for c in cells["leaks"].values()
                if c["hours"] == hours and c["leak_factor"] == factor
            ]
            n = sum(c["trials"] for c in group)
            recall_by_factor[f"{factor:g}x"] = sum(c["analyzer"].get("fail", 0) for c in group) / n
            deriv_by_factor[f"{factor:g}x"] = sum(c["deriv"].get("fail", 0) for c in group) / n
        detected = [f for f in LEAK_FACTORS if f > 1 and recall_by_factor[f"{f:g}x"] >= 0.95]
        summary[f"{hours}h"] = {
            "leak_free_trials": trials,
            "false_positive_rate": fails / trials,
            "inconclusive_rate_leak_free": inconclusive / trials,
            "deriv_false_positive_rate": deriv_fails / trials,
            "recall": recall_by_factor,
            "deriv_recall": deriv_by_factor,
            "smallest_leak_with_95pct_recall": f"{min(detected):g}x" if detected else None,
        }
    return summary


def through_prometheus(trials: int) -> dict[str, Any]:
    """Judge one 12-hour trace per family through a real Prometheus (promtool blocks) and
    compare the verdicts with those of the pure core on the same samples."""
    from soakwatch.analyzer import PrometheusSource, RunDirSource, analyze
    from soakwatch.recording import SampleWriter, export_openmetrics

    if not shutil.which("promtool") or not shutil.which("prometheus"):
        return {"skipped": "promtool/prometheus not installed"}
    rng = np.random.default_rng(7)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soakwatch-accuracy-")))
        with SampleWriter(work / "run") as writer:
            for family, make in FAMILIES.items():
                for i in range(trials):
                    leak = 0.0 if i % 2 == 0 else 4 * MB
                    t, y, restarts = make(rng, 12, leak, 2 * MB)
                    labels = {"service": f"{family}-{i}-{'leak' if leak else 'clean'}"}
                    starts = start_times(t, restarts)
                    for ts, value, start in zip(t, y, starts, strict=True):
                        writer.write_sample("soak_process_resident_memory_bytes", labels, value, ts)
                        writer.write_sample("soak_process_start_time_seconds", labels, start, ts)
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
    parser = argparse.ArgumentParser(prog="python -m benchmarks analyzer_accuracy")
    parser.add_argument("--full", action="store_true", help="200 traces per cell")
    parser.add_argument(
        "--prometheus", action="store_true", help="also judge a sample through a real Prometheus"
    )
    args = parser.parse_args(argv)
    full = args.full
    trials = 200 if full else 12
    began = time.perf_counter()
    cells = run_cells(trials)
    summary = summarise(cells)
    elapsed = time.perf_counter() - began
    print(f"analyzer accuracy: {trials} traces per cell, {elapsed:.0f} s")
    print(
        f"{'run':>4}  {'FP rate':>8} {'deriv FP':>9} {'inconcl.':>9}  recall by leak "
        "(analyzer / deriv)"
    )
    for hours, s in summary.items():
        recall = "  ".join(
            f"{k}:{v:.0%}/{s['deriv_recall'][k]:.0%}" for k, v in s["recall"].items()
        )
        print(
            f"{hours:>4}  {s['false_positive_rate']:>8.1%} {s['deriv_false_positive_rate']:>9.1%} "
            f"{s['inconclusive_rate_leak_free']:>9.1%}  {recall}"
        )
    print("leak-free families (fail/inconclusive/pass of the analyzer; deriv fails):")
    for key, c in cells["clean"].items():
        a = c["analyzer"]
        print(
            f"  {key:<14} {a.get('fail', 0):>4} / {a.get('inconclusive', 0):>4} / "
            f"{a.get('pass', 0):>4}    deriv fails {c['deriv'].get('fail', 0):>4} of {c['trials']}"
        )
    output: dict[str, Any] = {
        "benchmark": "analyzer_accuracy",
        "trials_per_cell": trials,
        "seconds": elapsed,
        "summary": summary,
        "cells": cells,
    }
    if args.prometheus:
        output["prometheus"] = through_prometheus(4 if not full else 20)
        print(
            "through a real Prometheus:",
            {k: v for k, v in output["prometheus"].items() if k != "verdicts"},
        )
    write_results("analyzer_accuracy", output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
