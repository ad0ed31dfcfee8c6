"""The process collector against real child processes."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from soakwatch.exporter.process import ProcessCollector, read_smaps_rollup

MiB = 1024 * 1024
LINUX = sys.platform.startswith("linux")


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"service": "demo", **labels})


def vmrss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not LINUX, reason="/proc/PID/status is Linux only")
def test_resident_memory_agrees_with_vmrss_of_proc_status(spawn_child, registry):
    child = spawn_child("block = bytearray(60 * 1024 * 1024)")
    ProcessCollector({"demo": lambda: child.pid}, registry=registry)

    rss = value(registry, "soak_process_resident_memory_bytes")
    expected = vmrss_bytes(child.pid)

    assert rss is not None and rss > 60 * MiB
    # the child is idle, so both reads see the same counters; allow a few pages of slack
    assert abs(rss - expected) <= 64 * 1024, (rss, expected)


def test_memory_series_follow_an_allocation_in_the_child(spawn_child, registry):
    child = spawn_child()
    ProcessCollector({"demo": lambda: child.pid}, registry=registry, detail_interval_seconds=0)
    before = {
        name: value(registry, f"soak_process_{name}_memory_bytes")
        for name in ("resident", "unique", "virtual")
    }

    child.run("block = b'x' * (80 * 1024 * 1024)")
    after = {
        name: value(registry, f"soak_process_{name}_memory_bytes")
        for name in ("resident", "unique", "virtual")
    }

    for name in before:
        assert after[name] is not None and before[name] is not None
        assert after[name] - before[name] > 70 * MiB, name
    assert after["unique"] <= after["resident"] <= after["virtual"]


@pytest.mark.skipif(not LINUX, reason="PSS exists on Linux only")
def test_pss_and_uss_agree_with_psutil_memory_full_info(spawn_child, registry):
    child = spawn_child("block = bytearray(30 * 1024 * 1024)")
    ProcessCollector({"demo": lambda: child.pid}, registry=registry)

    uss = value(registry, "soak_process_unique_memory_bytes")
    pss = value(registry, "soak_process_proportional_memory_bytes")
    full = psutil.Process(child.pid).memory_full_info()

    assert uss is not None and pss is not None
    assert abs(uss - full.uss) <= 256 * 1024
    assert abs(pss - full.pss) <= 256 * 1024
    assert uss <= pss


def test_cpu_threads_fds_and_start_time_describe_the_child(spawn_child, registry, tmp_path):
    child = spawn_child(
        "import threading, time\n"
        "stop = threading.Event()\n"
        "threads = [threading.Thread(target=stop.wait) for _ in range(3)]\n"
        "[t.start() for t in threads]\n"
        "deadline = time.process_time() + 0.3\n"
        "while time.process_time() < deadline: pass\n"
    )
    ProcessCollector({"demo": lambda: child.pid}, registry=registry)

    user = value(registry, "soak_process_cpu_seconds_total", mode="user")
    system = value(registry, "soak_process_cpu_seconds_total", mode="system")
    assert user is not None and system is not None
    assert user + system >= 0.25
    assert value(registry, "soak_process_threads") == 4
    assert value(registry, "soak_process_start_time_seconds") == pytest.approx(
        psutil.Process(child.pid).create_time()
    )
    assert value(registry, "soak_process_up") == 1
    assert value(registry, "soak_process_restarts_total") == 0

    if sys.platform != "win32":
        fds_before = value(registry, "soak_process_open_fds")
        child.run(f"files = [open({str(tmp_path / 'f')!r}, 'w') for _ in range(5)]")
        fds_after = value(registry, "soak_process_open_fds")
        assert fds_before is not None and fds_after == fds_before + 5


def test_a_process_that_exited_reports_up_zero_and_drops_its_other_series(spawn_child, registry):
    child = spawn_child()
    ProcessCollector({"demo": lambda: child.pid}, registry=registry)
    assert value(registry, "soak_process_up") == 1

    child.kill()

    assert value(registry, "soak_process_up") == 0
    assert value(registry, "soak_process_restarts_total") == 0
    assert value(registry, "soak_process_resident_memory_bytes") is None
    assert value(registry, "soak_process_cpu_seconds_total", mode="user") is None


def test_a_zombie_child_counts_as_exited(spawn_child, registry):
    child = spawn_child()
    ProcessCollector({"demo": lambda: child.pid}, registry=registry)

    child.popen.kill()  # not reaped: the child stays a zombie until wait()
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)

    assert value(registry, "soak_process_up") == 0


def test_each_service_gets_its_own_series_in_one_family(spawn_child, registry):
    first, second = spawn_child(), spawn_child("block = bytearray(40 * 1024 * 1024)")
    ProcessCollector({"one": lambda: first.pid, "two": lambda: second.pid}, registry=registry)

    text = generate_latest(registry).decode()

    assert text.count("# TYPE soak_process_resident_memory_bytes gauge") == 1
    one = registry.get_sample_value("soak_process_resident_memory_bytes", {"service": "one"})
    two = registry.get_sample_value("soak_process_resident_memory_bytes", {"service": "two"})
    assert one is not None and two is not None and two - one > 30 * MiB


class WindowsLikeProcess:
    """psutil.Process as Windows has it: ``num_handles`` and no ``num_fds``. Wraps a real
    process; the platform itself cannot be produced on this machine, hence the wrapper."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def num_handles(self) -> int:
        return self._process.num_fds() + 100

    def __getattr__(self, name: str) -> Any:
        if name == "num_fds":
            raise AttributeError(name)
        return getattr(self._process, name)


