"""Fixtures of the load driver's tests: the aiohttp test service in a subprocess."""

from __future__ import annotations

import errno
import json
import os
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


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real, full file system: a 64 kB tmpfs filled up by a file named ``filler`` (writes
    there fail with ENOSPC from the kernel). Mounting needs root, which CI has: elsewhere the
    test is skipped, saying so; in CI without root it fails rather than pass unchecked."""
    if os.geteuid() != 0:
        reason = "a tmpfs mount needs root (CI runs these tests as root)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    mount_point = tmp_path / "full"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(mount_point)],
        check=True,
    )
    try:
        with open(mount_point / "filler", "wb", buffering=0) as filler:  # nothing left to flush
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
