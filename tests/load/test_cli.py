"""``soak load`` as a user runs it: a subprocess stopped by a signal still writes its summary."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import servers
from soakwatch.load.cli import main


def _wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_soak_load_gracefully_and_the_summary_is_written(
    load_app: Any, tmp_path: Path, signum: signal.Signals
) -> None:
    summary_path = tmp_path / "summary.json"
    port = servers.free_port()
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"{load_app.url}/ok",
        "--rate", "50/s", "--duration", "60s", "--summary", str(summary_path),
        "--metrics-listen", f"127.0.0.1:{port}", "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        servers.wait_for_port("127.0.0.1", port, timeout=20)
        metrics = ""

        def some_requests_done() -> bool:
            nonlocal metrics
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                metrics = reply.read().decode()
            return 'outcome="ok",scenario="http",shard="0/1"} 0.0' not in metrics

        _wait_for(some_requests_done, 20)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    assert f"stopped by {signum.name}; summary written" in stderr.decode()
    assert stdout.decode().startswith("http: ")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "stopped" and summary["stop_reason"] == signum.name
    assert summary["scenarios"]["http"]["outcomes"]["ok"] > 0
    assert summary["elapsed_seconds"] < 30
    assert list(tmp_path.iterdir()) == [summary_path]  # no temporary file left behind


def test_summary_dash_prints_the_summary_json_on_stdout_and_writes_no_file(
    load_app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["--http", f"{load_app.url}/ok", "--rate", "10/s", "--duration", "1s", "--summary", "-"]
    assert main([*argv, "--quiet"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout is the document and nothing else
    assert summary["schema"] == "soakwatch.load.summary/1"
    assert summary["status"] == "completed" and summary["totals"]["ok"] == 10
    assert captured.err.startswith("http: 10 sent, ")  # the human lines moved to stderr
    assert list(tmp_path.iterdir()) == []


def test_soak_load_runs_a_short_http_load_from_flags_alone(
    load_app: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary_path = tmp_path / "out.json"
    argv = [
        "--http", f"{load_app.url}/ok", "--rate", "20/s", "--duration", "1s",
        "--summary", str(summary_path), "--status-interval", "500ms",
    ]  # fmt: skip
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0
    assert re.match(r"http: 20 sent, \d+\.\d/s, ok=20 p50=[\d.]+ms p95=", captured.out)
    assert "load " in captured.err and "ops/s" in captured.err  # the status line
    summary = json.loads(summary_path.read_text())
    assert summary["schema"] == "soakwatch.load.summary/1"
    assert summary["status"] == "completed" and summary["totals"]["ok"] == 20
