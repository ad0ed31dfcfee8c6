"""The assembled sidecar exporter: background scanning, one family per name, start and stop."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

import servers
from soakwatch.exporter.config import parse_config
from soakwatch.exporter.server import MergedCollector, SidecarExporter


def config_for(services: list[dict], scan_interval: str = "5s"):
    return parse_config(
        {"listen": "127.0.0.1:0", "scan_interval": scan_interval, "services": services},
        source="test",
    )


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_background_scan_counts_restarts_that_happen_between_scrapes(spawn_child):
    first = spawn_child()
    exporter = SidecarExporter(
        config_for([{"name": "demo", "match": {"cmdline": first.marker}}], scan_interval="0.1s")
    )
    exporter.start()
    tracker = exporter.trackers["demo"]
    try:
        previous = first
        for expected in (1, 2):
            previous.kill()
            previous = spawn_child(marker=first.marker)
            pid = previous.pid
            wait_until(lambda pid=pid: tracker.identity is not None and tracker.identity[0] == pid)
            assert tracker.restarts == expected
        # the first scrape after two restarts sees both
        value = exporter.registry.get_sample_value(
            "soak_process_restarts_total", {"service": "demo"}
        )
        assert value == 2
    finally:
        exporter.stop()


def test_stop_closes_the_listening_port(spawn_child):
    child = spawn_child()
    exporter = SidecarExporter(config_for([{"name": "demo", "match": {"pid": child.pid}}]))
    server = exporter.start()
    body = urllib.request.urlopen(server.url, timeout=10).read().decode()
    assert 'soak_process_up{service="demo"} 1.0' in body

    exporter.stop()

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass


def test_probe_series_of_several_services_share_one_family(spawn_child):
    child = spawn_child()
    closed = servers.free_port()
    probe = {
        "name": "port",
        "kind": "tcp",
        "target": f"127.0.0.1:{closed}",
        "timeout": "0.5s",
        "interval": "0.5s",
    }
    exporter = SidecarExporter(
        config_for(
            [
                {"name": "one", "match": {"pid": child.pid}, "probes": [probe]},
                {"name": "two", "match": {"pid": child.pid}, "probes": [probe]},
            ]
        )
    )
    server = exporter.start()
    try:

        def both_reported() -> bool:
            return all(
                exporter.registry.get_sample_value(
                    "soak_probe_success", {"service": s, "probe": "port"}
                )
                == 0
                for s in ("one", "two")
            )

        wait_until(both_reported)
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
        for family in ("soak_probe_success", "soak_probe_duration_seconds"):
            assert text.count(f"# TYPE {family} gauge") == 1, family
        assert text.count("soak_probe_success{") == 2
    finally:
        exporter.stop()


def test_merged_collector_yields_each_family_name_once():
    class Fixed:
        def __init__(self, service: str, value: float) -> None:
            self.service, self.value = service, value

        def collect(self):
            family = GaugeMetricFamily("x_value", "x", labels=["service"])
            family.add_metric([self.service], self.value)
            yield family

    registry = CollectorRegistry()
    registry.register(MergedCollector([Fixed("a", 1), Fixed("b", 2)]))

    families = list(registry.collect())
    assert [f.name for f in families] == ["x_value"]
    assert registry.get_sample_value("x_value", {"service": "a"}) == 1
    assert registry.get_sample_value("x_value", {"service": "b"}) == 2


def listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as the kernel reports it: for a
    listening socket ``ss -ltn`` shows it as Send-Q."""
    output = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in output.splitlines() if line.strip()]
    assert len(rows) == 1, output
    return int(rows[0][2])


@pytest.mark.requires_binary("ss", "iproute2")
def test_the_metrics_port_queues_at_least_128_connections_and_150_concurrent_scrapes_succeed(
    spawn_child,
) -> None:
    child = spawn_child()
    exporter = SidecarExporter(config_for([{"name": "demo", "match": {"pid": child.pid}}]))
    server = exporter.start()
    try:
        assert listen_backlog(server.port) >= 128  # prometheus-client's own server has 5

        def scrape(_: int) -> float:
            started = time.monotonic()
            with urllib.request.urlopen(server.url, timeout=10) as reply:
                assert b'soak_process_up{service="demo"} 1.0' in reply.read()
            return time.monotonic() - started

        with ThreadPoolExecutor(max_workers=150) as pool:
            seconds = list(pool.map(scrape, range(150)))
        # A connection the full queue dropped is retried after 1 s (the SYN retry): with a
        # backlog of 5, about half of them took 1-3 s.
        assert max(seconds) < 1.0
    finally:
        exporter.stop()


def test_the_sidecar_text_is_prometheus_clients_text_for_the_same_families():
    # counters with _created samples, escaped label values, Go-style floats: byte for byte
    import prometheus_client

    from soakwatch.exporter.exposition import (
        CounterMetricFamily,
        GaugeMetricFamily,
        generate_latest,
    )

    class Families:
        def collect(self):
            counter = CounterMetricFamily("soak_x", "A counter.", labels=["service"])
            counter.add_metric(['a "quoted"\\ name\n'], 3.0, created=1700000000.5)
            counter.add_metric(["b"], 1e6, created=1700000001.0)
            gauge = GaugeMetricFamily("soak_y", "A gauge\\ with\nlines.", labels=["service"])
            gauge.add_metric(["a"], 0.1)
            gauge.add_metric(["b"], float("inf"))
            yield counter
            yield gauge

    registry = prometheus_client.CollectorRegistry()
    registry.register(Families())

    assert generate_latest(registry) == prometheus_client.generate_latest(registry)


def test_between_scrapes_the_scan_sleeps_while_every_watched_process_lives(spawn_child):
    child = spawn_child()
    exporter = SidecarExporter(
        config_for([{"name": "demo", "match": {"pid": child.pid}}], scan_interval="0.1s")
    )
    exporter.start()
    try:
        time.sleep(1.5)  # a scan on its timer would have looked 15 times
        assert exporter._exits.available, "this test needs pidfds (Linux 5.3+)"
        assert exporter.scan_rounds == 0
    finally:
        exporter.stop()


def test_an_exit_is_seen_at_once_not_a_scan_interval_later(spawn_child):
    first = spawn_child()
    exporter = SidecarExporter(
        config_for([{"name": "demo", "match": {"cmdline": first.marker}}], scan_interval="30s")
    )
    exporter.start()
    tracker = exporter.trackers["demo"]
    try:
        assert tracker.watched()
        first.kill()  # left a zombie (not reaped yet): exited all the same
        wait_until(lambda: tracker.watched() == (), timeout=3.0)
        assert exporter.scan_rounds >= 1
        # while the service has no process the scan looks on its timer again (30 s here):
        # its successor is found by the next look, not by the exit
        second = spawn_child(marker=first.marker)
        exporter._exits.wake()
        wait_until(lambda: tracker.identity is not None and tracker.identity[0] == second.pid)
        assert tracker.restarts == 1
    finally:
        exporter.stop()
