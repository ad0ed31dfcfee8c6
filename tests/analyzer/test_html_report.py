"""The HTML report from a recorded run directory, analyzed by the real analyzer: the load
summary and the run config come from the run dir, zero passes and not-applicable results are
folded into one line each, a counter ratio is plotted as the ratio judged (or not at all), and
every plot's y axis contains the levels its text quotes."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from soakwatch.analyzer import RunDirSource, analyze
from soakwatch.analyzer.html import _figure, render_html
from soakwatch.analyzer.report import Report, Result
from soakwatch.load.histogram import LatencyHistogram
from soakwatch.load.outcomes import OUTCOMES
from soakwatch.load.python import new_step, step_summaries
from soakwatch.load.stats import ScenarioStats
from soakwatch.load.summary import build_summary
from soakwatch.recording import SampleWriter
from soakwatch.rules.model import load_rules

START = 1_764_000_000.0
INTERVAL = 30.0
HOURS = 2.0
BUCKETS = (0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, float("inf"))
MB = 1e6


def _write_recording(run_dir: Path) -> None:
    """Scenario "api": 10 requests/s, 0.2 % errors in the first hour, 3 % in the second; its
    latency rises from ~50 ms to ~90 ms. Scenario "quiet": no error at all. Scenario "wide":
    every outcome class as its own series (more than the evidence keeps). Service "api": flat
    memory, no restart, no GC series (gc_efficiency does not apply)."""
    rng = np.random.default_rng(7)
    times = START + np.arange(0.0, HOURS * 3600.0, INTERVAL)
    counts = {name: dict.fromkeys(OUTCOMES, 0.0) for name in ("api", "quiet", "wide")}
    buckets = np.zeros(len(BUCKETS))
    with SampleWriter(run_dir) as writer:
        for ts in times:
            hour = (ts - START) / 3600.0
            share = 0.002 if hour < 1.0 else 0.03
            made = 10 * INTERVAL
            errors = float(rng.binomial(int(made), share))
            counts["api"]["ok"] += made - errors
            counts["api"]["http_5xx"] += errors
            counts["quiet"]["ok"] += made
            counts["wide"]["ok"] += made - 6
            counts["wide"]["timeout"] += 4
            counts["wide"]["connect_error"] += 2
            for scenario, outcomes in counts.items():
                kept = OUTCOMES if scenario == "wide" else ("ok", "http_5xx")
                for outcome in kept:
                    labels = {"scenario": scenario, "outcome": outcome, "job": "load"}
                    writer.write_sample("soak_load_requests_total", labels, outcomes[outcome], ts)
            median = 0.05 * (1 + 0.8 * hour / HOURS)
            latencies = rng.lognormal(np.log(median), 0.3, int(made))
            buckets += np.array([np.sum(latencies <= le) for le in BUCKETS])
            for le, count in zip(BUCKETS, buckets, strict=True):
                text = "+Inf" if le == float("inf") else f"{le:g}"
                labels = {"scenario": "api", "le": text, "job": "load"}
                writer.write_sample("soak_load_request_duration_seconds_bucket", labels, count, ts)
            service = {"service": "api", "instance": "api:9000", "job": "soak"}
            rss = 150 * MB + rng.normal(0, 0.3 * MB)
            writer.write_sample("soak_process_resident_memory_bytes", service, rss, ts)
            writer.write_sample("soak_process_start_time_seconds", service, START - 60, ts)
            writer.write_sample("soak_process_restarts_total", service, 0.0, ts)
            writer.write_sample("soak_process_up", service, 1.0, ts)


def _load_summary() -> dict[str, Any]:
    """A real load summary (the load driver's own build_summary): "api" on target with a
    Python step, "slow" at half its target rate."""
    api = ScenarioStats("api", "python", BUCKETS, target_rate_per_second=10.0)
    api.scheduled = api.started = 600
    for index in range(600):
        api.record("http_5xx" if index % 100 == 0 else "ok", 0.010 + index * 1e-5)
    slow = ScenarioStats("slow", "http", BUCKETS, target_rate_per_second=10.0)
    slow.scheduled = slow.started = 300
    for _ in range(300):
        slow.record("ok", 0.2)
    summary = build_summary(
        [api, slow],
        status="completed",
        stop_reason=None,
        error=None,
        shard=(0, 1),
        profile="ci",
        started_at="2025-11-24T16:00:00Z",
        ended_at="2025-11-24T16:01:00Z",
        planned_seconds=60.0,
        elapsed_seconds=60.5,
        active_seconds=60.0,
        stages={"ramp_up_seconds": 0.0, "steady_seconds": 60.0, "ramp_down_seconds": 0.0},
    )
    step = new_step("login", BUCKETS)
    for _ in range(40):
        step.record("ok", 0.004)
    step.record("timeout", None)
    summary["scenarios"]["api"]["steps"] = step_summaries({"login": step})
    return summary


CONFIG = {
    "run_id": "20251124T160000Z-ci",
    "source": "soak.yaml",
    "profile": {"name": "ci", "duration_seconds": 7200.0},
    "duration_seconds": 7200.0,
    "sampling_interval_seconds": 30.0,
    "prometheus": {"url": "https://reader:hunter2@prom.example:9090/", "password": "s3cr3t-pw"},
    "load": {
        "scenarios": [
            {"name": "api", "headers": {"Authorization": "Bearer tok-123456"}, "api_key": "k-9"}
        ]
    },
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    run_dir = tmp_path_factory.mktemp("recorded-run")
    _write_recording(run_dir)
    (run_dir / "load-summary.json").write_text(json.dumps(_load_summary()), encoding="utf-8")
    (run_dir / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    source = RunDirSource(run_dir)
    report = analyze(source, load_rules(None), *source.time_range())
    return run_dir, report


@pytest.fixture(scope="module")
def page(recorded: tuple[Path, Report]) -> str:
    run_dir, report = recorded
    return render_html(report, run_dir=run_dir)


def _result(report: Report, rule: str, **subject: str) -> Result:
    found = [r for r in report.results if r.rule == rule and dict(r.subject) == subject]
    assert len(found) == 1, [(r.rule, r.subject_text) for r in report.results]
    return found[0]


def test_an_error_ratio_is_plotted_as_the_ratio_it_judged(recorded: tuple[Path, Report]) -> None:
    _run_dir, report = recorded
    result = _result(report, "error_ratio", scenario="api")
    assert result.status == "fail" and result.figure is not None and result.figure > 1.0
    assert result.evidence is not None
    figure = _figure(result, result.evidence, report.start, report.end)
    assert figure is not None
    axes = figure.axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    judged = lines["ratio since warm-up"]
    # the ratio since warm-up ends at the figure the rule judged, in the rule's unit (percent)
    assert float(np.asarray(judged.get_ydata())[-1]) == pytest.approx(result.figure, rel=1e-6)
    windowed = next(line for label, line in lines.items() if label.startswith("ratio over "))
    values = np.asarray(windowed.get_ydata(), dtype=float)
    # the windows see the error share rise from 0.2 % to 3 %
    assert values[: values.size // 4].mean() < 1.0 < 2.0 < values[-values.size // 4 :].mean()
    low, high = axes.get_ylim()
    assert low <= result.threshold <= high and low <= result.figure <= high
    assert "counter" not in axes.get_ylabel()


def test_a_failing_ratio_over_many_outcome_series_is_plotted_as_the_ratio_judged(
    recorded: tuple[Path, Report], page: str
) -> None:
    """Scenario "wide" has 13 outcome series: the evidence keeps them all, so the report can
    plot the ratio (it once kept 8, which cut every error series off: no plot)."""
    _run_dir, report = recorded
    result = _result(report, "error_ratio", scenario="wide")
    assert result.status == "fail" and result.evidence is not None
    figure = _figure(result, result.evidence, report.start, report.end)
    assert figure is not None
    assert "counter" not in figure.axes[0].get_ylabel()
    section = page.split("error_ratio &mdash; scenario=wide", 1)[1].split("</section>", 1)[0]
    assert "<img" in section and "No plot" not in section


def test_a_ratio_whose_evidence_lacks_series_gets_no_plot_of_raw_counters(
    recorded: tuple[Path, Report],
) -> None:
    _run_dir, report = recorded
    result = _result(report, "error_ratio", scenario="wide")
    assert result.evidence is not None
    # the "ok" requests left out: a ratio of what remains would not be the ratio judged
    partial = dataclasses.replace(result.evidence, series=result.evidence.series[1:])
    assert _figure(result, partial, report.start, report.end) is None


def test_the_latency_axis_contains_every_level_its_text_quotes(
    recorded: tuple[Path, Report],
) -> None:
    _run_dir, report = recorded
    result = _result(report, "latency_degradation", scenario="api")
    assert result.status in ("pass", "fail") and result.evidence is not None
    figure = _figure(result, result.evidence, report.start, report.end)
    assert figure is not None
    axes = figure.axes[0]
    low, high = axes.get_ylim()
    quoted = [result.details[key] * 1000 for key in ("first", "last", "baseline", "late")]
    fails_above = max(
        result.details["baseline"] * (1 + result.threshold / 100),
        result.details["baseline"] + result.details["min_increase"],
    )
    for level in [*quoted, fails_above * 1000]:
        assert low <= level <= high, (level, low, high)
    assert axes.get_ylabel() == "p95\n(ms)"


def test_zero_passes_and_not_applicable_results_fold_into_one_line_each(
    recorded: tuple[Path, Report], page: str
) -> None:
    _run_dir, report = recorded
    restarts = _result(report, "restarts", service="api")
    quiet = _result(report, "error_ratio", scenario="quiet")
    assert restarts.status == quiet.status == "pass" and restarts.figure == quiet.figure == 0
    not_applicable = [r for r in report.results if r.status == "not_applicable"]
    assert not_applicable, "the recording should leave a rule without data"
    folded = re.search(r'<p class="folded">(\d+) passes with a zero figure: (.*?)</p>', page)
    assert folded is not None
    assert "<b>restarts</b> (service=api)" in folded.group(2)
    assert "scenario=quiet" in folded.group(2)
    zero = [r for r in report.results if r.status == "pass" and r.figure == 0]
    assert int(folded.group(1)) == len(zero)
    na = re.search(r'<p class="folded">(\d+) results? not applicable: (.*?)</p>', page)
    assert na is not None and int(na.group(1)) == len(not_applicable)
    for r in not_applicable:
        assert f"<b>{r.rule}</b>" in na.group(2)
    # no row and no plot of their own
    assert "<td>restarts</td>" not in page and "restarts &mdash;" not in page
    assert "scenario=quiet</td>" not in page
    rows = page.count("<tr class=")
    shown = {
        (r.rule, r.status, r.reason) if r.figure is None else (index,)
        for index, r in enumerate(report.results)
        if r.status != "not_applicable" and not (r.status == "pass" and r.figure == 0)
    }
    assert rows - _load_rows(page) == len(shown)


def test_results_that_say_the_same_thing_share_one_row() -> None:
    def short(scenario: str, figure: float | None = None) -> Result:
        return Result(
            rule="latency_degradation",
            kind="quantile_change",
            subject={"scenario": scenario},
            status="inconclusive",
            figure=figure,
            unit="percent",
            threshold=25.0,
            comparison="<",
            reason="not enough data: 10s after warm-up",
        )

    results = [short("a"), short("b"), short("c"), short("d", 3.0)]
    report = Report(0.0, 40.0, "test", "rules.yaml", 1, results, 0.0)
    page = render_html(report)
    assert page.count('<tr class="inconclusive">') == 2
    assert "<td>3 subjects: scenario=a, scenario=b, scenario=c</td>" in page
    assert "<td>scenario=d</td>" in page


def _load_rows(page: str) -> int:
    table = page.split('<table class="load">', 1)[1].split("</table>", 1)[0]
    return table.count("<tr class=")


def test_the_load_summary_shows_rates_percentiles_outcomes_lag_and_steps(
    recorded: tuple[Path, Report], page: str
) -> None:
    run_dir, _report = recorded
    summary = json.loads((run_dir / "load-summary.json").read_text(encoding="utf-8"))
    load = page.split("<h2>Load</h2>", 1)[1].split("<h2>", 1)[0]
    api = load.split("<td>api</td>", 1)[1].split("</tr>", 1)[0]
    latency = summary["scenarios"]["api"]["latency_seconds"]
    expected = " / ".join(f"{latency[q] * 1000:.3g}" for q in ("p50", "p95", "p99"))
    assert f"<td>{expected}</td>" in api
    assert "<td>10/s</td><td>10/s (100%)</td>" in api
    assert "ok 594, http_5xx 6" in api and "6 (1 %)" in api
    slow = load.split("<td>slow</td>", 1)[1].split("</tr>", 1)[0]
    assert "5/s (50%)" in slow
    assert '<tr class="short"><td>slow</td>' in load  # short of its target: marked
    assert "step login" in load and "ok 40, timeout 1" in load
    assert "Load thresholds: error_ratio&lt;1" not in load  # no thresholds in this summary
    assert "900 operations, 6 errors" in load


def test_the_run_config_is_shown_without_any_secret(page: str) -> None:
    assert "<h2>Run configuration</h2>" in page
    assert "run 20251124T160000Z-ci; profile ci" in page
    for secret in ("hunter2", "s3cr3t-pw", "tok-123456", "k-9"):
        assert secret not in page
    assert "reader:***@prom.example:9090" in page


def test_soak_analyze_finds_the_run_dir_files_from_the_report_source(
    recorded: tuple[Path, Report],
) -> None:
    """soak-analyze --run-dir renders render_html(report): the run dir is the report's source."""
    _run_dir, report = recorded
    page = render_html(report)
    assert "<h2>Load</h2>" in page and "<h2>Run configuration</h2>" in page


def test_a_run_dir_with_broken_files_still_renders_and_says_why(
    recorded: tuple[Path, Report], tmp_path: Path
) -> None:
    _run_dir, report = recorded
    (tmp_path / "load-summary.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "config.json").write_text("[1, 2]", encoding="utf-8")
    page = render_html(report, run_dir=tmp_path)
    assert "<h2>Load</h2>" not in page and "<h2>Run configuration</h2>" not in page
    assert "not shown: load-summary.json: not JSON" in page
    assert "not shown: config.json: expected an object, got list" in page


def test_the_plots_are_compact_palette_pngs(page: str) -> None:
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert images
    sizes = [len(base64.b64decode(image)) for image in images]
    # 880 x 240 px, 64 colours: a plot of lines is a few tens of KB at most
    assert max(sizes) < 60_000, sizes
    for image in images:
        data = base64.b64decode(image)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert data[25] == 3  # colour type 3: a palette PNG


def test_a_histogram_of_the_load_module_keeps_the_percentiles_the_report_quotes() -> None:
    """The report reads latency_seconds as the load driver writes it (seconds, p50/p95/p99)."""
    histogram = LatencyHistogram()
    for value in (0.001, 0.002, 0.003):
        histogram.record(value)
    assert {"p50", "p95", "p99"} <= set(histogram.percentiles().as_dict())


# -- issue 17: the allocation sites of a memory finding ------------------------------------------
SITES = {  # site, function -> growth in MB/h (the service leaks 20 MB/h in all)
    ("app/cache.py:42", "Cache.put"): 15.0,
    ("app/log.py:7", "remember"): 3.0,
    ("app/idle.py:3", "<module>"): 0.0,
}


@pytest.fixture(scope="module")
def leaking(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report]:
    """Service "cache" grows 20 MB/h over 2 h; its exporter served three allocation sites."""
    run_dir = tmp_path_factory.mktemp("leaking-run")
    rng = np.random.default_rng(17)
    times = START + np.arange(0.0, HOURS * 3600.0, INTERVAL)
    with SampleWriter(run_dir) as writer:
        for ts in times:
            hours = (ts - START) / 3600.0
            service = {"service": "cache", "instance": "cache:9000", "job": "soak"}
            rss = 100 * MB + 20 * MB * hours + rng.normal(0, 0.2 * MB)
            writer.write_sample("soak_process_resident_memory_bytes", service, rss, ts)
            writer.write_sample("soak_process_start_time_seconds", service, START - 60, ts)
            writer.write_sample("soak_process_up", service, 1.0, ts)
            writer.write_sample("soak_allocation_attribution_up", service, 1.0, ts)
            for (site, function), growth in SITES.items():
                labels = {**service, "site": site, "function": function}
                kept = growth * MB * hours + 1000.0
                writer.write_sample("soak_allocation_site_bytes", labels, kept, ts)
    source = RunDirSource(run_dir)
    return run_dir, analyze(source, load_rules(None), *source.time_range())


def _png_images(page: str, alt_prefix: str) -> list[tuple[str, bytes]]:
    found = re.findall(rf'<img class="sites" alt="({alt_prefix}[^"]*)"[^>]*base64,([^"]+)"', page)
    return [(alt, base64.b64decode(data)) for alt, data in found]


def test_a_memory_finding_shows_a_chart_and_table_of_its_allocation_sites(
    leaking: tuple[Path, Report],
) -> None:
    run_dir, report = leaking
    memory = _result(report, "memory_growth", service="cache")
    assert memory.status == "fail"
    sites = memory.details["allocation_sites"]
    assert [s["site"] for s in sites][:2] == ["app/cache.py:42", "app/log.py:7"]
    page = render_html(report, run_dir=run_dir)
    images = _png_images(page, "allocation sites: ")
    assert len(images) == 1
    alt, png = images[0]
    assert alt == "allocation sites: app/cache.py:42, app/log.py:7, app/idle.py:3"
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    section = page.split('<img class="sites"', 1)[1].split("</section>", 1)[0]
    table = re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td><td>([^<]+)</td>", section)
    assert [(site, function) for site, function, _ in table] == [
        ("app/cache.py:42", "Cache.put"),
        ("app/log.py:7", "remember"),
        ("app/idle.py:3", "&lt;module&gt;"),
    ]
    growth = float(table[0][2].removesuffix(" MB/h"))
    assert 14.0 < growth < 16.0, table
    assert "mostly at app/cache.py:42" in page  # the reason, as in the table


def test_the_sites_chart_is_there_without_evidence_and_absent_without_sites(
    leaking: tuple[Path, Report], page: str
) -> None:
    _run_dir, report = leaking
    memory = _result(report, "memory_growth", service="cache")
    # a report read back from JSON has details but no evidence to plot
    bare = dataclasses.replace(
        report, source="verdict.json", results=[dataclasses.replace(memory, evidence=None)]
    )
    alone = render_html(bare)
    assert len(_png_images(alone, "allocation sites: app/cache.py:42")) == 1
    # the recorded run of the other tests has no allocation site: no chart, no table
    assert 'class="sites"' not in page
