"""The same run judged from a real Prometheus (blocks made by promtool) and a real
VictoriaMetrics (samples imported over HTTP) gives the same verdicts as from the run directory."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from soakwatch.analyzer import PrometheusSource, RunDirSource, analyze
from soakwatch.analyzer.cli import main
from soakwatch.recording import export_openmetrics, iter_samples
from soakwatch.rules import load_rules
from soakwatch.rules.model import MetricSelector, parse_selector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prometheus_url(
    leaky_run: Path, tmp_path_factory: pytest.TempPathFactory, prometheus_on_blocks: Any
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prom")
    export_openmetrics(leaky_run, work / "run.om")
    server = prometheus_on_blocks(work / "run.om", work)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def victoriametrics_run(victoriametrics_server: Any, leaky_run: Path) -> tuple[str, str]:
    """The run imported into the shared VictoriaMetrics under a label of its own."""
    from soakwatch.recording import format_sample

    run_id = uuid.uuid4().hex[:12]
    lines = [
        # the import API wants milliseconds
        format_sample(name, (*labels, ("run", run_id)), value, 0).rsplit(" ", 1)[0]
        + f" {round(ts * 1000)}"
        for (name, labels), ts, value in iter_samples(leaky_run)
    ]
    response = requests.post(
        f"{victoriametrics_server.url}/api/v1/import/prometheus",
        data="\n".join(lines).encode(),
        timeout=60,
    )
    assert response.status_code in (200, 204), response.text
    victoriametrics_server.flush()
    return victoriametrics_server.url, f'{{run="{run_id}"}}'


def verdicts(report: Any) -> dict[tuple[str, str], str]:
    return {(r.rule, r.subject_text): r.status for r in report.results}


def test_prometheus_gives_the_verdicts_of_the_run_directory(
    prometheus_url: str, leaky_run: Path
) -> None:
    rules = load_rules()
    local = RunDirSource(leaky_run)
    start, end = local.time_range()
    expected = analyze(local, rules, start, end)
    remote = analyze(PrometheusSource(prometheus_url), rules, start, end)
    assert verdicts(remote) == verdicts(expected)
    memory = {r.subject_text: r for r in remote.results if r.rule == "memory_growth"}
    assert memory["service=api"].figure == pytest.approx(10.0, rel=0.05)


def test_victoriametrics_gives_the_verdicts_of_the_run_directory(
    victoriametrics_run: tuple[str, str], leaky_run: Path
) -> None:
    url, selector = victoriametrics_run
    rules = load_rules()
    local = RunDirSource(leaky_run)
    start, end = local.time_range()
    expected = analyze(local, rules, start, end)
    remote = analyze(PrometheusSource(url), rules, start, end, selector=selector)
    got = verdicts(remote)
    assert got == verdicts(expected)


@pytest.mark.parametrize("store", ["prometheus", "victoriametrics"])
def test_gzip_answers_read_from_the_connection_give_the_samples_of_plain_ones(
    store: str,
    prometheus_url: str,
    victoriametrics_run: tuple[str, str],
    leaky_run: Path,
) -> None:
    # the body is read from the connection in one go and decompressed there: a gzip answer
    # (what a store across a network sends) must give every sample a plain one gives
    url, labels = (prometheus_url, "") if store == "prometheus" else victoriametrics_run
    start, end = RunDirSource(leaky_run).time_range()
    selector = parse_selector(f"soak_process_resident_memory_bytes{labels}")
    gzip = PrometheusSource(url, compression=True)
    plain = PrometheusSource(url, compression=False)
    query = {"query": selector.promql(), "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "60"}
    with gzip.session.get(f"{url}/api/v1/query_range", params=query, stream=True) as answer:
        assert answer.headers.get("Content-Encoding") == "gzip"  # the store did compress
    a = {s.labels["service"]: s for s in gzip.fetch(selector, start, end)}
    b = {s.labels["service"]: s for s in plain.fetch(selector, start, end)}
    assert a.keys() == b.keys() == {"api", "worker"}
    for service in a:
        assert a[service].t.size > 100
        assert a[service].t.tolist() == b[service].t.tolist()
        assert a[service].v.tolist() == b[service].v.tolist()


def test_range_queries_are_split_to_respect_the_points_per_series_limit(
    prometheus_url: str, leaky_run: Path
) -> None:
    start, end = RunDirSource(leaky_run).time_range()
    selector = MetricSelector("soak_process_resident_memory_bytes")
    whole = PrometheusSource(prometheus_url, min_step_seconds=30)
    split = PrometheusSource(prometheus_url, min_step_seconds=30, max_points_per_series=200)
    a = {s.labels["service"]: s for s in whole.fetch(selector, start, end)}
    b = {s.labels["service"]: s for s in split.fetch(selector, start, end)}
    assert whole.requests_made == 1 and split.requests_made == 4  # 720 points, 200 a query
    assert a.keys() == b.keys() == {"api", "worker"}
    for service in a:
        assert a[service].t.tolist() == b[service].t.tolist()
        assert a[service].v.tolist() == b[service].v.tolist()


def test_a_bad_query_is_a_source_error_with_the_servers_reason(
    prometheus_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  odd:\n    kind: variation\n"
        "    metrics: {value: 'x{a=~\"(\"}'}\n    threshold: 5\n    unit: percent\n"
        '    comparison: "<"\n'
    )
    code = main(["--prometheus", prometheus_url, "--range", "1h", "--rules", str(rules)])
    assert code == 2
    assert "rules.odd.metrics.value: bad regular expression" in capsys.readouterr().err


def test_the_cli_reads_prometheus_with_end_and_range(
    prometheus_url: str, leaky_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _start, end = RunDirSource(leaky_run).time_range()
    code = main(
        [
            "--prometheus",
            prometheus_url,
            "--end",
            f"{end:.0f}",
            "--range",
            "6h",
            "--only",
            "memory_growth",
            "--format",
            "json",
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["verdict"] == "fail"
    assert report["source"] == f"prometheus {prometheus_url}"
