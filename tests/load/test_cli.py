"""``soak load`` as a user runs it: a subprocess stopped by a signal still writes its summary."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
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


class _StderrLines:
    """The lines a child writes on stderr, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        self._stream = process.stderr
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line.decode().rstrip("\n"))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "\n".join(self.lines)


def _json_block(text: str) -> dict[str, Any]:
    """The one indented JSON document among the lines of ``text`` (from "{" to "}")."""
    lines = text.splitlines()
    start = lines.index("{")
    end = lines.index("}", start)
    document: dict[str, Any] = json.loads("\n".join(lines[start : end + 1]))
    return document


def _hanging_load(load_app: Any, config_path: Path, **top: str) -> list[str]:
    """``soak load`` holding requests to the real test service's /stall, which answers after
    60 s: every request is still in flight when the run stops."""
    scenario = f"""scenarios:
  - kind: http
    name: hang
    url: {load_app.url}/stall?seconds=60
    rate: 20/s
    timeout: 30s
"""
    config_path.write_text("".join(f"{key}: {value}\n" for key, value in top.items()) + scenario)
    return [sys.executable, "-m", "soakwatch.commands", "load", "--config", str(config_path),
            "--quiet"]  # fmt: skip


@pytest.mark.slow
def test_operations_still_in_flight_when_stop_grace_ends_are_counted_as_cut_short(
    load_app: Any, tmp_path: Path
) -> None:
    summary_path = tmp_path / "summary.json"
    command = _hanging_load(
        load_app, tmp_path / "load.yaml", duration="60s", stop_grace="1s", summary=str(summary_path)
    )
    before = load_app.stats()["hits"].get("stall", 0)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: load_app.stats()["hits"].get("stall", 0) - before >= 20, 20)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Every operation failed (cut short): a run like that never exits 0 (issue 14).
    assert process.returncode == 99, stderr.decode()
    assert "every operation of the run failed" in stderr.decode()
    # Every request the server received was still unanswered when the grace ran out.
    arrived = load_app.stats()["hits"]["stall"] - before
    summary = json.loads(summary_path.read_text())
    part = summary["scenarios"]["hang"]
    assert part["sent"] == arrived >= 20
    assert part["outcomes"]["cut_short"] == part["sent"]
    assert part["errors"] == part["completed"] == part["sent"] and part["error_ratio"] == 1.0
    assert summary["totals"]["outcomes"]["cut_short"] == part["sent"]
    assert summary["totals"]["error_ratio"] == 1.0


def test_a_summary_path_under_a_regular_file_is_warned_about_at_the_start_and_printed_at_the_end(
    load_app: Any, tmp_path: Path
) -> None:
    in_the_way = tmp_path / "file"
    in_the_way.write_text("not a folder\n")
    target = in_the_way / "x.json"
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"{load_app.url}/ok",
        "--rate", "10/s", "--duration", "60s", "--summary", str(target), "--quiet",
    ]  # fmt: skip
    before = load_app.stats()["hits"].get("ok", 0)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stderr = _StderrLines(process)
        _wait_for(lambda: any("warning" in line for line in stderr.lines), 20)
        assert process.poll() is None  # said during the run, not at its end
        _wait_for(lambda: load_app.stats()["hits"].get("ok", 0) - before >= 5, 20)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)  # stdout is a few lines: no pipe fills up
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr.text()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    warning = f"soak load: warning: cannot write the summary to {target}: {in_the_way} is not a "
    assert text.startswith(warning + "directory; the run goes on")
    assert "stopped by SIGTERM; summary printed" in text
    summary = _json_block(text)
    assert summary["status"] == "stopped" and summary["scenarios"]["http"]["outcomes"]["ok"] > 0
    assert text.splitlines()[-1] == (
        f"soak load: cannot write the summary to {target}: {in_the_way} is not a directory; "
        "the summary is on stderr above"
    )
    assert process.stdout is not None
    assert process.stdout.read().decode().startswith("http: ")  # the per-scenario lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_full_disk_under_the_summary_is_warned_about_during_the_run_and_ends_with_exit_2(
    load_app: Any, full_tmpfs: Path
) -> None:
    target = full_tmpfs / "summary.json"
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--http", f"{load_app.url}/ok",
        "--rate", "10/s", "--duration", "2s", "--summary", str(target), "--quiet",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stderr = _StderrLines(process)
        _wait_for(lambda: any("warning" in line for line in stderr.lines), 20)
        assert process.poll() is None  # said during the run
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr.text()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    reason = os.strerror(errno.ENOSPC)
    assert text.startswith(f"soak load: warning: cannot write the summary to {target}: {reason}")
    assert [line for line in text.splitlines() if "warning" in line][1:] == []  # said once
    summary = _json_block(text)
    assert summary["status"] == "completed" and summary["totals"]["ok"] == 20
    assert text.splitlines()[-1].startswith(f"soak load: cannot write the summary to {target}: ")
    assert not target.exists()
    assert [p.name for p in full_tmpfs.iterdir()] == ["filler"]  # no temporary file left


# -- SOAK_LOAD_<FLAG>: flag > environment > config file > profile ------------------------------
def test_every_flag_can_come_from_the_environment_and_a_flag_wins_over_it(
    load_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "load.yaml"
    config.write_text(
        f"duration: 30s\nscenarios: [{{kind: http, url: '{load_app.url}/ok', rate: 1/s}}]\n"
    )
    summary_path = tmp_path / "summary.json"
    monkeypatch.setenv("SOAK_LOAD_CONFIG", str(config))
    monkeypatch.setenv("SOAK_LOAD_DURATION", "1s")  # over the config's 30s
    monkeypatch.setenv("SOAK_LOAD_SUMMARY", str(tmp_path / "not-this.json"))
    monkeypatch.setenv("SOAK_LOAD_QUIET", "1")
    monkeypatch.setenv("SOAK_LOAD_THRESHOLD", "p99<10s; error_ratio<0.5")
    assert main(["--summary", str(summary_path)]) == 0  # the flag over SOAK_LOAD_SUMMARY
    summary = json.loads(summary_path.read_text())
    assert summary["stages"]["steady_seconds"] == 1.0
    assert [r["threshold"] for r in summary["thresholds"]] == [
        "p99<10s", "error_ratio<0.5", "error_ratio<1",
    ]  # fmt: skip
    assert not (tmp_path / "not-this.json").exists()


def test_the_environment_fills_a_scenario_flag_and_a_bad_value_names_the_variable(
    load_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("SOAK_LOAD_HTTP", f"{load_app.url}/ok")
    monkeypatch.setenv("SOAK_LOAD_RATE", "10/s")
    monkeypatch.setenv("SOAK_LOAD_DURATION", "soon")
    assert main(["--quiet"]) == 2
    assert capsys.readouterr().err.strip() == (
        "soak load: environment: SOAK_LOAD_DURATION: not a duration: 'soon' "
        "(use e.g. 30s, 15m, 2h, 1h30m)"
    )
    monkeypatch.setenv("SOAK_LOAD_DURATION", "1s")
    monkeypatch.setenv("SOAK_LOAD_QUIET", "maybe")
    assert main([]) == 2
    assert capsys.readouterr().err.strip() == (
        "soak load: SOAK_LOAD_QUIET: expected 1 or 0 (true/false), got 'maybe'"
    )
    monkeypatch.setenv("SOAK_LOAD_QUIET", "true")
    summary_path = tmp_path / "summary.json"
    assert main(["--summary", str(summary_path)]) == 0
    assert json.loads(summary_path.read_text())["totals"]["ok"] == 10
