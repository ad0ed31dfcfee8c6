"""Allocation attribution of a Python service (``start_in_process(attribution=...)``), against
real processes: a service that leaks at two known lines at known rates while it churns through
short-lived allocations, one whose tracemalloc is taken or missing, and a ``soak run`` of the
sample service with its leak knob on whose verdict names the sample service's leaking line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from soakwatch.exporter.attribution import AllocationSampler, AttributionConfig, SiteNamer

SERVICE = textwrap.dedent(
    """
    import json, sys, threading, time
    from soakwatch.exporter.attribution import AttributionConfig
    from soakwatch.exporter.inprocess import start_in_process

    KEPT = []

    def keep_big():
        KEPT.append(bytearray(BIG))  # LEAK-BIG

    def keep_small():
        KEPT.append(bytearray(SMALL))  # LEAK-SMALL

    def request():
        payload = [{"id": i, "text": "x" * 40} for i in range(100)]  # TRANSIENT
        return len(json.dumps(payload))

    BIG, SMALL, TICK = int(sys.argv[1]), int(sys.argv[2]), 0.02

    def serve():
        started = time.monotonic()
        while True:
            for _ in range(5):
                request()
            ticks = int((time.monotonic() - started) / TICK)
            while len(KEPT) < 2 * ticks:
                keep_big()
                keep_small()
            time.sleep(TICK / 2)

    exporter = start_in_process(
        port=0, service="svc", process_metrics=False,
        attribution=AttributionConfig(window_seconds=1.0, interval_seconds=2.0, top=5),
    )
    threading.Thread(target=serve, daemon=True).start()
    print(exporter.url, flush=True)
    time.sleep(3600)
    """
)


def line_of(source: str, marker: str) -> int:
    return next(n for n, text in enumerate(source.splitlines(), 1) if marker in text)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


SAMPLE = re.compile(r"^(soak_allocation_\w+)\{([^}]*)\} (\S+)$", re.M)


def series_of(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for name, labels, value in SAMPLE.findall(text):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out.append((name, pairs, float(value)))
    return out


def start_script(path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Any, str]:
    process = subprocess.Popen(
        [sys.executable, str(path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise AssertionError(f"the service did not start: {process.communicate()}")
    return process, url


def stop(process: Any) -> str:
    process.terminate()
    _, err = process.communicate(timeout=10)
    return str(err)


def test_sampled_sites_match_the_true_leaks_in_order_rate_and_function(tmp_path: Path) -> None:
    """The measurement of how well the windows find the true sites: two leaks of 50 and 10
    KB/s, under churn of short-lived allocations on every tick."""
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    big, small = 1000, 200  # bytes per 20 ms tick: 50 kB/s and 10 kB/s
    process, url = start_script(script, str(big), str(small))
    try:
        started = time.monotonic()
        readings = []
        while time.monotonic() - started < 16:
            time.sleep(2)
            readings.append((time.monotonic() - started, series_of(scrape(url))))
    finally:
        err = stop(process)
    sites = [(labels, value) for name, labels, value in readings[-1][1]
             if name == "soak_allocation_site_bytes"]  # fmt: skip
    assert sites, err
    by_site = {labels["site"]: (labels["function"], value) for labels, value in sites}
    big_site = f"service.py:{line_of(SERVICE, 'LEAK-BIG')}"
    small_site = f"service.py:{line_of(SERVICE, 'LEAK-SMALL')}"
    ranked = sorted(by_site, key=lambda s: by_site[s][1], reverse=True)
    assert ranked[:2] == [big_site, small_site], by_site
    assert by_site[big_site][0] == "keep_big" and by_site[small_site][0] == "keep_small"
    # the estimate of kept bytes against the truth: the served total covers the time from the
    # exporter's start to the last window (within 2 s of the last reading)
    elapsed = readings[-1][0]
    true_big = big / 0.02 * elapsed
    assert 0.5 * true_big < by_site[big_site][1] < 1.5 * true_big, (by_site, true_big)
    ratio = by_site[big_site][1] / by_site[small_site][1]
    assert 2.5 < ratio < 10, by_site  # truly 5
    # what the churn leaves is small against the leaks: in-flight blocks cancel
    transient = f"service.py:{line_of(SERVICE, 'TRANSIENT')}"
    assert abs(by_site.get(transient, ("", 0.0))[1]) < 0.2 * by_site[big_site][1]
    # labels: relative to the service's folder, never an absolute or library path
    for labels, _ in sites:
        assert not labels["site"].startswith("/") and "site-packages" not in labels["site"]
    ups = [v for name, _, v in readings[-1][1] if name == "soak_allocation_attribution_up"]
    assert ups == [1.0]


def test_tracemalloc_taken_by_someone_else_is_a_warning_and_up_0_not_a_crash(
    tmp_path: Path,
) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    env = {**__import__("os").environ, "PYTHONTRACEMALLOC": "1"}
    process, url = start_script(script, "100", "10", env=env)
    try:
        time.sleep(1)
        first = series_of(scrape(url))
        time.sleep(4)  # past the first window
        later = series_of(scrape(url))
        assert process.poll() is None
    finally:
        err = stop(process)
    assert "allocation attribution for svc is off: tracemalloc is already tracing" in err
    for reading in (first, later):
        assert [v for n, _, v in reading if n == "soak_allocation_attribution_up"] == [0.0]
        assert not [n for n, _, _ in reading if n == "soak_allocation_site_bytes"]


def test_an_interpreter_without_tracemalloc_is_a_warning_and_up_0(tmp_path: Path) -> None:
    """A stand-in: no interpreter here lacks tracemalloc, so the script hides the module
    (``sys.modules["tracemalloc"] = None`` makes its import fail as where it is missing)."""
    script = tmp_path / "service.py"
    script.write_text('import sys\nsys.modules["tracemalloc"] = None\n' + SERVICE)
    process, url = start_script(script, "100", "10")
    try:
        reading = series_of(scrape(url))
        assert process.poll() is None
    finally:
        err = stop(process)
    assert "allocation attribution for svc is off: this interpreter has no tracemalloc" in err
    assert [v for n, _, v in reading if n == "soak_allocation_attribution_up"] == [0.0]


def test_sites_stay_bounded_and_never_name_code_outside_the_root(tmp_path: Path) -> None:
    """Sixty leaking lines in the service's code: at most ``top`` are served and at most
    4 x top remembered; a leak from code outside the root (a library) is not a site."""
    root = tmp_path / "app"
    root.mkdir()
    lines = "\n".join(f"def leak{i}(kept):\n    kept.append(bytearray({1000 + 10 * i}))\n"
                      for i in range(60))  # fmt: skip
    (root / "many.py").write_text(lines)
    outside = tmp_path / "lib"
    outside.mkdir()
    (outside / "library.py").write_text("def leak(kept):\n    kept.append(bytearray(50000))\n")
    sys.path[:0] = [str(root), str(outside)]
    try:
        import library
        import many

        kept: list[bytearray] = []
        sampler = AllocationSampler(
            "svc", AttributionConfig(window_seconds=0.4, interval_seconds=1.0, top=5, root=root)
        )
        import threading

        stop_event = threading.Event()

        def leak_all() -> None:
            while not stop_event.is_set():
                for i in range(60):
                    getattr(many, f"leak{i}")(kept)
                library.leak(kept)
                time.sleep(0.01)

        thread = threading.Thread(target=leak_all)
        thread.start()
        try:
            for _ in range(3):
                sampler.window()
        finally:
            stop_event.set()
            thread.join()
    finally:
        del sys.path[:2]
    served = sampler.top_sites()
    assert 1 <= len(served) <= 5
    assert len(sampler.totals) <= 20
    assert all(site.startswith("many.py:") for site, _, _ in served), served
    assert all(function.startswith("leak") for _, function, _ in served)
    assert SiteNamer(root).relative(str(outside / "library.py")) is None


def test_attribution_config_rejects_a_window_as_long_as_the_interval() -> None:
    with pytest.raises(ValueError, match="0 < window_seconds < interval_seconds"):
        AttributionConfig(window_seconds=5, interval_seconds=5)


LEAK_LINE_MARKER = 'self.kept.append(b"L" * owed)'


@pytest.mark.slow
def test_a_soak_of_the_leaking_sample_service_names_its_leaking_line(tmp_path: Path) -> None:
    """``soak run`` of the sample service with its leak knob on and attribution enabled: the
    memory verdict fails and its top allocation site is the sample service's own leaking line."""
    from soakwatch.run import main
    from soakwatch.run.demo import sample_service_command
    from soakwatch.run.demo.sample_service import app

    source = Path(app.__file__).read_text()
    leak_site = f"app.py:{line_of(source, LEAK_LINE_MARKER)}"
    process = subprocess.Popen(
        sample_service_command(
            "--port", "0", "--name", "backend", "--metrics-port", "0",
            "--leak-bytes-per-second", "400000", "--attribution", "3",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    try:
        assert " listening on " in line, line
        url = line.split(" listening on ", 1)[1].split()[0]
        metrics = line.split(" metrics ", 1)[1].split()[0]
        rules = Path(__file__).parent.parent / "run" / "data" / "short-rules.yaml"
        config = {
            "profile": "ci", "duration": "30s", "sampling_interval": "1s",
            "rules": str(rules),
            "exporter": {"scan_interval": "1s",
                         "services": [{"name": "backend", "match": {"pid": process.pid}}]},
            "scrape": [{"name": "backend-inprocess", "url": metrics}],
            "load": {"status_interval": "1h", "scenarios": [
                {"name": "api", "kind": "http", "rate": "20/s",
                 "endpoints": [{"url": f"{url}/api/hello"}, {"url": f"{url}/health"}]}]},
        }  # fmt: skip
        path = tmp_path / "soak.yaml"
        path.write_text(yaml.safe_dump(config))
        run_dir = tmp_path / "run"
        code = main(["--config", str(path), "--out", str(run_dir)])
    finally:
        process.terminate()
        process.communicate(timeout=10)
    verdict = json.loads((run_dir / "verdict.json").read_text())
    [memory] = [r for r in verdict["results"] if r["rule"] == "memory_growth"]
    assert code == 1 and memory["status"] == "fail", memory
    sites = memory["details"]["allocation_sites"]
    assert sites[0]["site"] == leak_site and sites[0]["function"] == "Leak.run", sites
    assert sites[0]["share"] > 0.5
    # about 400 kB/s = 1440 MB/h kept; the windows' estimate within a factor of two
    assert 0.5 * 1.44e9 < sites[0]["growth_bytes_per_hour"] < 2 * 1.44e9, sites
    assert f"mostly at {leak_site}" in memory["reason"]


def test_soakwatchs_own_code_is_never_a_site_but_a_service_inside_its_folders_is() -> None:
    """From a checkout every namespace portion (run/soakwatch, src/soakwatch, ...) is soakwatch's
    own code, never a site of a service rooted above it; a service whose root lies inside such
    a folder (the demo's sample service, or any service installed into site-packages) still has
    its own files named."""
    import importlib

    from soakwatch.exporter.attribution import SiteNamer

    own = importlib.import_module("soakwatch.run.execute").__file__
    sample = importlib.import_module("soakwatch.run.demo.sample_service.app").__file__
    assert own is not None and sample is not None
    checkout = Path(own).resolve().parents[4]
    assert SiteNamer(checkout).relative(own) is None
    inside = Path(sample).resolve().parent
    assert SiteNamer(inside).relative(sample) == "app.py"
