"""Allocation sites of a memory verdict judged on a short last regime: when no site changed in
the judged range (a Go heap profile changes only at a garbage collection), the sites are read
over the whole range instead of naming a site with share 0, and the details say from when."""

from __future__ import annotations

from pathlib import Path

import pytest

from soakwatch.analyzer.attribution import attach_allocation_sites
from soakwatch.analyzer.report import Result
from soakwatch.analyzer.sources import RunDirSource
from soakwatch.recording import SampleWriter
from soakwatch.rules import load_rules

START = 1_764_000_000.0
SERVICE = {"service": "goleak"}


def recorded(run_dir: Path, *, last_change: float) -> RunDirSource:
    """30 s of a leaking site that steps up by 1 MB every 4 s until ``last_change`` and then
    stays put (no collection since), a flat second site, scraped every second."""
    with SampleWriter(run_dir) as writer:
        for k in range(31):
            ts = START + k
            leak = 1e6 * (min(ts, START + last_change) - START) // 4
            for site, value in (("main.go:42", leak), ("main.go:7", 5e5)):
                labels = {**SERVICE, "site": site, "function": "main.keep"}
                writer.write_sample("soak_allocation_site_bytes", labels, value, ts)
            writer.write_sample("soak_allocation_attribution_up", SERVICE, 1.0, ts)
    return RunDirSource(run_dir)


def memory_result(judged_start: float) -> Result:
    return Result(
        rule="memory_growth", kind="slope", subject=SERVICE, status="fail", figure=1800.0,
        unit="MB/h", threshold=50.0, comparison="<", reason="slope 1.8e+03 MB/h",
        details={"judged_start": judged_start},
    )  # fmt: skip


@pytest.mark.parametrize("last_change", [22.0, 30.0])
def test_sites_of_a_short_judged_regime_come_from_the_whole_run_when_none_grew_there(
    tmp_path: Path, last_change: float
) -> None:
    rule = load_rules().rules["memory_growth"]
    source = recorded(tmp_path, last_change=last_change)
    judged = START + 24.0
    [result] = attach_allocation_sites(rule, [memory_result(judged)], source, START, START + 30)
    sites = result.details["allocation_sites"]
    assert sites[0]["site"] == "main.go:42" and sites[0]["share"] == 1.0, sites
    assert sites[0]["growth_bytes_per_hour"] > 0
    widened = last_change < 24.0  # no step of the leaking site after the judged start
    assert result.details["allocation_sites_from"] == (START if widened else judged)
    assert ("over the whole run" in result.reason) is widened, result.reason
    assert "mostly at main.go:42" in result.reason
