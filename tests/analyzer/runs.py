"""Builders of synthetic run recordings with known answers, shared by the analyzer's tests.

Imported by the tests of this folder as ``runs`` through conftest's ``synthetic_run`` fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soakwatch.recording import SampleWriter

MB = 1e6
START = 1_764_000_000.0  # 2025-11-24T16:00:00Z
BUCKETS = (0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, float("inf"))


def write_run(
    run_dir: Path,
    *,
    hours: float = 6.0,
    interval: float = 30.0,
    leak_mb_per_hour: dict[str, float] | None = None,
    latency_growth: float = 0.0,
    restart_at_hours: float | None = None,
    seed: int = 1,
) -> Path:
    """A run with services "api" (Python: GC series, a pool) and "worker" (no GC series), one
    load scenario with a latency histogram, one probe. ``leak_mb_per_hour`` per service;
    ``latency_growth``: how much slower requests get by the end (0.5 = +50 %)."""
    rng = np.random.default_rng(seed)
    leaks = {"api": 0.0, "worker": 0.0, **(leak_mb_per_hour or {})}
    times = START + np.arange(0.0, hours * 3600.0, interval)
    counts = np.zeros(len(BUCKETS))
    requests = 0.0
    errors = 0.0
    collected = examined = 0.0
    with SampleWriter(run_dir) as writer:
        for ts in times:
            h = (ts - START) / 3600.0
            restarted = restart_at_hours is not None and h >= restart_at_hours
            for service, leak in leaks.items():
                since = h - restart_at_hours if restarted and restart_at_hours else h
                rss = 150 * MB + leak * MB * since + ((ts % 300) / 300) * 20 * MB
                rss += rng.normal(0, 0.5 * MB)
                labels = {"service": service, "instance": f"{service}:9000", "job": "soak"}
                writer.write_sample("soak_process_resident_memory_bytes", labels, rss, ts)
                start_time = START - 60 + (restart_at_hours * 3600 if restarted else 0)
                writer.write_sample("soak_process_start_time_seconds", labels, start_time, ts)
                writer.write_sample("soak_process_restarts_total", labels, float(restarted), ts)
                writer.write_sample("soak_probe_success", {**labels, "probe": "http"}, 1.0, ts)
            api = {"service": "api", "instance": "api:9000", "job": "soak"}
            collected += 300.0
            examined += 600.0
            for gen in ("0", "1"):
                g = {**api, "generation": gen}
                writer.write_sample("soak_gc_collected_objects_total", g, collected, ts)
                writer.write_sample("soak_gc_examined_objects_total", g, examined, ts)
            pool = {**api, "pool": "db", "state": "established"}
            writer.write_sample("soak_pool_connections", pool, 10.0, ts)
            # 100 requests per interval, latency ~ lognormal, slower by the end
            slow = 1.0 + latency_growth * h / hours
            latencies = rng.lognormal(np.log(0.08 * slow), 0.4, 100)
            counts += np.array([np.sum(latencies <= b) for b in BUCKETS])
            requests += 100
            errors += 0.2
            load = {"scenario": "browse", "instance": "load:9100", "job": "load"}
            for le, count in zip(BUCKETS, counts, strict=True):
                writer.write_sample(
                    "soak_load_request_duration_seconds_bucket",
                    {**load, "le": "+Inf" if le == float("inf") else str(le)},
                    count,
                    ts,
                )
            writer.write_sample(
                "soak_load_requests_total", {**load, "outcome": "ok"}, requests - errors, ts
            )
            writer.write_sample(
                "soak_load_requests_total", {**load, "outcome": "error"}, errors, ts
            )
    return run_dir
