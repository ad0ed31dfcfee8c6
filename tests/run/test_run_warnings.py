"""``soak run`` says at the start, rule by rule, when the planned run is too short for a rule to
decide; its progress line says how long the rules still need; and a run of nominal N seconds
records N seconds of samples, so a rule whose minimum is N is judged (not "not enough data")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from soakwatch.recording import read_samples
from soakwatch.rules import load_rules
from soakwatch.run import main
from soakwatch.run.needs import rule_needs, short_run_warnings, still_needed

DATA = Path(__file__).parent / "data"

# one rule whose minimum is exactly 12 s, without warm-up: judged at 1 s
TWELVE_SECONDS = """\
version: 1
rules:
  memory_growth:
    kind: slope
    metrics: {value: soak_process_resident_memory_bytes}
    group_by: [service]
    threshold: 100000
    unit: MB/h
    comparison: "<"
    warmup: 0s
    window: 1s
    min_duration: 12s
    min_points: 4
  probe_failures:
    kind: failure_fraction
    metrics: {value: soak_probe_success}
    group_by: [service, probe]
    threshold: 1
    unit: percent
    comparison: "<="
    warmup: 0s
    window: 10m
    min_duration: 10m
    min_points: 2
"""


def slow_server() -> str:
    """A stand-in HTTP server that answers every request with a 503 after 3 s."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Slow(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            time.sleep(3.0)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def config_file(tmp_path: Path, **changes: Any) -> Path:
    """check-ok.yaml (nothing is contacted by --check) with ``changes``; ``rules=None`` for
    the packaged rules."""
    data = yaml.safe_load((DATA / "check-ok.yaml").read_text())
    data["rules"] = str(DATA / "short-rules.yaml")
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_warns_rule_by_rule_when_a_run_of_ten_minutes_cannot_decide(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = config_file(tmp_path, rules=None)
    assert main(["--check", "--config", str(config), "--duration", "10m"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1 and ": OK (" in captured.out
    assert captured.err.splitlines() == [
        "soak run: memory_growth needs at least 1h20m after a 15m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: gc_efficiency needs at least 30m after a 5m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: pool_variation needs at least 30m after a 10m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: latency_degradation needs at least 1h30m after a 10m warm-up; this run is "
        "10m: it can only be inconclusive",
        # the drift rules beyond memory (issue 12)
        "soak run: fd_growth needs at least 1h20m after a 10m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: handle_growth needs at least 1h20m after a 10m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: thread_growth needs at least 1h20m after a 10m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: cpu_per_request needs at least 1h after a 15m warm-up; this run is 10m: "
        "it can only be inconclusive",
        "soak run: throughput needs at least 30m after a 5m warm-up; this run is 10m: "
        "it can only be inconclusive",
    ]
    # the ci profile's 2 hours are enough for every packaged rule
    assert main(["--check", "--config", str(config), "--profile", "ci", "--duration", "2h"]) == 0
    assert capsys.readouterr().err == ""


def test_a_ten_minute_minimum_allows_one_sampling_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(TWELVE_SECONDS)
    config = config_file(tmp_path, rules=str(rules), sampling_interval="5s")
    for duration, warned in (("10m", False), ("9m55s", False), ("9m50s", True)):
        assert main(["--check", "--config", str(config), "--duration", duration]) == 0
        err = capsys.readouterr().err
        assert (
            f"soak run: probe_failures needs at least 10m; this run is {duration}: it can only "
            "be inconclusive" in err
        ) is warned, (duration, err)


def test_the_time_still_needed_is_the_longest_rule_past_the_elapsed_time() -> None:
    needs = rule_needs(load_rules(), 30.0)
    assert still_needed(needs, 0.0) == ("latency_degradation", 6000.0)
    assert still_needed(needs, 5000.0) == ("latency_degradation", 1000.0)
    assert still_needed(needs, 6000.0) is None
    assert short_run_warnings(needs, 6000.0, 30.0) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("local_prometheus", "slow_grafana"),
    [(False, False), (True, False), (False, True)],
    ids=["run-dir", "local-prometheus", "slow-grafana"],
)
def test_a_real_run_of_twelve_seconds_meets_a_twelve_second_minimum_and_says_so(
    tmp_path: Path,
    sample_service_factory: Any,
    capsys: pytest.CaptureFixture[str],
    local_prometheus: bool,
    slow_grafana: bool,
) -> None:
    """The load driver starts before the recording (and before a local Prometheus, or the
    Grafana annotation of the start): a load that ends on time must not end the recording
    short. "slow-grafana" puts 3 s between the two with a stand-in that answers the start
    annotation after 3 s (a real Grafana is not slow on demand)."""
    service = sample_service_factory()
    rules = tmp_path / "rules.yaml"
    rules.write_text(TWELVE_SECONDS)
    config = {
        "profile": "ci",
        "duration": "12s",
        "sampling_interval": "1s",
        "rules": str(rules),
        "checks": [{"name": "backend", "kind": "http", "target": f"{service.url}/health"}],
        "exporter": {
            "scan_interval": "1s",
            "services": [{"name": "backend", "match": {"pid": service.pid}}],
        },
        "load": {
            "status_interval": "1h",
            "scenarios": [
                {"name": "api", "kind": "http", "rate": "10/s",
                 "endpoints": [{"url": f"{service.url}/api/hello"}]},
            ],
        },
    }  # fmt: skip
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    extra = ["--local-prometheus"] if local_prometheus else []
    if slow_grafana:
        extra += ["--grafana-url", slow_server()]
    main(["--config", str(path), "--out", str(run_dir), *extra])
    err = capsys.readouterr().err
    # at the start: the one rule the run cannot decide
    assert (
        "soak run: probe_failures needs at least 10m; this run is 12s: it can only be "
        "inconclusive" in err
    )
    assert "memory_growth needs at least" not in err
    # the progress line counts down what the rules still need
    assert "probe_failures needs 9m" in err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "finished"
    # the recording holds the planned 12 s of the service's memory
    [(t, _values)] = read_samples(run_dir, ["soak_process_resident_memory_bytes"]).values()
    assert t[-1] - t[0] >= 12.0 - 0.05 and t.size >= 12
    if not local_prometheus:
        # (a local Prometheus scrapes its first sample seconds after it starts: its series
        # are shorter than the recording's, whatever the run does)
        verdict = json.loads((run_dir / "verdict.json").read_text())
        (memory,) = [r for r in verdict["results"] if r["rule"] == "memory_growth"]
        assert not memory["reason"].startswith("not enough data"), memory["reason"]
