"""The parts of a soak stack for the end-to-end tests, each a real process on 127.0.0.1:

- ``leaking_service``: a child Python process that serves HTTP, keeps 1 MB/s forever, holds a TCP
  connection to Redis (a pool) and publishes its GC series with soakwatch's in-process exporter;
- ``soak_exporter``: the real ``soak-exporter`` sidecar watching it (process, pool, HTTP probe);
- ``load_driver``: the real ``soak load`` sending it HTTP requests, publishing
  ``soak_run_info{run_id=RUN_ID}`` (the only source of the run id the alerts carry);
- ``webhook_receiver``: an ``http.server`` recording what Alertmanager posts;
- ``short_rules_file``: the soak rules with windows of seconds, generated like the committed file.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import servers

REPO = Path(__file__).resolve().parents[2]
SERVICE = "leaky"
RUN_ID = "stack-e2e"  # passed to `soak load --run-id`; not the compose default, to tell them apart

CHILD = textwrap.dedent(
    """
    import gc, os, socket, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from soakwatch.exporter import start_in_process

    service, leak_per_second, redis_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kept = []

    def leak():
        while True:
            kept.append(os.urandom(leak_per_second // 10))   # touched pages: real RSS
            garbage = [[] for _ in range(200)]
            for a, b in zip(garbage, garbage[1:]):
                a.append(b); b.append(a)                      # cycles: work for the GC
            time.sleep(0.1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass

    pool = socket.create_connection(("127.0.0.1", redis_port))   # one pooled connection
    exporter = start_in_process(port=0, service=service, process_metrics=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=leak, daemon=True).start()
    print("READY", httpd.server_address[1], exporter.port, flush=True)
    httpd.serve_forever()
    """
)


@dataclass
class Child:
    process: subprocess.Popen[str]
    service: str = SERVICE
    http_port: int = 0
    metrics_port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _python(*code_and_args: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *code_and_args],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )


def _wait_port(port: int, child: Child, log: Path, timeout: float = 30.0) -> None:
    try:
        servers.wait_for_port("127.0.0.1", port, timeout)
    except Exception:
        child.stop()
        raise AssertionError(f"no listener on {port}; log:\n{log.read_text()[-3000:]}") from None


@pytest.fixture
def leaking_service(tmp_path: Path, redis_server: Any) -> Iterator[Child]:
    script = tmp_path / "leaky.py"
    script.write_text(CHILD)
    log = tmp_path / "leaky.log"
    child = Child(_python(str(script), SERVICE, str(1_000_000), str(redis_server.port), log=log))
    try:
        result: queue.Queue[str] = queue.Queue()
        assert child.process.stdout is not None
        stdout = child.process.stdout
        threading.Thread(target=lambda: result.put(stdout.readline()), daemon=True).start()
        try:
            line = result.get(timeout=30)
        except queue.Empty:
            line = ""
        words = line.split()
        assert words[:1] == ["READY"], f"child did not start: {line!r}\n{log.read_text()[-3000:]}"
        child.http_port, child.metrics_port = int(words[1]), int(words[2])
        yield child
    finally:
        child.stop()


@pytest.fixture
def soak_exporter(
    tmp_path: Path, leaking_service: Child, redis_server: Any
) -> Iterator[tuple[Child, int]]:
    port = servers.free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "scan_interval": "1s",
        "services": [
            {
                "name": SERVICE,
                "match": {"pid": leaking_service.pid},
                "pools": [{"name": "redis", "port": redis_server.port, "host": "127.0.0.1"}],
                "probes": [
                    {
                        "name": "health",
                        "kind": "http",
                        "target": f"http://127.0.0.1:{leaking_service.http_port}/health",
                        "interval": "1s",
                        "timeout": "1s",
                    }
                ],
            }
        ],
    }
    config_path = tmp_path / "exporter.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log = tmp_path / "exporter.log"
    code = "import sys; from soakwatch.exporter.cli import main; sys.exit(main())"
    child = Child(_python("-c", code, "--config", str(config_path), log=log))
    try:
        _wait_port(port, child, log)
        yield child, port
    finally:
        child.stop()


@pytest.fixture
def load_driver(tmp_path: Path, leaking_service: Child) -> Iterator[tuple[Child, int]]:
    port = servers.free_port()
    log = tmp_path / "load.log"
    code = "import sys; from soakwatch.load.cli import main; sys.exit(main())"
    child = Child(
        _python(
            "-c",
            code,
            "--http",
            f"http://127.0.0.1:{leaking_service.http_port}/api/hello",
            "--rate",
            "20/s",
            "--duration",
            "5m",
            "--metrics-listen",
            f"127.0.0.1:{port}",
            "--run-id",
            RUN_ID,
            "--quiet",
            log=log,
        )
    )
    try:
        _wait_port(port, child, log)
        yield child, port
    finally:
        child.stop()


@dataclass
class Webhook:
    url: str
    received: queue.Queue[dict[str, Any]]

    def wait_for(self, alertname: str, timeout: float) -> dict[str, Any]:
        """The first alert named ``alertname`` that arrives, firing, within ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                payload = self.received.get(timeout=left)
            except queue.Empty:
                break
            for alert in payload.get("alerts", []):
                if alert["labels"].get("alertname") == alertname and alert["status"] == "firing":
                    return dict(alert)
        raise AssertionError(f"no firing {alertname} reached the webhook in {timeout} s")


@pytest.fixture
def webhook_receiver() -> Iterator[Webhook]:
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.put(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{httpd.server_address[1]}/alerts", received)
    finally:
        httpd.shutdown()
        httpd.server_close()


# Seconds instead of hours: same rules, same generator, windows a soak test can wait for.
SHORT_WINDOWS = {
    "window": "2s",
    "warmup": "1s",
    "alert": {"range": "10s", "for": "2s"},
}


@pytest.fixture
def short_rules_file(tmp_path: Path) -> Path:
    from soakwatch.rules.alerting import generate, render_rule_file
    from soakwatch.rules.model import DEFAULT_RULES_PATH, load_rules

    spec = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    for rule in spec["rules"].values():
        rule["window"] = "5s" if rule["kind"] == "quantile_change" else SHORT_WINDOWS["window"]
        rule["warmup"] = SHORT_WINDOWS["warmup"]
        rule.pop("min_warmup", None)
        rule.pop("max_warmup_fraction", None)
        rule["alert"] = {**rule.get("alert", {}), **SHORT_WINDOWS["alert"]}
    spec_path = tmp_path / "short-soak.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    rules_path = tmp_path / "short.rules.yaml"
    rules_path.write_text(render_rule_file(generate(load_rules(spec_path))))
    return rules_path
