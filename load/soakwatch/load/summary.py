"""The JSON summary of a load run (shape in docs/load.md) and its file. The driver writes it with
``soakwatch.files.write_json_atomic``, so a reader never sees half a file; a write that fails
(unwritable folder, full disk) is reported with its reason, never raised into the run."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from soakwatch.files import write_json_atomic
from soakwatch.load.histogram import LatencyHistogram, Timings
from soakwatch.load.outcomes import DROPPED, OUTCOMES
from soakwatch.load.stats import ScenarioStats

__all__ = [
    "SCHEMA",
    "bottleneck_warnings",
    "build_summary",
    "merge_summaries",
    "probe_summary_path",
    "try_write_summary",
]

SCHEMA = "soakwatch.load.summary/1"


def bottleneck_warnings(
    stats: Sequence[ScenarioStats], timings: Sequence[Timings], lag_warn_seconds: float
) -> list[str]:
    """Why the driver itself limits the run, per scenario: its lag p99 (due -> sent) above
    ``lag_warn_seconds``, or operations it dropped (due with every in-flight slot taken)."""
    warnings = []
    for item, timing in zip(stats, timings, strict=True):
        lag_p99 = timing.lag.histogram.value_at_quantile(0.99)
        dropped = item.outcomes[DROPPED]
        reasons = []
        if lag_p99 is not None and lag_p99 > lag_warn_seconds:
            reasons.append(
                f"its lag p99 (due -> sent) is {lag_p99 * 1000:.1f} ms "
                f"(above {lag_warn_seconds * 1000:g} ms)"
            )
        if dropped:
            reasons.append(f"it dropped {dropped} of {item.scheduled} due operations")
        if reasons:
            warnings.append(
                f"scenario {item.name!r}: the load driver is the bottleneck: "
                + " and ".join(reasons)
                + "; its latencies measure the driver as much as the service "
                "(more workers or connections, a lower rate)"
            )
    return warnings


def _timing(timing: Timings | None) -> dict[str, Any]:
    if timing is None:
        return {}
    return {
        "lag_seconds": timing.lag.histogram.percentiles().as_dict(),
        "service_seconds": timing.service.histogram.percentiles().as_dict(),
        "lag_histogram": timing.lag.histogram.to_dict(),
        "service_histogram": timing.service.histogram.to_dict(),
    }


def _scenario(
    stats: ScenarioStats, active_seconds: float, timing: Timings | None = None
) -> dict[str, Any]:
    completed = stats.completed
    return {
        "kind": stats.kind,
        "target_rate_per_second": stats.target_rate_per_second,
        "scheduled": stats.scheduled,
        "sent": stats.started,
        "completed": completed,
        "in_flight": stats.in_flight,
        "achieved_rate_per_second": stats.started / active_seconds if active_seconds > 0 else 0.0,
        "errors": stats.errors,
        "error_ratio": stats.errors / completed if completed else 0.0,
        "outcomes": dict(stats.outcomes),
        "latency_seconds": stats.histogram.percentiles().as_dict(),
        "open_connections": stats.open_connections,
        "reconnects": stats.reconnects,
        "sessions_started": stats.sessions_started,
        "skipped": stats.skipped_reason,
        "histogram": stats.histogram.to_dict(),
        **_timing(timing),
    }


def build_summary(
    stats: Sequence[ScenarioStats],
    *,
    status: str,
    stop_reason: str | None,
    error: str | None,
    shard: tuple[int, int],
    profile: str | None,
    started_at: str,
    ended_at: str,
    planned_seconds: float,
    elapsed_seconds: float,
    active_seconds: float,
    stages: Mapping[str, float],
    timings: Sequence[Timings] | None = None,
    lag_warn_seconds: float = 0.010,
) -> dict[str, Any]:
    """The summary document. ``active_seconds`` is the time the schedule ran (for rates);
    ``timings`` (one per scenario) adds the driver's lag and the service time beside latency,
    and the warnings when the driver is the bottleneck."""
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for item in stats:
        for outcome, count in item.outcomes.items():
            outcomes[outcome] += count
    operations = sum(outcomes.values())
    errors = operations - outcomes["ok"]
    latency = LatencyHistogram.merged(s.histogram for s in stats)
    per_scenario = list(timings) if timings is not None else [None] * len(stats)
    totals_timing: dict[str, Any] = {}
    warnings: list[str] = []
    if timings is not None:
        lag = LatencyHistogram.merged(t.lag.histogram for t in timings)
        service = LatencyHistogram.merged(t.service.histogram for t in timings)
        totals_timing = {
            "lag_seconds": lag.percentiles().as_dict(),
            "service_seconds": service.percentiles().as_dict(),
        }
        warnings = bottleneck_warnings(stats, timings, lag_warn_seconds)
    return {
        "schema": SCHEMA,
        "status": status,
        "stop_reason": stop_reason,
        "error": error,
        "shard": f"{shard[0]}/{shard[1]}",
        "profile": profile,
        "started_at": started_at,
        "ended_at": ended_at,
        "planned_seconds": planned_seconds,
        "elapsed_seconds": elapsed_seconds,
        "active_seconds": active_seconds,
        "stages": dict(stages),
        "totals": {
            "operations": operations,
            "ok": outcomes["ok"],
            "errors": errors,
            "error_ratio": errors / operations if operations else 0.0,
            "outcomes": outcomes,
            "latency_seconds": latency.percentiles().as_dict(),
            **totals_timing,
        },
        "bottleneck": warnings,  # why the driver itself limited the run (empty: it did not)
        "scenarios": {
            s.name: _scenario(s, active_seconds, t)
            for s, t in zip(stats, per_scenario, strict=True)
        },
    }


def merge_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals and latency percentiles across the shards' summaries of one run, per scenario
    (histograms add up; rates add up)."""
    scenarios: dict[str, dict[str, Any]] = {}
    hists: dict[str, LatencyHistogram] = {}
    extra: dict[tuple[str, str], LatencyHistogram] = {}  # (scenario, lag|service)
    for summary in summaries:
        for name, part in summary["scenarios"].items():
            into = scenarios.setdefault(
                name,
                {
                    "kind": part["kind"],
                    "sent": 0,
                    "completed": 0,
                    "errors": 0,
                    "achieved_rate_per_second": 0.0,
                    "outcomes": dict.fromkeys(OUTCOMES, 0),
                },
            )
            for key in ("sent", "completed", "errors", "achieved_rate_per_second"):
                into[key] += part[key]
            for outcome, count in part["outcomes"].items():
                into["outcomes"][outcome] = into["outcomes"].get(outcome, 0) + count
            hist = LatencyHistogram.from_dict(part["histogram"])
            hists.setdefault(name, LatencyHistogram()).merge(hist)
            for what in ("lag", "service"):
                if f"{what}_histogram" in part:
                    timing = LatencyHistogram.from_dict(part[f"{what}_histogram"])
                    extra.setdefault((name, what), LatencyHistogram()).merge(timing)
    for (name, what), hist in extra.items():
        scenarios[name][f"{what}_seconds"] = hist.percentiles().as_dict()
    for name, into in scenarios.items():
        into["latency_seconds"] = hists[name].percentiles().as_dict()
        into["error_ratio"] = into["errors"] / into["completed"] if into["completed"] else 0.0
    return {"schema": SCHEMA, "shards": len(summaries), "scenarios": scenarios}


