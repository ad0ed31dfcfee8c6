"""``kind: python``: a multi-step flow against the real sample service (log in, use the token and
the session id it gets, echo over a WebSocket, log out), each step in the summary and /metrics;
a failing step ends its iteration; cookies stay within one iteration."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

import servers
from soakwatch.load.cli import main
from soakwatch.run.demo import sample_service_command

FLOW = """
async def login_use_logout(client):
    user = f"user{client.iteration}"
    login = await client.post("/auth/token", json={"user": user}, name="login")
    token = login.json()["token"]
    assert token.startswith(user + ".")
    client.headers["Authorization"] = f"Bearer {token}"
    session_id = (await client.post("/sessions", name="create")).json()["id"]
    async with client.step("use twice"):
        for _ in range(2):
            await client.get(f"/sessions/{session_id}")  # inside the step: no step of its own
    async with client.websocket("/ws", name="ws connect") as ws:
        async with client.step("echo"):
            await ws.send_str(token)
            assert await ws.receive_str() == token
    await client.delete(f"/sessions/{session_id}", name="logout")


async def unauthorised(client):
    await client.post("/sessions", name="create")
    async with client.websocket("/ws", name="ws connect"):  # no token: 401
        pass
    await client.get("/health", name="never")
"""


@pytest.fixture
def sample_service() -> Iterator[str]:
    """The demo's sample service, token auth on /ws; stopped by PID."""
    process = subprocess.Popen(
        sample_service_command("--port", "0", "--ws-token-secret", "s3cret"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        deadline = time.monotonic() + 20
        url = None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if " listening on " in line:
                url = line.split(" listening on ", 1)[1].split()[0]
            elif not line and process.poll() is not None:
                break
        assert url is not None, "the sample service did not start"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()


def _config(tmp_path: Path, url: str, function: str, rate: str, duration: str) -> Path:
    (tmp_path / "soak_flows.py").write_text(FLOW)  # beside the config: found there
    config = tmp_path / "load.yaml"
    config.write_text(
        f"""duration: {duration}
scenarios:
  - kind: python
    name: flow
    function: soak_flows:{function}
    base_url: {url}
    rate: {rate}
    timeout: 10s
"""
    )
    return config


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
        data: dict[str, Any] = json.load(reply)
        return data


@pytest.mark.slow
def test_a_multi_step_flow_against_the_sample_service_records_each_step_and_passes_values(
    sample_service: str, tmp_path: Path
) -> None:
    config = _config(tmp_path, sample_service, "login_use_logout", "5/s", "3s")
    port = servers.free_port()
    summary_path = tmp_path / "summary.json"
    command = [
        sys.executable, "-m", "soakwatch.commands", "load", "--config", str(config), "--quiet",
        "--summary", str(summary_path), "--metrics-listen", f"127.0.0.1:{port}",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    try:
        servers.wait_for_port("127.0.0.1", port, timeout=20)
        time.sleep(1.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            metrics = reply.read().decode()
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    summary = json.loads(summary_path.read_text())
    part = summary["scenarios"]["flow"]
    assert part["kind"] == "python"
    assert part["completed"] == part["outcomes"]["ok"] == 15 and part["errors"] == 0
    steps = part["steps"]
    assert list(steps) == ["login", "create", "use twice", "ws connect", "echo", "logout"]
    for name, step in steps.items():
        assert step["completed"] == step["outcomes"]["ok"] == 15, name
        assert step["latency_seconds"]["count"] == 15 and step["latency_seconds"]["p99"] > 0
    # Every session the flow created was deleted by the id it read from the create reply.
    assert _health(sample_service)["sessions"] == 0
    assert (
        'soak_load_step_requests_total{outcome="ok",scenario="flow",shard="0/1",step="login"}'
        in metrics
    )
    assert 'soak_load_step_duration_seconds_count{scenario="flow",shard="0/1",step="echo"}' in (
        metrics
    )
    assert "flow step echo: 15 done, errors=0" in stdout.decode()


def test_a_failing_step_ends_the_iteration_with_its_outcome(
    sample_service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, sample_service, "unauthorised", "5/s", "1s")
    summary_path = tmp_path / "summary.json"
    argv = ["--config", str(config), "--quiet", "--summary", str(summary_path)]
    assert main(argv) == 99  # every iteration failed
    part = json.loads(summary_path.read_text())["scenarios"]["flow"]
    assert part["outcomes"]["http_4xx"] == part["completed"] == 5
    steps = part["steps"]
    assert steps["create"]["outcomes"] == {"ok": 5}
    assert steps["ws connect"]["outcomes"] == {"http_4xx": 5}
    assert "never" not in steps


class _CookieHandler(BaseHTTPRequestHandler):
    """/login sets a cookie; /me answers 200 only with it."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        if self.path == "/login":
            self.send_response(200)
            self.send_header("Set-Cookie", f"sid=s{len(self.seen)}; Path=/")
        else:
            cookie = self.headers.get("Cookie", "")
            self.seen.append(cookie)
            self.send_response(200 if cookie.startswith("sid=") else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


COOKIE_FLOW = """
async def cookies(client):
    await client.get("/me", name="before login", check=False)  # a new iteration: no cookie
    await client.get("/login", name="login")
    await client.get("/me", name="me")
"""


def test_cookies_set_by_a_reply_are_sent_within_the_iteration_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CookieHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (tmp_path / "soak_cookie_flows.py").write_text(COOKIE_FLOW)
        config = tmp_path / "load.yaml"
        config.write_text(
            f"""duration: 1s
scenarios:
  - kind: python
    function: soak_cookie_flows:cookies
    base_url: http://127.0.0.1:{server.server_address[1]}
    rate: 4/s
"""
        )
        summary_path = tmp_path / "summary.json"
        assert main(["--config", str(config), "--quiet", "--summary", str(summary_path)]) == 0
    finally:
        server.shutdown()
        server.server_close()
    steps = json.loads(summary_path.read_text())["scenarios"]["python"]["steps"]
    assert steps["before login"]["outcomes"] == {"http_4xx": 4}
    assert steps["me"]["outcomes"] == {"ok": 4}
    assert _CookieHandler.seen.count("") == 4  # each iteration began without a cookie
