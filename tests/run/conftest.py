"""A fixture that starts the sample service (``soakwatch.run.demo.sample_service``, package data of
the demo) as a real child process."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from soakwatch.run.demo import sample_service_command


@dataclass
class SampleService:
    url: str
    pid: int
    process: subprocess.Popen[str]


def start_sample_service(*args: str, timeout: float = 20.0) -> SampleService:
    """Start the service on a free port it picks itself, and wait for its "listening" line."""
    process = subprocess.Popen(
        sample_service_command("--port", "0", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if " listening on " in line:
            url = line.split(" listening on ", 1)[1].split()[0]
            return SampleService(url=url, pid=process.pid, process=process)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"sample service did not start: {process.stdout.read()}")


def stop(service: SampleService) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()
    if service.process.stdout is not None:
        service.process.stdout.close()


@pytest.fixture
def sample_service_factory() -> Iterator[Callable[..., SampleService]]:
    started: list[SampleService] = []

    def factory(*args: str) -> SampleService:
        service = start_sample_service(*args)
        started.append(service)
        return service

    yield factory
    for service in started:
        stop(service)
