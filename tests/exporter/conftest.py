"""Real child processes for the sidecar exporter tests: each runs a small Python program,
prints "ready" once it has done its setup (allocated memory, opened connections), then waits
for commands on stdin. They are stopped by PID at teardown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

EXPORTER = str(Path(sys.executable).with_name("soak-exporter"))

# The child's loop: each stdin line is Python code to run (so a test can make the child
# allocate more or open a file, then wait for the "done" line); EOF ends the child.
CHILD_LOOP = """
import sys
print("ready", flush=True)
for line in sys.stdin:
    exec(line)
    print("done", flush=True)
"""


@dataclass
class Child:
    popen: subprocess.Popen[str]
    marker: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def run(self, code: str) -> None:
        """Run one line of Python in the child and wait until it has finished."""
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write(code + "\n")
        self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        assert line.strip() == "done", f"child answered {line!r}"

    def kill(self) -> None:
        """Kill the child and reap it (no zombie left behind)."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


SpawnChild = Callable[..., Child]


@pytest.fixture
def spawn_child() -> Iterator[SpawnChild]:
    """``spawn_child(setup_code="", marker=None) -> Child``: a Python child that ran
    ``setup_code`` and is ready; ``marker`` (unique by default) is on its command line."""
    children: list[Child] = []

    def spawn(setup_code: str = "", marker: str | None = None) -> Child:
        marker = marker or f"soakwatch-test-{uuid.uuid4().hex[:12]}"
        popen = subprocess.Popen(
            [sys.executable, "-c", setup_code + "\n" + CHILD_LOOP, marker],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        child = Child(popen=popen, marker=marker)
        children.append(child)
        assert popen.stdout is not None
        line = popen.stdout.readline()
        assert line.strip() == "ready", f"child did not start: {line!r}"
        return child

    yield spawn
    for child in children:
        if child.popen.poll() is None:
            child.popen.kill()
        child.popen.wait(timeout=10)
        for stream in (child.popen.stdin, child.popen.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


class RunningExporter:
    def __init__(self, popen: subprocess.Popen[str], url: str) -> None:
        self.popen = popen
        self.url = url

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            text = response.read().decode("utf-8")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples().get((name, tuple(sorted(labels.items()))))

    def stop(self) -> tuple[int, str]:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise
        assert self.popen.stderr is not None
        return code, self.popen.stderr.read()


@pytest.fixture
def start_exporter() -> Iterator:
    started: list[RunningExporter] = []

    def start(*args: str, env: dict[str, str] | None = None) -> RunningExporter:
        popen = subprocess.Popen(
            [EXPORTER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, **(env or {})},
        )
        assert popen.stdout is not None
        line = popen.stdout.readline()
        if "serving " not in line:
            popen.kill()
            _, err = popen.communicate(timeout=10)
            raise AssertionError(f"exporter did not start: {line!r} {err!r}")
        url = line.split("serving ", 1)[1].split()[0]
        exporter = RunningExporter(popen, url)
        started.append(exporter)
        return exporter

    yield start
    for exporter in started:
        if exporter.popen.poll() is None:
            exporter.popen.kill()
            exporter.popen.wait(timeout=10)
