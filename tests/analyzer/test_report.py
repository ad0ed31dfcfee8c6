"""The verdict JSON read back: Report.from_json gives the same typed report, and a malformed
document is a SourceError naming the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from soakwatch.analyzer import Report, RunDirSource, analyze
from soakwatch.analyzer.formats import render_json
from soakwatch.errors import SourceError
from soakwatch.rules import load_rules


@pytest.fixture(scope="module")
def leaky_report(leaky_run: Path) -> Report:
    source = RunDirSource(leaky_run)
    start, end = source.time_range()
    return analyze(source, load_rules(), start, end)


def test_a_report_read_back_from_its_json_is_the_same_report(leaky_report: Report) -> None:
    document = json.loads(render_json(leaky_report))

    again = Report.from_json(document)

    assert again.to_json() == document
    assert again.verdict == leaky_report.verdict == "fail"
    assert again.exit_code == 1
    assert (again.start, again.end, again.source) == (
        leaky_report.start,
        leaky_report.end,
        leaky_report.source,
    )
    assert len(again.results) == len(leaky_report.results) > 0
    for read, judged in zip(again.results, leaky_report.results, strict=True):
        assert (read.rule, dict(read.subject), read.status, read.reason) == (
            judged.rule,
            dict(judged.subject),
            judged.status,
            judged.reason,
        )
        assert read.figure == pytest.approx(judged.figure, nan_ok=True)
        assert read.evidence is None
    memory = {r.subject["service"]: r for r in again.results if r.rule == "memory_growth"}
    assert memory["api"].status == "fail"
    assert memory["api"].details["slope"] == pytest.approx(10.0, rel=0.2)


def _broken(document: dict[str, Any], path: tuple[str | int, ...], value: object) -> Any:
    broken = copy.deepcopy(document)
    here: Any = broken
    for key in path[:-1]:
        here = here[key]
    if value is KeyError:
        del here[path[-1]]
    else:
        here[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("schema",), "soakwatch.report/v0", "schema: expected 'soakwatch.report/v1'"),
        (("range", "start"), "yesterday", "range.start: expected a number, got a string"),
        (("rules", "version"), 1.5, "rules.version: expected a whole number, got 1.5"),
        (("source",), KeyError, "source: missing"),
        (("results",), {}, "results: expected a list, got an object"),
        (("results", 0, "status"), "ok", "results[0].status: expected one of pass, fail"),
        (("results", 0, "figure"), "1", "results[0].figure: expected a number, got a string"),
        (("results", 1, "subject"), {"service": 3}, "results[1].subject.service: expected a"),
        (("results", 0, "threshold"), None, "results[0].threshold: expected a number, got null"),
        (("verdict",), "pass", "verdict: 'pass' contradicts its results, which make 'fail'"),
    ],
)
def test_a_malformed_verdict_is_a_source_error_naming_the_key(
    leaky_report: Report, path: tuple[str | int, ...], value: object, message: str
) -> None:
    document = _broken(json.loads(render_json(leaky_report)), path, value)

    with pytest.raises(SourceError) as caught:
        Report.from_json(document, source="runs/7/verdict.json")

    assert str(caught.value).startswith(f"runs/7/verdict.json: {message}")


def test_a_document_that_is_not_an_object_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"^verdict: expected an object, got a list$"):
        Report.from_json([])
