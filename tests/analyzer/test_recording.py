"""The run-directory recording: written scrape by scrape, read back per series, exported to an
OpenMetrics file that real promtool imports."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from soakwatch.errors import SourceError
from soakwatch.recording import (
    SAMPLES_FILE,
    SampleWriter,
    export_openmetrics,
    iter_samples,
    read_samples,
)

RSS = ("soak_process_resident_memory_bytes", (("instance", "a:1"), ("service", "api")))


def scrape_text(rss: float, requests: int) -> str:
    registry = CollectorRegistry()
    Gauge("soak_process_resident_memory_bytes", "rss", ["service"], registry=registry).labels(
        "api"
    ).set(rss)
    counter = Counter("soak_load_requests", "n", ["scenario", "outcome"], registry=registry)
    counter.labels('we"ird\\name', "ok").inc(requests)
    histogram = Histogram("soak_load_request_duration_seconds", "d", registry=registry)
    histogram.observe(0.2)
    return generate_latest(registry).decode()


def record(run_dir: Path, scrapes: int = 5) -> None:
    with SampleWriter(run_dir) as writer:
        for i in range(scrapes):
            writer.write_scrape(scrape_text(1e6 + i, 10 * i), 1000.0 + 15 * i, {"instance": "a:1"})


def test_scrapes_read_back_as_time_ordered_series(tmp_path: Path) -> None:
    record(tmp_path)
    series = read_samples(tmp_path)
    t, v = series[RSS]
    assert np.array_equal(t, 1000.0 + 15 * np.arange(5))
    assert np.array_equal(v, 1e6 + np.arange(5))
    requests = [k for k in series if k[0] == "soak_load_requests_total"]
    assert dict(requests[0][1])["scenario"] == 'we"ird\\name'
    assert series[requests[0]][1][-1] == 40.0


def test_a_truncated_last_line_from_a_killed_run_is_ignored(tmp_path: Path) -> None:
    record(tmp_path, scrapes=2)
    with (tmp_path / SAMPLES_FILE).open("a") as handle:
        handle.write('soak_process_resident_memory_bytes{instance="a:1",service="api"} 99')
    _t, v = read_samples(tmp_path)[RSS]
    assert v.tolist() == [1e6, 1e6 + 1]


def test_a_malformed_line_in_the_middle_is_a_source_error_naming_the_line(
    tmp_path: Path,
) -> None:
    (tmp_path / SAMPLES_FILE).write_text("# c\ngood 1 2\nbad x 2\nlast 1 2\n")
    with pytest.raises(SourceError, match=r"samples.om:3: not a number"):
        list(iter_samples(tmp_path))


def test_a_scraped_label_that_clashes_with_an_extra_label_is_kept_as_exported(
    tmp_path: Path,
) -> None:
    with SampleWriter(tmp_path / "x.om") as writer:
        writer.write_scrape('m{job="inner"} 1\n', 5.0, {"job": "soak"})
    assert list(iter_samples(tmp_path / "x.om")) == [
        (("m", (("exported_job", "inner"), ("job", "soak"))), 5.0, 1.0)
    ]


def test_a_missing_run_directory_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read samples"):
        read_samples(tmp_path / "nowhere")


@pytest.mark.requires_binary("promtool", "prometheus")
def test_promtool_imports_the_exported_openmetrics_file(tmp_path: Path) -> None:
    record(tmp_path / "run", scrapes=20)
    out = tmp_path / "export.om"
    count = export_openmetrics(tmp_path / "run", out)
    assert out.read_text().endswith("# EOF\n")
    data = tmp_path / "data"
    done = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(out), str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    (data / "wal").mkdir()  # promtool 2.42's dump insists on a WAL directory
    dump = subprocess.run(
        ["promtool", "tsdb", "dump", str(data)], capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    lines = [line for line in dump.stdout.splitlines() if line.strip()]
    assert len(lines) == count
    assert any("soak_load_request_duration_seconds_bucket" in line for line in lines)
