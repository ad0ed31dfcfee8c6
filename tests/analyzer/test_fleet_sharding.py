"""Fleet scale without changing a figure: a small fleet in a real Prometheus (blocks made by
promtool) and a real VictoriaMetrics, judged by the default rules

- sharded over worker processes gives the unsharded results, in the same order;
- decoded from the answers' bytes gives what stdlib ``json`` gave (the path before orjson).

The fleet has what tends to break a merge: a service without pool or probe series, NaN
samples, a restart, a leak, a service name full of regex metacharacters, and load scenarios
(rules not grouped by service, and CPU per request, whose requests carry no service label)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from soakwatch.analyzer import PrometheusSource, analyze
from soakwatch.analyzer import sources as sources_module
from soakwatch.analyzer.sources import decode_answer
from soakwatch.recording import format_sample
from soakwatch.rules import load_rules

START = 1_700_000_000.0
HOURS = 6
SERVICES = ("api", "billing", "cache", "nopool", "restarts", "pay.ments+v2|x", "worker")
MB = 1e6


def fleet_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]]:
    """(metric, labels) -> [(time, value)]: memory every 15 s, the rest every 60 s."""
    rng = np.random.default_rng(7)
    fine = START + np.arange(0.0, HOURS * 3600.0, 15.0)
    coarse = fine[::4]
    out: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}

    def add(name: str, labels: dict[str, str], t: np.ndarray, v: np.ndarray) -> None:
        out[(name, tuple(sorted(labels.items())))] = list(zip(t.tolist(), v.tolist(), strict=True))

    for index, service in enumerate(SERVICES):
        labels = {"service": service, "instance": f"10.0.0.{index}:9000", "job": "soak"}
        hours = (fine - START) / 3600.0
        leak = 8 * MB if service == "api" else 0.0
        rss = 200 * MB + leak * hours + rng.normal(0, 0.5 * MB, fine.size)
        started = np.full(coarse.size, START - 60)
        restarts = np.zeros(coarse.size)
        if service == "restarts":
            rss = np.where(hours >= 3, rss - 50 * MB, rss)
            started = np.where(coarse >= START + 3 * 3600, START + 3 * 3600, started)
            restarts = np.where(coarse >= START + 3 * 3600, 1.0, 0.0)
        if service == "cache":
            rss[100:104] = np.nan
        add("soak_process_resident_memory_bytes", labels, fine, np.round(rss))
        add("soak_process_start_time_seconds", labels, coarse, started)
        add("soak_process_restarts_total", labels, coarse, restarts)
        up = np.ones(coarse.size)
        if service == "cache":
            up[10] = np.nan
        add("soak_process_up", labels, coarse, up)
        cpu = np.cumsum(np.full(coarse.size, 6.0 * (1.5 if service == "worker" else 1.0)))
        add("soak_process_cpu_seconds_total", labels, coarse, cpu)
        add("soak_process_open_fds", labels, coarse, 40 + (rng.random(coarse.size) < 0.1))
        add("soak_process_threads", labels, coarse, np.full(coarse.size, 12.0))
        if service != "nopool":
            pool = 10.0 + (rng.random(coarse.size) < 0.05)
            add(
                "soak_pool_connections",
                {**labels, "pool": "db", "state": "established"},
                coarse,
                pool,
            )
            add("soak_probe_success", {**labels, "probe": "http"}, coarse, np.ones(coarse.size))
            for gen in ("0", "2"):
                gc = {**labels, "generation": gen}
                examined = np.cumsum(rng.poisson(700, coarse.size)).astype(float)
                add("soak_gc_examined_objects_total", gc, coarse, examined)
                add("soak_gc_collected_objects_total", gc, coarse, np.floor(examined * 0.4))
    for scenario in ("browse", "checkout"):
        load = {"scenario": scenario, "instance": "load:9100", "job": "load"}
        total = np.cumsum(rng.poisson(600, coarse.size)).astype(float)
        add("soak_load_requests_total", {**load, "outcome": "ok"}, coarse, total)
        add("soak_load_requests_total", {**load, "outcome": "error"}, coarse, np.floor(total / 500))
        add("soak_load_scheduled_total", load, coarse, total + np.floor(total / 500))
        for le, share in (("0.1", 0.5), ("0.5", 0.9), ("+Inf", 1.0)):
            bucket = {**load, "le": le}
            add(
                "soak_load_request_duration_seconds_bucket", bucket, coarse, np.floor(total * share)
            )
    return out


def openmetrics_text() -> str:
    lines = []
    by_name: dict[str, list[str]] = {}
    for (name, labels), samples in sorted(fleet_samples().items()):
        by_name.setdefault(name, []).extend(format_sample(name, labels, v, t) for t, v in samples)
    for name, group in by_name.items():
        family = name.removesuffix("_bucket")
        lines.append(f"# TYPE {family} {'histogram' if family != name else 'unknown'}")
        lines += group
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def fleet_prometheus(
    tmp_path_factory: pytest.TempPathFactory, prometheus_on_blocks: Any
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("fleet")
    (work / "fleet.om").write_text(openmetrics_text())
    server = prometheus_on_blocks(work / "fleet.om", work)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fleet_victoriametrics(victoriametrics_server: Any) -> tuple[str, str]:
    """The fleet imported into the shared VictoriaMetrics under a label of its own."""
    run_id = uuid.uuid4().hex[:12]
    lines = [
        json.dumps(
            {
                "metric": {"__name__": name, **dict(labels), "run": run_id},
                "values": [None if np.isnan(v) else v for _t, v in samples],
                "timestamps": [round(t * 1000) for t, _v in samples],
            }
        )
        for (name, labels), samples in fleet_samples().items()
    ]
    response = requests.post(
        f"{victoriametrics_server.url}/api/v1/import",
        data="\n".join(lines).encode(),
        timeout=60,
    )
    assert response.status_code in (200, 204), response.text
    victoriametrics_server.flush()
    return victoriametrics_server.url, f'{{run="{run_id}"}}'


def figures(report: Any) -> list[dict[str, Any]]:
    return [r.to_json() for r in report.results]


def stdlib_json(content: bytes) -> tuple[Any, None]:
    """The decoding before orjson: stdlib json, every sample a Python list of two objects."""
    return json.loads(content), None


END = START + HOURS * 3600.0 - 15.0


@pytest.mark.slow
def test_a_sharded_analysis_gives_the_unsharded_results_in_the_same_order(
    fleet_prometheus: str, caplog: pytest.LogCaptureFixture
) -> None:
    rules = load_rules()
    # min_step_seconds=None: the step read from the data, as soak-analyze does without --step
    whole = analyze(PrometheusSource(fleet_prometheus, min_step_seconds=None), rules, START, END)
    with caplog.at_level(logging.INFO, logger="soakwatch.analyzer.analysis"):
        sharded = analyze(
            PrometheusSource(fleet_prometheus, min_step_seconds=None),
            rules,
            START,
            END,
            jobs=2,
            shard_services=2,
        )
    assert "judging 7 services in 4 shards, 2 processes" in caplog.text
    assert figures(sharded) == figures(whole)
    by = {(r.rule, r.subject_text): r for r in whole.results}
    # the fleet's traps are in the results compared
    assert by[("memory_growth", "service=api")].status == "fail"
    # four NaN in its memory, one in its up series
    assert by[("memory_growth", "service=cache")].details["non_finite_samples"] == 5
    assert by[("restarts", "service=restarts")].status == "fail"
    assert "no soak_pool_connections series" in by[("pool_variation", "service=nopool")].reason
    assert ("memory_growth", "service=pay.ments+v2|x") in by
    assert any(r.subject.get("scenario") == "checkout" for r in whole.results)


@pytest.mark.slow
def test_prometheus_answers_decoded_from_bytes_give_the_figures_of_stdlib_json(
    fleet_prometheus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = load_rules()
    fast = analyze(PrometheusSource(fleet_prometheus), rules, START, END, jobs=1)
    monkeypatch.setattr(sources_module, "decode_answer", stdlib_json)
    before = analyze(PrometheusSource(fleet_prometheus), rules, START, END, jobs=1)
    assert figures(fast) == figures(before)
    assert len(fast.results) > 50


@pytest.mark.slow
def test_victoriametrics_answers_decoded_from_bytes_give_the_figures_of_stdlib_json(
    fleet_victoriametrics: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, selector = fleet_victoriametrics
    rules = load_rules()
    fast = analyze(PrometheusSource(url), rules, START, END, selector, jobs=1)
    sharded = analyze(PrometheusSource(url), rules, START, END, selector, jobs=2, shard_services=3)
    monkeypatch.setattr(sources_module, "decode_answer", stdlib_json)
    before = analyze(PrometheusSource(url), rules, START, END, selector, jobs=1)
    assert figures(fast) == figures(before) == figures(sharded)
    statuses = {(r.rule, r.subject_text): r.status for r in fast.results}
    assert statuses[("memory_growth", "service=api")] == "fail"


def test_decoding_from_bytes_reads_every_number_as_json_does() -> None:
    values: list[list[Any]] = [[1700000000, "NaN"], [1700000015.5, "+Inf"], [1700000030, "-Inf"]]
    values += [[1700000045, "1e400"], [1700000060, "123456789012345678901234567"]]
    values += [
        [1700000075 + i, repr(float(x))]
        for i, x in enumerate(np.random.default_rng(3).normal(0, 1e9, 500))
    ]
    body: dict[str, Any] = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"__name__": "m", "a": 'tricky "values":[[1,"2"]]'}, "values": values},
                {"metric": {"b": "empty"}, "values": []},
            ],
        },
    }
    content = json.dumps(body, separators=(",", ":")).encode()
    document, samples = decode_answer(content)
    assert samples is not None
    assert [item["metric"] for item in document["data"]["result"]] == [
        r["metric"] for r in body["data"]["result"]
    ]
    (t, v), (t_empty, v_empty) = samples
    assert t.tolist() == [float(p[0]) for p in values]
    assert np.array_equal(v, np.array([float(p[1]) for p in values]), equal_nan=True)
    assert t_empty.size == v_empty.size == 0


def test_an_answer_that_is_not_a_matrix_is_decoded_whole() -> None:
    content = b'{"status":"success","data":{"resultType":"vector","result":'
    content += b'[{"metric":{},"value":[1,"2"]}]}}'
    data, samples = decode_answer(content)
    assert samples is None and data["data"]["result"][0]["value"] == [1, "2"]


def test_jobs_below_one_is_a_usage_error(
    leaky_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from soakwatch.analyzer.cli import main

    assert main(["--run-dir", str(leaky_run), "--jobs", "0"]) == 2
    assert "--jobs must be at least 1, not 0" in capsys.readouterr().err
