"""Fixtures of the load driver's tests: the aiohttp test service in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import servers

APP = Path(__file__).with_name("app.py")


@dataclass
class LoadApp:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as reply:
            data: dict[str, Any] = json.load(reply)
            return data


@pytest.fixture(scope="session")
def load_app() -> Iterator[LoadApp]:
    """The test service (tests/load/app.py) on a free port; stopped by PID at the end."""
    port = servers.free_port()
    process = subprocess.Popen([sys.executable, str(APP), str(port)])
    try:
        servers.wait_for_port("127.0.0.1", port, timeout=20)
        yield LoadApp(port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
