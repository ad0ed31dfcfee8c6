"""Issue 12, "Done when": a real gunicorn with several workers whose ``/leak`` endpoint keeps
``LEAK_BYTES`` alive in the worker that served it, watched end to end by ``soak run``: the
exporter child matches the master by its command line with ``children: sum``, the load driver
child hits ``/leak`` at a fixed rate over 127.0.0.1, the run records the samples, and the
analyzer's ``memory_growth`` fails the group with a slope that matches the leak the load drove
(requests served x bytes per request).

The control watches the same gunicorn in the same run under ``children: each``: member ``0`` is
the matched process alone, the master, which serves no request, and its ``memory_growth``
passes (the exporter config has no ``children: none``; ``each`` publishes the master by itself
as member 0). The app is the one of the exporter's pre-fork tests (``tests/exporter/apps``)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from soakwatch.run import main

pytestmark = pytest.mark.slow

APPS = Path(__file__).resolve().parents[1] / "exporter" / "apps"
LEAK_BYTES = 16 * 1024
RATE = 4  # /leak requests per second: 4 x 16 KiB = 236 MB/h summed over the workers
WORKERS = 3
THRESHOLD = 50  # MB/h: the driven leak is about 5x this, the master's flat memory far below it
DURATION = "150s"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gunicorn:
    popen: subprocess.Popen[bytes]
    marker: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[psutil.Process]:
        master = psutil.Process(self.popen.pid)
        return [p for p in master.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def _argv(port: int, marker: str) -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    argv = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    argv += ["--chdir", str(APPS), "--name", marker, "--log-level", "warning"]
    # gunicorn >= 27 opens a control socket in ~/.gunicorn: one per test server would collide
    if any("--no-control-socket" in (getattr(s, "cli", None) or []) for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")
    return [*argv, "leaky_wsgi:app"]


@pytest.fixture
def gunicorn() -> Iterator[Gunicorn]:
    """gunicorn with WORKERS workers serving the leaky app on a free port, ready (every worker
    forked); stopped with SIGTERM at teardown, and any worker left behind killed by PID."""
    pytest.importorskip("gunicorn", reason="the test extra installs gunicorn")
    marker = f"soakwatch-prefork-soak-{uuid.uuid4().hex[:12]}"
    port = free_port()
    popen = subprocess.Popen(
        _argv(port, marker),
        env={"SOAK_TEST_LEAK_BYTES": str(LEAK_BYTES), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Gunicorn(popen, marker, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert popen.poll() is None, f"gunicorn exited with {popen.returncode}"
            try:
                with urllib.request.urlopen(f"{server.url}/pid", timeout=5) as response:
                    response.read()
                if len(server.workers()) == WORKERS:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start its workers"
            time.sleep(0.1)
        yield server
    finally:
        try:
            members = server.workers()
        except psutil.Error:
            members = []
        popen.terminate()
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)
        for member in members:
            if member.is_running():
                member.kill()


def soak_config(tmp_path: Path, server: Gunicorn) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "# the quick preset with a memory rule that a 150 s run can judge\n"
        "version: 1\n"
        "extends: quick\n"
        "rules:\n"
        "  memory_growth:\n"
        f"    threshold: {THRESHOLD}\n"
        "    min_warmup: 20s\n"
        "    max_warmup_fraction: 0.3\n"
        "    window: 10s\n"
        "    min_duration: 60s\n"
        "    min_points: 6\n",
        encoding="utf-8",
    )
    match = f"gunicorn .*--name {server.marker} "
    config = {
        "profile": "ci",
        "duration": DURATION,
        "sampling_interval": "2s",
        "rules": str(rules),
        "exporter": {
            "scan_interval": "1s",
            "detail_interval": "0s",
            "services": [
                {"name": "api", "match": {"cmdline": match, "children": "sum"}},
                {"name": "api_each", "match": {"cmdline": match, "children": "each"}},
            ],
        },
        "load": {
            "status_interval": "1h",
            "scenarios": [
                {"name": "leak", "kind": "http", "rate": f"{RATE}/s",
                 "endpoints": [{"url": f"{server.url}/leak"}]},
            ],
        },
    }  # fmt: skip
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def memory_results(verdict: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    return {
        tuple(sorted(r["subject"].items())): r
        for r in verdict["results"]
        if r["rule"] == "memory_growth"
    }


def test_a_leaking_gunicorn_worker_watched_with_children_sum_fails_memory_growth(
    tmp_path: Path, gunicorn: Gunicorn, capsys: pytest.CaptureFixture[str]
) -> None:
    config = soak_config(tmp_path, gunicorn)
    run_dir = tmp_path / "run"
    code = main(["--config", str(config), "--out", str(run_dir)])
    err = capsys.readouterr().err
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "finished", err
    assert code == 1, err
    verdict = json.loads((run_dir / "verdict.json").read_text())
    results = memory_results(verdict)

    # the leak the load drove: every ok /leak request kept LEAK_BYTES in the worker it reached
    summary = json.loads((run_dir / "load-summary.json").read_text())
    ok = summary["scenarios"]["leak"]["outcomes"]["ok"]
    assert ok >= 0.9 * RATE * summary["active_seconds"], summary["scenarios"]["leak"]
    driven = ok * LEAK_BYTES / summary["active_seconds"] * 3600 / 1e6  # MB/h
    assert driven > 3 * THRESHOLD, driven

    group = results[(("service", "api"),)]
    assert group["status"] == "fail", group
    assert driven / 1.25 <= group["figure"] <= driven * 1.25, (group["figure"], driven)
    assert group["details"]["samples"] >= 40, group["details"]

    # the control: member 0 under `each` is the master alone, which serves nothing
    each = {dict(k).get("worker"): r for k, r in results.items() if ("service", "api_each") in k}
    assert set(each) == {str(i) for i in range(WORKERS + 1)}, sorted(each, key=str)
    master = each["0"]
    assert master["status"] == "pass", master
    assert abs(master["figure"]) < THRESHOLD / 5, master
    # the workers' slopes add up to the group's
    workers = sum(each[str(i)]["figure"] for i in range(1, WORKERS + 1))
    assert group["figure"] / 1.3 <= workers + master["figure"] <= group["figure"] * 1.3, (
        workers,
        group["figure"],
    )
    # the workers the run saw are the ones alive now: none was recycled in between
    assert len(gunicorn.workers()) == WORKERS