def test_a_platform_without_num_fds_publishes_handles_instead_of_open_fds(spawn_child, registry):
    child = spawn_child()
    ProcessCollector(
        {"demo": lambda: child.pid}, registry=registry, process_factory=WindowsLikeProcess
    )

    assert value(registry, "soak_process_open_fds") is None
    handles = value(registry, "soak_process_handles")
    assert handles is not None and handles > 100
    assert value(registry, "soak_process_resident_memory_bytes") is not None


class MemoryDeniedProcess:
    """A real process whose memory the OS refuses to show (a fault this test run, as root,
    cannot produce on a real process, hence the wrapper)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def num_fds(self) -> int:
        return self._process.num_fds()

    def memory_info(self) -> Any:
        raise psutil.AccessDenied(self._process.pid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)


def test_access_denied_on_memory_drops_only_the_memory_series(spawn_child, registry):
    child = spawn_child()
    ProcessCollector(
        {"demo": lambda: child.pid}, registry=registry, process_factory=MemoryDeniedProcess
    )

    assert value(registry, "soak_process_resident_memory_bytes") is None
    assert value(registry, "soak_process_virtual_memory_bytes") is None
    assert value(registry, "soak_process_up") == 1
    assert value(registry, "soak_process_threads") == 1
    assert value(registry, "soak_process_cpu_seconds_total", mode="user") is not None
    assert value(registry, "soak_process_open_fds") is not None


def test_unique_memory_is_reread_only_after_the_detail_interval(spawn_child, registry):
    now = [1000.0]
    child = spawn_child()
    ProcessCollector(
        {"demo": lambda: child.pid},
        registry=registry,
        detail_interval_seconds=30.0,
        clock=lambda: now[0],
    )
    first = value(registry, "soak_process_unique_memory_bytes")
    child.run("block = b'x' * (50 * 1024 * 1024)")

    now[0] += 10.0
    cached = value(registry, "soak_process_unique_memory_bytes")
    rss = value(registry, "soak_process_resident_memory_bytes")
    now[0] += 25.0
    fresh = value(registry, "soak_process_unique_memory_bytes")

    assert first is not None and cached == first
    assert rss is not None and rss > first + 40 * MiB  # RSS is read on every scrape
    assert fresh is not None and fresh - first > 40 * MiB


@pytest.mark.skipif(not LINUX, reason="smaps_rollup is Linux only")
def test_smaps_rollup_of_a_missing_process_raises_no_such_process():
    gone = psutil.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(psutil.NoSuchProcess):
        read_smaps_rollup(gone.pid)


def test_a_service_with_no_process_yet_publishes_up_zero_and_restarts(registry):
    ProcessCollector({"demo": lambda: None}, registry=registry)

    assert value(registry, "soak_process_up") == 0
    assert value(registry, "soak_process_restarts_total") == 0
    assert value(registry, "soak_process_threads") is None
