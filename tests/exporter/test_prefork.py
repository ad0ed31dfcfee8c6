"""Process groups (``match: {children: sum | each}``) against real pre-fork servers: gunicorn
and uwsgi (pyuwsgi, uWSGI built as a wheel: it installs in a second, where ``pip install uwsgi``
compiles), each with several workers serving ``apps/leaky_wsgi.py`` over 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from soakwatch.exporter.matching import CmdlineMatcher, ProcessTracker
from soakwatch.exporter.process import ProcessCollector

pytestmark = pytest.mark.slow

APPS = Path(__file__).with_name("apps")
MiB = 1024 * 1024
LEAK_BYTES = 512 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Prefork:
    """A running pre-fork server: its master's Popen, the marker on every member's command
    line and the port it answers on."""

    popen: subprocess.Popen[bytes]
    marker: str
    port: int

    def get(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def workers(self) -> list[psutil.Process]:
        master = psutil.Process(self.popen.pid)
        alive = []
        for p in master.children(recursive=True):
            try:  # a worker may exit between the listing and its status
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                continue
        return alive

    def wait_workers(self, workers: int, timeout: float = 30.0) -> None:
        """Until the master runs this many workers, sending no request (a request may make
        gunicorn recycle a worker after it)."""
        deadline = time.monotonic() + timeout
        stable_since, pids = time.monotonic(), {p.pid for p in self.workers()}
        # settled: that many workers and the same ones for a second (a worker that served its
        # last request may still be exiting, its replacement not forked yet)
        while len(pids) != workers or time.monotonic() - stable_since < 1.0:
            assert time.monotonic() < deadline, "the master did not replace its workers"
            time.sleep(0.05)
            now = {p.pid for p in self.workers()}
            if now != pids:
                stable_since, pids = time.monotonic(), now

    def wait_ready(self, workers: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.popen.poll() is None, f"server exited with {self.popen.returncode}"
            try:
                self.get("/pid")
                if len(self.workers()) == workers:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not start its workers"
            time.sleep(0.1)


StartPrefork = Callable[..., Prefork]


def _gunicorn_argv(port: int, marker: str, workers: int, extra: list[str]) -> list[str]:
    from gunicorn.config import KNOWN_SETTINGS

    argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"]
    argv += ["--chdir", str(APPS), "--name", marker, "--log-level", "warning"]
    # gunicorn >= 27 opens a control socket in ~/.gunicorn: one per test server would collide
    if any("--no-control-socket" in (getattr(s, "cli", None) or []) for s in KNOWN_SETTINGS):
        argv.append("--no-control-socket")
    return [*argv, *extra, "leaky_wsgi:app"]


def _uwsgi_argv(port: int, marker: str, workers: int, extra: list[str]) -> list[str]:
    uwsgi = str(Path(sys.executable).with_name("uwsgi"))
    argv = [sys.executable, uwsgi, "--master", "--processes", str(workers)]
    argv += ["--http-socket", f"127.0.0.1:{port}", "--chdir", str(APPS)]
    argv += ["--wsgi-file", "leaky_wsgi.py", "--callable", "app", "--need-app"]
    argv += ["--die-on-term", "--disable-logging", "--set-placeholder", f"marker={marker}"]
    return [*argv, *extra]


@pytest.fixture
def start_prefork() -> Iterator[StartPrefork]:
    """``start_prefork(server, workers=3, extra=[], env={})``: gunicorn or uwsgi with that many
    workers, ready; stopped (SIGTERM, then SIGKILL of the group) at teardown."""
    started: list[Prefork] = []

    def start(
        server: str,
        workers: int = 3,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Prefork:
        if server == "gunicorn":
            pytest.importorskip("gunicorn", reason="the test extra installs gunicorn")
            build = _gunicorn_argv
        else:
            pytest.importorskip("pyuwsgi", reason="the test extra installs pyuwsgi")
            build = _uwsgi_argv
        marker = f"soakwatch-test-{uuid.uuid4().hex[:12]}"
        port = free_port()
        popen = subprocess.Popen(
            build(port, marker, workers, extra or []),
            env={"SOAK_TEST_LEAK_BYTES": str(LEAK_BYTES), "PATH": "/usr/bin:/bin", **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        prefork = Prefork(popen, marker, port)
        started.append(prefork)
        prefork.wait_ready(workers)
        return prefork

    yield start
    for prefork in started:
        try:
            members = [psutil.Process(prefork.popen.pid), *prefork.workers()]
        except psutil.Error:
            members = []
        prefork.popen.terminate()
        try:
            prefork.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            prefork.popen.kill()
            prefork.popen.wait(timeout=10)
        for member in members:  # workers the master left behind, by PID
            if member.is_running() and member.pid != prefork.popen.pid:
                member.kill()


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One collect: every sample by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }


def watch(marker: str, children: str) -> tuple[ProcessTracker, CollectorRegistry]:
    registry = CollectorRegistry()
    tracker = ProcessTracker(
        CmdlineMatcher(marker, children=children),  # type: ignore[arg-type]  # tested values
        scan_interval_seconds=0.0,
    )
    ProcessCollector({"api": tracker}, registry=registry, detail_interval_seconds=0)
    return tracker, registry


def service(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"service": "api", **labels}.items()))


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_under_sum_the_group_is_the_service_and_its_unique_memory_grows_by_the_leak(
    start_prefork, server
):
    prefork = start_prefork(server, workers=3)
    tracker, registry = watch(prefork.marker, "sum")
    _, master_only = watch(prefork.marker, "none")
    for _ in range(30):  # warm-up: first requests allocate buffers in every worker
        prefork.get("/")
    before, master_before = scrape(registry), scrape(master_only)

    leaks = 40
    served_by = {int(prefork.get("/leak").split()[0]) for _ in range(leaks)}
    after, master_after = scrape(registry), scrape(master_only)

    leaked = leaks * LEAK_BYTES
    uss = service("soak_process_unique_memory_bytes")
    grown = after[uss] - before[uss]
    assert 0.9 * leaked <= grown <= 1.3 * leaked + 2 * MiB, (grown / MiB, leaked / MiB)
    # the matched process alone (children: none) is the master, which served nothing
    master_grown = master_after[uss] - master_before[uss]
    assert abs(master_grown) < 2 * MiB, master_grown / MiB
    assert served_by <= {p.pid for p in prefork.workers()}
    assert after[service("soak_process_workers")] == 3
    assert tracker.identity is not None and tracker.identity[0] == prefork.popen.pid
    # threads and fds of a member may move between two reads: a consistent pair within a few
    for _ in range(10):
        now = scrape(registry)
        members = [psutil.Process(prefork.popen.pid), *prefork.workers()]
        counts = (sum(p.num_threads() for p in members), sum(p.num_fds() for p in members))
        if counts == (now[service("soak_process_threads")], now[service("soak_process_open_fds")]):
            break
    else:
        raise AssertionError(f"summed threads and fds never matched psutil's: {counts}")
    rss = sum(p.memory_info().rss for p in members)
    assert abs(now[service("soak_process_resident_memory_bytes")] - rss) < 1 * MiB
    pss = after[service("soak_process_proportional_memory_bytes")]
    assert after[uss] <= pss <= after[service("soak_process_resident_memory_bytes")]
    assert after[service("soak_process_start_time_seconds")] == pytest.approx(
        psutil.Process(prefork.popen.pid).create_time()
    )
    assert after[service("soak_process_restarts_total")] == 0


def _each_labels(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    return {dict(k)["worker"] for n, k in samples if n == "soak_process_start_time_seconds"}


def test_under_each_gunicorn_max_requests_recycling_is_member_restarts_with_bounded_labels(
    start_prefork,
):
    prefork = start_prefork("gunicorn", workers=3, extra=["--max-requests", "4"])
    tracker, registry = watch(prefork.marker, "each")
    first = scrape(registry)
    assert _each_labels(first) == {"0", "1", "2", "3"}  # the master is member 0, workers 1..3
    master_start = first[service("soak_process_start_time_seconds", worker="0")]

    served: set[int] = set()
    cpu_seen: list[float] = []
    for _ in range(40):
        served.add(int(prefork.get("/pid")))
        now = scrape(registry)
        assert _each_labels(now) <= {"0", "1", "2", "3"}  # bounded by the members alive at once
        cpu_seen.append(now[service("soak_process_cpu_seconds_total", worker="0", mode="user")])
    prefork.wait_workers(3)
    last = scrape(registry)

    restarts = sum(v for (n, _), v in last.items() if n == "soak_process_worker_restarts_total")
    # every worker that served a request was seen alive (the scrape follows each request),
    # and each one beyond the first three took over the number of one that had exited
    assert restarts >= len(served) - 3 >= 3, (restarts, len(served))
    assert last[service("soak_process_restarts_total")] == 0  # the service never restarted
    assert last[service("soak_process_start_time_seconds", worker="0")] == master_start
    assert cpu_seen == sorted(cpu_seen)
    assert sum(tracker.member_restarts.values()) == restarts
    assert set(tracker.member_restarts) <= {"1", "2", "3"}
    members = {m.label: m.identity[0] for m in tracker.members() if m.label != "0"}
    assert set(members.values()) == {p.pid for p in prefork.workers()}


def test_under_each_a_uwsgi_worker_respawned_by_the_master_keeps_its_number(start_prefork):
    # pyuwsgi does not recycle on --max-requests here; a worker killed by PID is respawned by
    # the master, the same replacement by the server
    prefork = start_prefork("uwsgi", workers=3)
    tracker, registry = watch(prefork.marker, "each")
    first = scrape(registry)
    assert _each_labels(first) == {"0", "1", "2", "3"}
    by_pid = {m.identity[0]: m.label for m in tracker.members()}

    killed: list[str] = []
    for _ in range(4):
        victim = prefork.workers()[0]
        killed.append(by_pid[victim.pid])
        victim.kill()
        victim.wait(timeout=10)
        deadline = time.monotonic() + 20
        while victim.pid in {p.pid for p in prefork.workers()} or len(prefork.workers()) < 3:
            assert time.monotonic() < deadline, "uwsgi did not respawn the worker"
            time.sleep(0.05)
        now = scrape(registry)
        assert _each_labels(now) == {"0", "1", "2", "3"}
        by_pid = {m.identity[0]: m.label for m in tracker.members()}
        prefork.get("/pid")

    last = scrape(registry)
    for label in {"1", "2", "3"}:
        expected = killed.count(label)
        assert last[service("soak_process_worker_restarts_total", worker=label)] == expected
    assert last[service("soak_process_restarts_total")] == 0
    assert last[service("soak_process_workers")] == 3


def test_under_sum_cpu_never_goes_back_when_workers_are_recycled(start_prefork):
    prefork = start_prefork("gunicorn", workers=2, extra=["--max-requests", "3"])
    _, registry = watch(prefork.marker, "sum")
    totals = []
    for _ in range(24):
        prefork.get("/leak")
        now = scrape(registry)
        totals.append(
            now[service("soak_process_cpu_seconds_total", mode="user")]
            + now[service("soak_process_cpu_seconds_total", mode="system")]
        )
    prefork.wait_workers(2)
    final = scrape(registry)

    assert totals == sorted(totals)  # a counter: an exited worker's CPU stays in the sum
    assert final[service("soak_process_worker_restarts_total")] >= 4
    assert final[service("soak_process_restarts_total")] == 0


def test_the_exporter_watches_the_group_from_a_config_with_children_sum(
    start_prefork, start_exporter, tmp_path
):
    prefork = start_prefork("gunicorn", workers=3)
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\n"
        "scan_interval: 0.2s\n"
        "detail_interval: 0s\n"
        "services:\n"
        "  - name: api\n"
        f"    match: {{cmdline: '{prefork.marker}', children: sum}}\n",
        encoding="utf-8",
    )
    exporter = start_exporter("--config", str(config))
    before = exporter.samples()
    for _ in range(40):
        prefork.get("/leak")
    after = exporter.samples()

    uss = service("soak_process_unique_memory_bytes")
    assert after[uss] - before[uss] >= 0.9 * 40 * LEAK_BYTES
    assert after[service("soak_process_workers")] == 3
    assert after[service("soak_process_start_time_seconds")] == pytest.approx(
        psutil.Process(prefork.popen.pid).create_time()
    )


DOC = Path(__file__).resolve().parents[2] / "docs" / "exporter.md"


def documented_gunicorn_config() -> str:
    text = DOC.read_text(encoding="utf-8")
    blocks = [b for b in text.split("```python\n")[1:] if b.startswith("# gunicorn.conf.py")]
    assert len(blocks) == 1, "docs/exporter.md has one gunicorn.conf.py example"
    return blocks[0].split("```", 1)[0]


def scrape_url(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports."""
    for _ in range(50):
        first = free_port()
        socks = []
        try:
            for offset in range(count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports")


def test_the_documented_post_fork_hook_serves_every_gunicorn_worker_with_its_label(
    start_prefork, tmp_path
):
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(documented_gunicorn_config(), encoding="utf-8")
    first = free_ports(2)
    prefork = start_prefork(
        "gunicorn", workers=2, extra=["-c", str(config)], env={"METRICS_PORT": str(first)}
    )

    def answers(
        offset: int, timeout: float = 20.0
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return scrape_url(f"http://127.0.0.1:{first + offset}/metrics")
            except OSError:
                assert time.monotonic() < deadline, f"no exporter on port {first + offset}"
                time.sleep(0.1)

    starts = {}
    for offset in (0, 1):
        values = answers(offset)
        label = str(offset)
        assert values[service("soak_process_up", worker=label)] == 1
        assert values[service("soak_gc_collections_total", generation="2", worker=label)] >= 0
        starts[label] = values[service("soak_process_start_time_seconds", worker=label)]
    workers = {p.create_time(): p for p in prefork.workers()}
    assert set(starts.values()) == set(workers)  # each worker answers for itself

    # a worker that dies is respawned by the master and its successor takes the freed port
    victim = workers[starts["0"]]
    victim.kill()
    victim.wait(timeout=10)
    deadline = time.monotonic() + 30
    while True:
        try:
            values = answers(0, timeout=1.0)
            new_start = values[service("soak_process_start_time_seconds", worker="0")]
            if new_start != starts["0"]:
                break
        except (AssertionError, KeyError):
            pass
        assert time.monotonic() < deadline, "the respawned worker did not serve port 0"
        time.sleep(0.2)
    assert new_start in {p.create_time() for p in prefork.workers()}
    assert answers(1)[service("soak_process_start_time_seconds", worker="1")] == starts["1"]
