"""Hostile data in what the analyzer reads (issue 13): a recording with a byte that is not UTF-8,
and NaN / infinite samples of the process start time and of the probe outcome, from a run
directory and from a real Prometheus serving the same samples."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from soakwatch.analyzer import PrometheusSource, Report, RunDirSource, analyze
from soakwatch.recording import SAMPLES_FILE, SampleWriter, export_openmetrics, read_samples
from soakwatch.rules import load_rules

START = 1_764_000_000.0
INTERVAL = 30.0
POINTS = 120  # one hour
NAN_STARTS = (20, 21, 50)  # indexes of the start-time samples that read NaN
INF_STARTS = (70, 90)  # ... and +Inf (a broken collector, a division by zero)
NAN_PROBES = tuple(range(30, 40))  # api's probe: NaN ten times, 1 otherwise


def soak_analyze(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real soak-analyze, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "soakwatch.analyzer.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- row 3: a byte that is not UTF-8 ------------------------------------------------------------
def test_a_byte_that_is_not_utf8_skips_its_line_counts_it_and_the_run_is_still_judged(
    tmp_path: Path, runs: ModuleType
) -> None:
    run_dir = runs.write_run(tmp_path / "run", hours=1.0, seed=3)
    samples = run_dir / SAMPLES_FILE
    lines = samples.read_bytes().split(b"\n")
    # a torn write: one byte of one sample line of the memory series becomes 0xff
    victim = next(
        i for i, line in enumerate(lines) if line.startswith(b"soak_process_resident") and i > 500
    )
    lines[victim] = lines[victim][:10] + b"\xff" + lines[victim][11:]
    samples.write_bytes(b"\n".join(lines))
    memory_samples_before = POINTS  # 1 h at 30 s, per service

    done = soak_analyze("--run-dir", str(run_dir), "--format", "json")

    assert "Traceback" not in done.stderr
    assert done.returncode in (0, 1, 3), done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == (
        f"run directory {run_dir} (1 line not UTF-8 skipped (the first is line {victim + 1}))"
    )
    # the rest of the recording was read: every memory sample but the torn one
    kept = read_samples(run_dir, ["soak_process_resident_memory_bytes"])
    assert sorted(t.size for t, _ in kept.values()) == [
        memory_samples_before - 1,
        memory_samples_before,
    ]
    assert {r["rule"] for r in report["results"] if r["status"] != "not_applicable"} >= {
        "memory_growth",
        "restarts",
    }


def test_only_bad_bytes_is_a_source_error_with_exit_2_never_a_traceback(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / SAMPLES_FILE).write_bytes(b'soak_up{job="x"} 1 1764000000\n\xff\xfe 1 2\n')

    done = soak_analyze("--run-dir", str(run_dir), "--only", "memory_growth")

    assert "Traceback" not in done.stderr
    assert done.returncode in (2, 3), done.stderr


# -- row 9: NaN and infinities ------------------------------------------------------------------
def write_non_finite_run(run_dir: Path) -> Path:
    """An hour at 30 s: "api" never restarts, but its start time reads NaN three times and +Inf
    twice; its probe succeeds except for ten NaN samples. "worker"'s probe reads only NaN."""
    with SampleWriter(run_dir) as writer:
        for index in range(POINTS):
            ts = START + index * INTERVAL
            api = {"service": "api", "instance": "api:9000", "job": "soak"}
            start_time = START - 60.0
            if index in NAN_STARTS:
                start_time = math.nan
            elif index in INF_STARTS:
                start_time = math.inf
            writer.write_sample("soak_process_start_time_seconds", api, start_time, ts)
            writer.write_sample("soak_process_restarts_total", api, 0.0, ts)
            probe = math.nan if index in NAN_PROBES else 1.0
            writer.write_sample("soak_probe_success", {**api, "probe": "http"}, probe, ts)
            worker = {"service": "worker", "instance": "worker:9000", "job": "soak"}
            writer.write_sample("soak_probe_success", {**worker, "probe": "http"}, math.nan, ts)
    return run_dir


