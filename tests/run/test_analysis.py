"""The run's analysis: one in-process analysis of the recorded samples, rendered three times
(JSON, JUnit, HTML) with the scenarios the run left out, and the --fail-fast early verdict."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from soakwatch.recording import SampleWriter
from soakwatch.run.analysis import analyze_run, early_verdict

RULES = Path(__file__).parent / "data" / "short-rules.yaml"
LEAK_BYTES_PER_SECOND = 4e6  # about 14 GB/h: the short rules fail it in 30 s


def record_a_leak(run_dir: Path, seconds: int = 30) -> None:
    """A run directory whose service grows by LEAK_BYTES_PER_SECOND, sampled every second."""
    start = 1_790_000_000.0
    with SampleWriter(run_dir) as writer:
        for i in range(seconds):
            labels = {"service": "backend", "job": "exporter", "instance": "127.0.0.1:1"}
            rss = 50e6 + LEAK_BYTES_PER_SECOND * i + (i % 3) * 1e4
            writer.write_sample("soak_process_resident_memory_bytes", labels, rss, start + i)
            writer.write_sample("soak_process_start_time_seconds", labels, start - 5, start + i)


def test_one_analysis_writes_three_reports_that_agree_and_list_the_skipped_scenario(
    tmp_path: Path,
) -> None:
    record_a_leak(tmp_path)
    analysis = analyze_run(tmp_path, RULES, skipped={"ws_auth": "auth unavailable (down)"})
    assert analysis.status == "fail"
    assert analysis.report is not None and analysis.report.verdict == "fail"
    assert set(analysis.reports) == {"json", "junit", "html"}

    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict == analysis.verdict
    assert verdict["verdict"] == "fail"
    [memory] = [r for r in verdict["results"] if r["rule"] == "memory_growth"]
    assert memory["status"] == "fail" and memory["figure"] > 1000

    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["verdict"] == "fail"
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == str(len(verdict["results"]) + 1)
    [skipped] = [c for c in cases if c.get("classname") == "soakwatch.scenario"]
    assert skipped.get("name") == "ws_auth"
    marker = skipped.find("skipped")
    assert marker is not None
    assert marker.get("message") == "scenario left out: auth unavailable (down)"

    html = (tmp_path / "report.html").read_text()
    assert '<p class="verdict">FAIL</p>' in html
    assert (
        "<h2>Scenarios left out of this run</h2><ul><li><b>ws_auth</b>: auth unavailable (down)"
        "</li></ul>\n<h2>Findings</h2>" in html
    )
    [line] = (tmp_path / "logs" / "analyze.log").read_text().splitlines()
    assert line.endswith(
        f"analyzed run directory {tmp_path} over 29s: fail ({len(verdict['results'])} results);"
        " wrote verdict.json, junit.xml, report.html"
    )


def test_a_run_with_nothing_recorded_has_status_error_and_says_why_in_its_log(
    tmp_path: Path,
) -> None:
    analysis = analyze_run(tmp_path, RULES)
    assert (analysis.status, analysis.verdict, analysis.reports) == ("error", None, {})
    log = (tmp_path / "logs" / "analyze.log").read_text()
    assert log.rstrip().endswith(
        f"analysis failed: cannot read samples: {tmp_path / 'samples.om'}: "
        "No such file or directory"
    )
    assert not (tmp_path / "verdict.json").exists()


def test_the_early_verdict_judges_what_was_recorded_so_far_in_process(tmp_path: Path) -> None:
    assert early_verdict(tmp_path, RULES) is None
    record_a_leak(tmp_path)
    assert early_verdict(tmp_path, RULES) == "fail"
    assert not (tmp_path / "verdict.json").exists()