def try_write_summary(path: str | os.PathLike[str], summary: Mapping[str, Any]) -> str | None:
    """Write ``summary`` to ``path`` atomically; return None, or why it could not be written.

    A target that exists and is not a regular file (``/dev/full``, a folder, a FIFO) is refused:
    the atomic rename would replace it rather than write to it."""
    target = Path(path)
    try:
        _refuse_special(target)
        write_json_atomic(target, summary)
    except OSError as exc:
        return _why(target, exc)
    return None


def probe_summary_path(path: str | os.PathLike[str], sample: Mapping[str, Any]) -> str | None:
    """Why a summary like ``sample`` cannot be written to ``path`` now (None: it can), found
    by writing it to a temporary file beside ``path`` and removing it. The folder is created
    when missing, as the real write would."""
    target = Path(path)
    data = (json.dumps(sample, indent=2, default=str) + "\n").encode("utf-8")
    try:
        _refuse_special(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", suffix=".probe"
        ) as probe:
            probe.write(data)
            probe.flush()
            os.fsync(probe.fileno())  # a full disk may only say so here
    except OSError as exc:
        return _why(target, exc)
    return None


def _refuse_special(target: Path) -> None:
    special = False
    with contextlib.suppress(OSError):  # cannot even look: the write says why
        special = target.exists() and not target.is_file()
    if special:
        raise OSError(f"{target} is not a regular file")


def _why(target: Path, exc: OSError) -> str:
    # mkdir under a regular file says "File exists": name the file that is in the way instead.
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a directory"
            break
    return exc.strerror or str(exc)
