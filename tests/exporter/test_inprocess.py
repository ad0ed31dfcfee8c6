"""start_in_process: a Python service publishes its own soak metrics on /metrics."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from urllib.error import URLError

import psutil
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from soakwatch.errors import SoakwatchError
from soakwatch.exporter.inprocess import start_in_process


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_start_in_process_serves_the_contract_series_on_a_free_port() -> None:
    registry = CollectorRegistry()
    exporter = start_in_process(port=0, service="api", registry=registry)
    try:
        assert exporter.port and exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
        gc.collect()
        values = samples(scrape(exporter.url))
        assert values[("soak_gc_collections_total", (("generation", "2"), ("service", "api")))] >= 1
        assert (
            "soak_gc_pause_seconds_bucket",
            (("generation", "0"), ("le", "+Inf"), ("service", "api")),
        ) in values
        rss = values[("soak_process_resident_memory_bytes", (("service", "api"),))]
        own_rss = psutil.Process(os.getpid()).memory_info().rss
        assert 0.5 * own_rss < rss < 2 * own_rss
        # prometheus-client's own series, added because this registry lacked them
        assert ("python_gc_objects_collected_total", (("generation", "0"),)) in values
        assert ("process_resident_memory_bytes", ()) in values
    finally:
        exporter.stop()
    with pytest.raises(URLError):
        scrape(exporter.url)


def test_in_the_default_registry_no_series_is_duplicated() -> None:
    collectors_before = set(REGISTRY._collector_to_names)  # what the service already had
    with start_in_process(port=0, service="api") as exporter:
        text = generate_latest(REGISTRY).decode()
        names = [f.name for f in text_string_to_metric_families(text)]
        assert len(names) == len(set(names)), Counter(names).most_common(3)
        keys = [
            (s.name, tuple(sorted(s.labels.items())))
            for f in text_string_to_metric_families(text)
            for s in f.samples
        ]
        assert len(keys) == len(set(keys))
        assert text.count("# TYPE python_gc_objects_collected_total counter") == 1
        assert text.count("# TYPE process_resident_memory_bytes gauge") == 1
        assert "soak_gc_examined_objects_total" in text
        assert exporter.registry is REGISTRY
    assert set(REGISTRY._collector_to_names) == collectors_before  # stop() undid exactly its own


def test_a_second_exporter_in_the_same_registry_is_refused_and_the_first_keeps_serving() -> None:
    registry = CollectorRegistry()
    callbacks = len(gc.callbacks)
    with start_in_process(port=0, service="api", registry=registry) as first:
        with pytest.raises(SoakwatchError, match="already running in this registry"):
            start_in_process(port=0, service="api", registry=registry)
        assert len(gc.callbacks) == callbacks + 1
        assert "soak_gc_collections_total" in scrape(first.url)
    assert len(gc.callbacks) == callbacks


def test_a_port_in_use_raises_and_leaves_nothing_registered_behind() -> None:
    registry = CollectorRegistry()
    callbacks = len(gc.callbacks)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError):
            start_in_process(port=taken.getsockname()[1], service="api", registry=registry)
    assert len(gc.callbacks) == callbacks
    assert generate_latest(registry) == b""


def test_without_a_port_the_series_go_into_the_registry_and_nothing_listens() -> None:
    registry = CollectorRegistry()
    with start_in_process(port=None, service="api", registry=registry) as exporter:
        assert exporter.url is None
        assert (
            registry.get_sample_value(
                "soak_gc_collections_total", {"service": "api", "generation": "0"}
            )
            is not None
        )


def test_a_service_name_is_required() -> None:
    with pytest.raises(SoakwatchError, match="service name"):
        start_in_process(port=None, registry=CollectorRegistry())


def test_starting_in_process_and_running_probes_loads_no_client_library() -> None:
    """In a fresh interpreter: the in-process mode and every probe kind need no client library."""
    code = """
import asyncio, sys
from soakwatch.exporter.inprocess import start_in_process
from soakwatch.exporter.probes import KINDS, ProbeRunner, parse_probe
from soakwatch.configfile import Section
exporter = start_in_process(port=0, service="api")
specs = [parse_probe(Section({"name": k, "kind": k, "target": "127.0.0.1:1", "timeout": 1}
                             if k != "http" else {"name": k, "kind": k,
                             "target": "http://127.0.0.1:1/", "timeout": 1}, source="t"))
         for k in KINDS]
asyncio.run(ProbeRunner("api", specs, registry=None).run_once())
exporter.stop()
heavy = ("numpy", "scipy", "matplotlib", "grafana_client", "aiohttp", "redis", "asyncpg",
         "psycopg", "sqlalchemy", "clickhouse_driver")
print(sorted(name for name in heavy if name in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _free_run(count: int) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = int(probe.getsockname()[1])
        socks = [socket.socket() for _ in range(count)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports")


def test_workers_bind_the_first_free_port_of_the_range_and_label_their_series() -> None:
    first = _free_run(2)
    one = start_in_process(port=first, service="api", registry=CollectorRegistry(), workers=2)
    two = start_in_process(port=first, service="api", registry=CollectorRegistry(), workers=2)
    try:
        assert (one.port, one.worker) == (first, "0")
        assert (two.port, two.worker) == (first + 1, "1")
        assert two.url is not None
        values = samples(scrape(two.url))
        assert ("soak_process_up", (("service", "api"), ("worker", "1"))) in values
        gc_key = (
            "soak_gc_collections_total",
            (("generation", "0"), ("service", "api"), ("worker", "1")),
        )
        assert gc_key in values
        with pytest.raises(OSError, match=rf"every port of {first}\.\.{first + 1} is in use"):
            start_in_process(port=first, service="api", registry=CollectorRegistry(), workers=2)
        one.stop()  # a recycled worker frees its port: its successor takes it and its label
        three = start_in_process(port=first, service="api", registry=CollectorRegistry(), workers=2)
        assert (three.port, three.worker) == (first, "0")
        three.stop()
    finally:
        one.stop()
        two.stop()


def test_workers_needs_a_fixed_first_port() -> None:
    for port in (0, None):
        with pytest.raises(SoakwatchError, match="needs N >= 1 and a fixed first port"):
            start_in_process(port=port, service="api", registry=CollectorRegistry(), workers=2)


def test_a_failed_start_with_workers_frees_the_port_it_bound() -> None:
    first = _free_run(1)
    registry = CollectorRegistry()
    running = start_in_process(port=None, service="api", registry=registry)
    try:
        with pytest.raises(SoakwatchError, match="already running in this registry"):
            start_in_process(port=first, service="api", registry=registry, workers=1)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", first))  # free again
    finally:
        running.stop()
