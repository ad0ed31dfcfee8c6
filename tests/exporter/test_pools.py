"""Counting a child's TCP connections to configured endpoints, by state."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import psutil
import pytest
from prometheus_client import CollectorRegistry

from soakwatch.exporter.config import PoolSpec, resolve_host
from soakwatch.exporter.matching import CallableMatcher, ProcessTracker
from soakwatch.exporter.pools import PoolCollector, count_pool_connections, normalize_address
from soakwatch.exporter.process import ProcessCollector


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP server socket on 127.0.0.1 that completes handshakes (the kernel does) without
    the test having to accept."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield server
    server.close()


def connect_code(host: str, port: int, count: int, name: str = "conns") -> str:
    return (
        "import socket\n"
        f"{name} = [socket.create_connection(({host!r}, {port})) for _ in range({count})]\n"
    )


def pool_value(registry: CollectorRegistry, pool: str, state: str = "established") -> float | None:
    return registry.get_sample_value(
        "soak_pool_connections", {"service": "demo", "pool": pool, "state": state}
    )


def collector_for(pid: int, pools: list[PoolSpec], registry: CollectorRegistry) -> PoolCollector:
    tracker = ProcessTracker(CallableMatcher(lambda: pid), scan_interval_seconds=0.0)
    return PoolCollector({"demo": (tracker, pools)}, registry=registry)


def test_connections_to_each_endpoint_are_counted_per_pool(spawn_child, registry):
    with socket.create_server(("127.0.0.1", 0)) as other:
        listener_port = other.getsockname()[1]
        with socket.create_server(("127.0.0.1", 0)) as second:
            second_port = second.getsockname()[1]
            child = spawn_child(
                connect_code("127.0.0.1", listener_port, 3, "a")
                + connect_code("127.0.0.1", second_port, 1, "b")
            )
            collector_for(
                child.pid,
                [
                    PoolSpec(name="db", port=listener_port),
                    PoolSpec(name="cache", port=second_port),
                    PoolSpec(name="idle", port=1),
                ],
                registry,
            )

            assert pool_value(registry, "db") == 3
            assert pool_value(registry, "cache") == 1
            assert pool_value(registry, "idle") == 0

            child.run("a.pop().close()")
            assert pool_value(registry, "db") == 2


def test_a_pool_with_a_host_counts_only_connections_to_that_address(
    spawn_child, registry, listener
):
    port = listener.getsockname()[1]
    child = spawn_child(connect_code("127.0.0.1", port, 2))
    collector_for(
        child.pid,
        [
            PoolSpec(
                name="right", port=port, host="127.0.0.1", addresses=resolve_host("127.0.0.1")
            ),
            PoolSpec(
                name="wrong", port=port, host="127.0.0.2", addresses=resolve_host("127.0.0.2")
            ),
            PoolSpec(
                name="byname", port=port, host="localhost", addresses=resolve_host("localhost")
            ),
        ],
        registry,
    )

    assert pool_value(registry, "right") == 2
    assert pool_value(registry, "wrong") == 0
    assert pool_value(registry, "byname") == 2


def test_a_connection_the_server_closed_is_counted_as_close_wait(spawn_child, registry, listener):
    port = listener.getsockname()[1]
    child = spawn_child(connect_code("127.0.0.1", port, 2))
    collector_for(child.pid, [PoolSpec(name="db", port=port)], registry)
    accepted, _ = listener.accept()

    accepted.close()  # the server hangs up; the child has not noticed yet

    deadline = time.monotonic() + 10
    while pool_value(registry, "db", "close_wait") != 1:
        assert time.monotonic() < deadline, "no close_wait connection seen"
        time.sleep(0.02)
    assert pool_value(registry, "db") == 1


def test_pools_of_a_process_that_exited_publish_nothing(spawn_child, registry, listener):
    port = listener.getsockname()[1]
    child = spawn_child(connect_code("127.0.0.1", port, 1))
    collector_for(child.pid, [PoolSpec(name="db", port=port)], registry)
    assert pool_value(registry, "db") == 1

    child.kill()

    assert pool_value(registry, "db") is None


def test_connections_to_a_real_redis_are_counted(spawn_child, registry, redis_server):
    child = spawn_child(
        connect_code(redis_server.host, redis_server.port, 4)
        + "[c.sendall(b'PING\\r\\n') for c in conns]\n"
        + "assert all(c.recv(16) == b'+PONG\\r\\n' for c in conns)\n"
    )
    collector_for(child.pid, [PoolSpec(name="redis", port=redis_server.port)], registry)

    assert pool_value(registry, "redis") == 4


def test_ipv4_mapped_ipv6_addresses_count_as_their_ipv4_address():
    assert normalize_address("::ffff:127.0.0.1") == "127.0.0.1"
    assert normalize_address("fe80::1%eth0") == "fe80::1"
    assert normalize_address("0:0:0:0:0:0:0:1") == "::1"

    address = SimpleNamespace(ip="::ffff:10.0.0.5", port=5432)
    conn = SimpleNamespace(raddr=address, status="ESTABLISHED")
    listening = SimpleNamespace(raddr=(), status="LISTEN")
    pools = [PoolSpec(name="db", port=5432, host="10.0.0.5", addresses=frozenset({"10.0.0.5"}))]

    assert count_pool_connections([conn, listening], pools) == {"db": {"established": 1}}


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_connections_over_ipv6_are_counted_by_their_ipv6_host(spawn_child, registry):
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        port = server.getsockname()[1]
        child = spawn_child(connect_code("::1", port, 2))
        collector_for(
            child.pid,
            [
                PoolSpec(name="v6", port=port, host="::1", addresses=resolve_host("[::1]")),
                PoolSpec(
                    name="v4", port=port, host="127.0.0.1", addresses=resolve_host("127.0.0.1")
                ),
            ],
            registry,
        )

        assert pool_value(registry, "v6") == 2
        assert pool_value(registry, "v4") == 0


class SocketsDeniedProcess:
    """A real process whose sockets the OS refuses to list (as for another user's process;
    this test run, as root, cannot produce that on a real process, hence the wrapper)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def net_connections(self, kind: str = "inet") -> list:
        raise psutil.AccessDenied(self._process.pid)

    connections = net_connections

    def __getattr__(self, name: str):
        return getattr(self._process, name)