def results_by_subject(report: Report, rule: str) -> dict[str, Any]:
    return {r.subject_text: r for r in report.results if r.rule == rule}


def assert_non_finite_samples_are_ignored_and_counted(report: Report) -> None:
    restarts = results_by_subject(report, "restarts")["service=api"]
    assert restarts.status == "pass", restarts.reason
    assert restarts.details["start_time_changes"] == 0
    assert restarts.details["non_finite_samples"] == len(NAN_STARTS) + len(INF_STARTS)
    assert "5 NaN or infinite samples ignored" in restarts.reason

    probes = results_by_subject(report, "probe_failures")
    api = probes["service=api,probe=http"]
    assert api.status == "pass", api.reason
    assert api.details["samples"] == POINTS - len(NAN_PROBES)
    assert api.details["non_finite_samples"] == len(NAN_PROBES)
    # a probe that only ever read NaN never succeeded: no data, never a pass
    worker = probes["service=worker,probe=http"]
    assert worker.status == "inconclusive", worker.reason
    assert worker.details["samples"] == 0
    assert worker.details["non_finite_samples"] == POINTS


def test_nan_and_inf_in_a_run_directory_are_never_a_restart_nor_a_probe_success(
    tmp_path: Path,
) -> None:
    run_dir = write_non_finite_run(tmp_path / "run")
    source = RunDirSource(run_dir)
    start, end = source.time_range()

    report = analyze(source, load_rules(), start, end, only=["restarts", "probe_failures"])

    assert_non_finite_samples_are_ignored_and_counted(report)
    assert report.verdict == "inconclusive"  # worker's probe: nothing to judge


def test_the_non_finite_count_is_in_the_json_report_of_soak_analyze(tmp_path: Path) -> None:
    run_dir = write_non_finite_run(tmp_path / "run")

    done = soak_analyze(
        "--run-dir", str(run_dir), "--only", "restarts,probe_failures", "--format", "json"
    )

    assert done.returncode == 3, done.stderr  # inconclusive: worker's probe has no data
    found = {
        (r["rule"], ",".join(r["subject"].values())): r["details"].get("non_finite_samples")
        for r in json.loads(done.stdout)["results"]
    }
    assert found == {
        ("restarts", "api"): len(NAN_STARTS) + len(INF_STARTS),
        ("probe_failures", "api,http"): len(NAN_PROBES),
        ("probe_failures", "worker,http"): POINTS,
        ("restarts", "worker"): None,  # not applicable: no restart series, nothing set aside
    }


@pytest.fixture(scope="module")
def non_finite_prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_on_blocks: Any
) -> Iterator[tuple[str, Path]]:
    """A real Prometheus holding the NaN / +Inf run (TSDB blocks made by promtool from the
    run's OpenMetrics export); its HTTP API answers those samples as "NaN" and "+Inf"."""
    work = tmp_path_factory.mktemp("non-finite")
    run_dir = write_non_finite_run(work / "run")
    export_openmetrics(run_dir, work / "run.om")
    server = prometheus_on_blocks(work / "run.om", work)
    try:
        yield server.url, run_dir
    finally:
        server.stop()


@pytest.mark.slow
def test_nan_and_inf_from_prometheus_are_never_a_restart_nor_a_probe_success(
    non_finite_prometheus: tuple[str, Path],
) -> None:
    url, run_dir = non_finite_prometheus
    start, end = RunDirSource(run_dir).time_range()
    source = PrometheusSource(url, min_step_seconds=INTERVAL)
    raw = source.fetch(load_rules().rules["restarts"].metrics["start_time"], start, end)
    assert any(math.isinf(v) for s in raw for v in s.v)  # the fault is really served

    report = analyze(source, load_rules(), start, end, only=["restarts", "probe_failures"])

    assert_non_finite_samples_are_ignored_and_counted(report)
