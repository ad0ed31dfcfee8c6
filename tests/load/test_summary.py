"""The summary document: atomic writes, and shards' summaries merging into one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from soakwatch.files import write_json_atomic
from soakwatch.load.config import DEFAULT_BUCKETS
from soakwatch.load.histogram import LatencyHistogram
from soakwatch.load.stats import ScenarioStats
from soakwatch.load.summary import build_summary, merge_summaries


def shard_summary(shard: int, latencies: list[float], errors: int) -> dict[str, Any]:
    stats = ScenarioStats("api", "http", DEFAULT_BUCKETS, 50.0)
    for latency in latencies:
        stats.started += 1
        stats.record("ok", latency)
    for _ in range(errors):
        stats.started += 1
        stats.record("http_5xx", 0.5)
    return build_summary(
        [stats], status="completed", stop_reason=None, error=None, shard=(shard, 2),
        profile=None, started_at="", ended_at="", planned_seconds=10.0,
        elapsed_seconds=10.0, active_seconds=10.0, stages={},
    )  # fmt: skip


def test_the_shards_summaries_merge_into_exact_totals_and_percentiles() -> None:
    first = shard_summary(0, [0.001 * i for i in range(1, 101)], errors=5)
    second = shard_summary(1, [0.002 * i for i in range(1, 101)], errors=0)
    merged = merge_summaries([first, second])["scenarios"]["api"]
    assert merged["sent"] == 205 and merged["errors"] == 5
    assert merged["outcomes"]["http_5xx"] == 5
    assert merged["achieved_rate_per_second"] == pytest.approx(20.5)
    everything = LatencyHistogram()
    for value in [0.001 * i for i in range(1, 101)] + [0.002 * i for i in range(1, 101)]:
        everything.record(value)
    for _ in range(5):
        everything.record(0.5)
    expected = everything.percentiles().as_dict()
    assert merged["latency_seconds"] == {**expected, "mean": pytest.approx(expected["mean"])}


class Unwritable:
    """A value the JSON writer cannot turn into text (it falls back to ``str()``)."""

    def __str__(self) -> str:
        raise TypeError("not serialisable")


def test_a_failed_write_leaves_the_previous_summary_whole_and_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "running"})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"status": Unwritable()})  # not serialisable, fails midway
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
