"""The query step comes from the data: a real Prometheus scraping a real tiny HTTP server every
1 s and every 5 s, a real VictoriaMetrics holding samples 2 s apart, and a run directory
recorded at 30 s are each read at their own sample interval; ``--step`` still overrides.

The issue's case: a Prometheus scraping every 5 s judged at a fixed 15 s had too few window
points to decide; at the inferred 5 s the same range fails as it should."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from soakwatch.analyzer import PrometheusSource, RunDirSource, analyze
from soakwatch.analyzer.cli import main
from soakwatch.analyzer.sources import sample_spacing
from soakwatch.rules import load_rules
from soakwatch.rules.model import MetricSelector, parse_selector

pytestmark = pytest.mark.slow

MEMORY = "soak_process_resident_memory_bytes"
# 200 kB/s = 720 MB/h, against a threshold of 2 MB/h: a leak no estimator can miss
GROWTH_PER_SECOND = 2e5

# judged over 45 s: needs 6 window points of 5 s, so 15 s samples (3 of them) cannot decide
RULES = """\
version: 1
rules:
  memory_growth:
    kind: slope
    metrics: {value: soak_process_resident_memory_bytes}
    group_by: [service]
    threshold: 2
    unit: MB/h
    comparison: "<"
    warmup: 0s
    window: 5s
    min_duration: 30s
    min_points: 6