def test_sockets_the_os_refuses_to_list_drop_the_pool_series_not_the_scrape(
    spawn_child, registry, listener
):
    port = listener.getsockname()[1]
    child = spawn_child(connect_code("127.0.0.1", port, 1))
    tracker = ProcessTracker(
        CallableMatcher(lambda: child.pid),
        scan_interval_seconds=0.0,
        process_factory=SocketsDeniedProcess,
    )
    PoolCollector({"demo": (tracker, [PoolSpec(name="db", port=port)])}, registry=registry)
    ProcessCollector({"demo": tracker}, registry=registry)

    assert pool_value(registry, "db") is None
    assert registry.get_sample_value("soak_process_up", {"service": "demo"}) == 1


@pytest.mark.parametrize(("children", "expected"), [("sum", 2.0), ("none", 0.0)])
def test_a_process_group_counts_the_connections_its_workers_hold(
    spawn_child, registry, listener, children, expected
):
    """A pre-fork server's database connections are held by its workers: with ``children:
    sum`` (or ``each``) they count for the service; watching the master alone they do not."""
    port = listener.getsockname()[1]
    worker_code = (
        "import socket, sys, time\n"
        f"conns = [socket.create_connection(('127.0.0.1', {port})) for _ in range(2)]\n"
        "print('connected', flush=True)\n"
        "sys.stdin.read()\n"  # until the master closes the pipe (or the test kills it)
    )
    child = spawn_child(
        "import subprocess, sys\n"
        "worker = subprocess.Popen([sys.executable, '-c', "
        + repr(worker_code)
        + "], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)\n"
        "assert worker.stdout.readline().strip() == 'connected'\n"
    )
    worker = psutil.Process(child.pid).children()[0]
    try:
        tracker = ProcessTracker(
            CallableMatcher(lambda: child.pid, children=children), scan_interval_seconds=0.0
        )
        PoolCollector({"demo": (tracker, [PoolSpec(name="db", port=port)])}, registry=registry)
        assert pool_value(registry, "db") == expected
    finally:  # the worker is the child's child: stopped by its PID, reaped by its parent
        worker.kill()
        psutil.wait_procs([worker], timeout=10)
