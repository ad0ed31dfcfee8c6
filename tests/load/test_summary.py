"""The summary document: atomic writes, and shards' summaries merging into one."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from soakwatch.files import write_json_atomic
from soakwatch.load.config import DEFAULT_BUCKETS
from soakwatch.load.histogram import LatencyHistogram
from soakwatch.load.stats import ScenarioStats
from soakwatch.load.summary import (
    build_summary,
    merge_summaries,
    probe_summary_path,
    try_write_summary,
)


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


def test_a_summary_path_that_is_not_a_regular_file_is_refused_and_left_as_it_is(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)  # a rename over it would replace it; opening it would block
    assert try_write_summary(fifo, {"status": "completed"}) == f"{fifo} is not a regular file"
    assert probe_summary_path(fifo, {"status": "running"}) == f"{fifo} is not a regular file"
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["summary.fifo"]


def test_the_probe_names_the_file_in_the_way_and_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    under_a_file = tmp_path / "file" / "deeper" / "x.json"
    expected = f"{tmp_path / 'file'} is not a directory"
    assert probe_summary_path(under_a_file, {"status": "running"}) == expected
    assert try_write_summary(under_a_file, {"status": "completed"}) == expected
    fine = tmp_path / "new" / "summary.json"
    assert probe_summary_path(fine, {"status": "running"}) is None
    assert list((tmp_path / "new").iterdir()) == []  # the probe file is gone
    assert try_write_summary(fine, {"status": "completed"}) is None
    assert json.loads(fine.read_text()) == {"status": "completed"}