"""


class LeakyExporter(ThreadingHTTPServer):
    started = 0.0


class Handler(BaseHTTPRequestHandler):
    server: LeakyExporter

    def do_GET(self) -> None:
        value = 100e6 + GROWTH_PER_SECOND * (time.time() - self.server.started)
        body = f'{MEMORY}{{service="leaky"}} {value:.0f}\n'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def scraped() -> Iterator[tuple[str, float]]:
    """A Prometheus that has scraped the leaky exporter for 50 s, as job "every1s" (1 s) and
    job "every5s" (5 s); (its URL, the end of the scraping)."""
    import servers

    exporter = LeakyExporter(("127.0.0.1", 0), Handler)
    exporter.started = time.time()
    thread = threading.Thread(target=exporter.serve_forever, daemon=True)
    thread.start()
    target = f"127.0.0.1:{exporter.server_address[1]}"
    jobs = [
        {"job_name": name, "scrape_interval": every, "static_configs": [{"targets": [target]}]}
        for name, every in (("every1s", "1s"), ("every5s", "5s"))
    ]
    prometheus = servers.start_prometheus(extra_scrape_configs=jobs)
    try:
        prometheus.wait_for(f'count_over_time({MEMORY}{{job="every5s"}}[1m]) >= 10', timeout=90)
        yield prometheus.url, time.time()
    finally:
        prometheus.stop()
        exporter.shutdown()
        exporter.server_close()


def job(name: str) -> MetricSelector:
    return parse_selector(f'{MEMORY}{{job="{name}"}}')


def test_the_sample_interval_is_read_from_prometheus_for_each_query(
    scraped: tuple[str, float],
) -> None:
    url, end = scraped
    source = PrometheusSource(url, min_step_seconds=None)
    assert source.sample_seconds(job("every1s"), end - 45, end) == pytest.approx(1.0, abs=0.05)
    assert source.sample_seconds(job("every5s"), end - 45, end) == pytest.approx(5.0, abs=0.05)
    (fine,) = source.fetch(job("every1s"), end - 45, end)
    (coarse,) = source.fetch(job("every5s"), end - 45, end)
    assert sample_spacing([fine.t]) == 1.0 and fine.t.size >= 40
    assert sample_spacing([coarse.t]) == 5.0 and 8 <= coarse.t.size <= 10
    assert source.steps == {f'{MEMORY}{{job="every1s"}}': 1.0, f'{MEMORY}{{job="every5s"}}': 5.0}
    # a fixed step is kept as given
    fixed = PrometheusSource(url, min_step_seconds=15)
    (fifteen,) = fixed.fetch(job("every5s"), end - 45, end)
    assert sample_spacing([fifteen.t]) == 15.0


def judged(
    capsys: pytest.CaptureFixture[str], url: str, end: float, rules: Path, *extra: str
) -> tuple[int, dict[str, Any]]:
    code = main(
        [
            "--prometheus",
            url,
            "--end",
            f"{end:.3f}",
            "--range",
            "45s",
            "--rules",
            str(rules),
            "--selector",
            '{job="every5s"}',
            "--format",
            "json",
            *extra,
        ]
    )
    (result,) = json.loads(capsys.readouterr().out)["results"]
    return code, dict(result)


def test_soak_analyze_judges_a_5s_scrape_at_5s_and_fails_the_leak(
    scraped: tuple[str, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, end = scraped
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    code, result = judged(capsys, url, end, rules)
    assert result["details"]["sample_seconds"] == 5.0
    assert (code, result["status"]) == (1, "fail"), result["reason"]
    assert result["figure"] == pytest.approx(GROWTH_PER_SECOND * 3600 / 1e6, rel=0.05)
    # --step still overrides: at 15 s the same range holds too few points to decide
    code, result = judged(capsys, url, end, rules, "--step", "15s")
    assert result["details"]["sample_seconds"] == 15.0
    assert (code, result["status"]) == (3, "inconclusive"), result["reason"]
    assert result["reason"].startswith("not enough data")


def test_a_victoriametrics_holding_samples_2s_apart_is_read_at_2s(
    victoriametrics_server: Any,
) -> None:
    run = uuid.uuid4().hex[:12]
    now = time.time()
    stamps = [now - 300 + 2 * i for i in range(150)]
    lines = [
        f'{MEMORY}{{service="vm",run="{run}"}} {1e8 + 1e4 * i:.0f} {round(ts * 1000)}'
        for i, ts in enumerate(stamps)
    ]
    response = requests.post(
        f"{victoriametrics_server.url}/api/v1/import/prometheus",
        data="\n".join(lines).encode(),
        timeout=30,
    )
    assert response.status_code in (200, 204), response.text
    victoriametrics_server.flush()
    vm = parse_selector(f'{MEMORY}{{run="{run}"}}')
    source = PrometheusSource(victoriametrics_server.url, min_step_seconds=None)
    assert source.sample_seconds(vm, stamps[0], stamps[-1]) == pytest.approx(2.0, abs=0.01)
    (series,) = source.fetch(vm, stamps[0], stamps[-1])
    assert sample_spacing([series.t]) == 2.0
    assert series.t.size >= 140
    # the 15 s default of a fixed step would have kept a seventh of them
    (fixed,) = PrometheusSource(victoriametrics_server.url).fetch(vm, stamps[0], stamps[-1])
    assert fixed.t.size <= 21


def test_a_run_directory_is_judged_at_its_recorded_interval(
    leaky_run: Path, prometheus_on_blocks: Any, tmp_path: Path
) -> None:
    from soakwatch.recording import export_openmetrics

    local = RunDirSource(leaky_run)
    start, end = local.time_range()
    assert local.sample_seconds(MetricSelector(MEMORY), start, end) == 30.0
    report = analyze(local, load_rules(), start, end, only=["memory_growth"])
    assert {r.details["sample_seconds"] for r in report.results} == {30.0}
    # the same samples in Prometheus blocks (promtool): the inferred step is 30 s, not 15 s
    export_openmetrics(leaky_run, tmp_path / "run.om")
    server = prometheus_on_blocks(tmp_path / "run.om", tmp_path)
    try:
        remote = analyze(
            PrometheusSource(server.url, min_step_seconds=None),
            load_rules(),
            start,
            end,
            only=["memory_growth"],
        )
    finally:
        server.stop()
    assert {r.details["sample_seconds"] for r in remote.results} == {30.0}
    assert [(r.subject, r.status) for r in remote.results] == [
        (r.subject, r.status) for r in report.results
    ]
