"""Allocation attribution of a Go service from its own ``net/http/pprof`` heap profile, against
a real Go service built here (tests/exporter/goapp: ``/leak`` keeps 64 KiB per request, ``/healthy``
allocates as much and lets it go): the text profile of Go 1.19 parsed and unsampled, the sidecar's
``pprof:`` target served as ``soak_allocation_site_bytes``, a target without pprof a warning and
``up 0``, and a ``soak run`` whose failing memory verdict names the leaking Go line."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import servers
from soakwatch.configfile import Section
from soakwatch.errors import ConfigError
from soakwatch.exporter.config import parse_config
from soakwatch.exporter.pprof import (
    PprofCollector,
    PprofSpec,
    heap_url,
    parse_heap_profile,
    sites_of,
)
from soakwatch.exporter.server import SidecarExporter

GOAPP = Path(__file__).parent / "goapp" / "main.go"
CHUNK = 64 << 10


def line_of(marker: str) -> int:
    text = GOAPP.read_text().splitlines()
    return next(n for n, line in enumerate(text, 1) if marker in line)


LEAK_SITE = f"main.go:{line_of('// the leaking line')}"


@dataclass
class GoService:
    url: str
    pid: int
    process: subprocess.Popen[str]

    def hit(self, path: str, times: int) -> None:
        for _ in range(times):
            with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
                response.read()


@pytest.fixture(scope="module")
def goapp_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    servers.require_binary("go", "golang-go")
    work = tmp_path_factory.mktemp("goapp")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "gopath"),
        "GOFLAGS": "",
    }
    binary = work / "goapp"
    subprocess.run(["go", "build", "-o", str(binary), str(GOAPP)], env=env, check=True, timeout=300)
    return binary


@pytest.fixture
def go_factory(goapp_binary: Path) -> Iterator[object]:
    started: list[GoService] = []

    def start() -> GoService:
        process = subprocess.Popen(
            [str(goapp_binary), "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on "), line
        service = GoService(f"http://{line.split()[-1]}", process.pid, process)
        started.append(service)
        return service

    yield start
    for service in started:
        service.process.terminate()
        service.process.wait(timeout=10)
        if service.process.stdout is not None:
            service.process.stdout.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        out.append((dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
    return out


def test_the_real_go_heap_profile_puts_the_leak_at_its_line_and_not_the_healthy_handler(
    go_factory: object,
) -> None:
    service = go_factory()  # type: ignore[operator]
    service.hit("/leak", 400)
    service.hit("/healthy", 400)
    service.hit("/gc", 1)  # the profile is as of the last completed collection
    with urllib.request.urlopen(heap_url(service.url), timeout=10) as response:
        text = response.read().decode()
    assert text.startswith("heap profile: ")
    records = parse_heap_profile(text)
    assert records and all(r.frames for r in records if r.inuse_bytes)
    sites = sites_of(records)
    function, kept = next((f, v) for (s, f), v in sites.items() if s == LEAK_SITE)
    assert function == "main.keep"
    # sampled at one allocation per 512 KiB on average, unsampled: about 47 samples of 400
    truth = 400 * CHUNK
    assert 0.6 * truth < kept < 1.6 * truth, (kept, truth)
    healthy = sum(v for (_, f), v in sites.items() if f == "main.healthy")
    assert healthy < 0.05 * truth
    # build paths never reach a label without a root; with one, sites are relative to it
    assert all("/" not in site for site, _ in sites)
    rooted = sites_of(records, root=str(GOAPP.parent.parent))
    assert f"goapp/{LEAK_SITE}" in {site for site, _ in rooted}


def test_parse_heap_profile_refuses_what_is_not_one() -> None:
    with pytest.raises(ValueError, match="not a Go heap profile"):
        parse_heap_profile("<html>404 page not found</html>")


def test_the_sidecar_serves_the_go_sites_as_they_grow(go_factory: object) -> None:
    service = go_factory()  # type: ignore[operator]
    config = parse_config(
        {
            "listen": "127.0.0.1:0",
            "services": [
                {
                    "name": "go",
                    "match": {"pid": service.pid},
                    "pprof": {"url": service.url, "interval": "1s", "top": 3},
                }
            ],
        },
        source="test",
    )
    exporter = SidecarExporter(config)
    server = exporter.start()
    try:
        values = []
        for _ in range(3):
            service.hit("/leak", 100)
            service.hit("/gc", 1)
            time.sleep(1.5)
            text = scrape(server.url)
            found = {labels["site"]: v for labels, v in samples(text, "soak_allocation_site_bytes")}
            values.append(found.get(LEAK_SITE, 0.0))
            assert samples(text, "soak_allocation_attribution_up") == [({"service": "go"}, 1.0)]
    finally:
        exporter.stop()
    assert values[0] > 0 and values[2] > values[0] * 1.5, values


def test_a_go_target_without_pprof_is_a_warning_and_up_0_and_the_exporter_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real HTTP server that serves no pprof (python -m http.server) and a closed port."""
    plain = subprocess.Popen(
        [sys.executable, "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert plain.stdout is not None
        port = re.search(r"port (\d+)", plain.stdout.readline())
        assert port, "http.server did not start"
        down = closed_port()
        collector = PprofCollector(
            {
                "plain": PprofSpec(url=heap_url(f"http://127.0.0.1:{port.group(1)}")),
                "down": PprofSpec(url=heap_url(f"http://127.0.0.1:{down}")),
            }
        )
        with caplog.at_level(logging.WARNING, logger="soakwatch.exporter.pprof"):
            assert collector.read("plain") is False
            assert collector.read("down") is False
            assert collector.read("down") is False  # the same problem is logged once
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        registry.register(collector)
        text = generate_latest(registry).decode()
    finally:
        plain.terminate()
        plain.wait(timeout=10)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "no Go heap profile at" in warnings[0] and "404" in warnings[0]
    assert "net/http/pprof" in warnings[0]
    assert "ConnectionRefusedError" in warnings[1] or "Connection refused" in warnings[1]
    assert sorted(samples(text, "soak_allocation_attribution_up"), key=str) == [
        ({"service": "down"}, 0.0),
        ({"service": "plain"}, 0.0),
    ]
    assert not samples(text, "soak_allocation_site_bytes")


def test_a_bad_pprof_value_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"services\[0\]\.pprof"):
        parse_config(
            {"services": [{"name": "go", "match": {"pid": 1}, "pprof": "ftp://x"}]},
            source="test",
        )
    spec = PprofSpec.from_value(Section({"pprof": "http://127.0.0.1:6060"}, source="t"), "pprof")
    assert spec.url == "http://127.0.0.1:6060/debug/pprof/heap?debug=1"


@pytest.mark.slow
def test_a_soak_of_a_leaking_go_handler_fails_memory_and_names_its_line(
    tmp_path: Path, go_factory: object
) -> None:
    """Two Go services under the same leaking load: one serves its heap profile, the other's
    pprof target is wrong. Both fail memory_growth; the first names main.go's leaking line,
    the second carries a note that its sites could not be read."""
    from soakwatch.run import main

    leaky = go_factory()  # type: ignore[operator]
    blind = go_factory()  # type: ignore[operator]
    rules = Path(__file__).parent.parent / "run" / "data" / "short-rules.yaml"
    config = {
        "profile": "ci", "duration": "30s", "sampling_interval": "1s", "rules": str(rules),
        "exporter": {"scan_interval": "1s", "services": [
            {"name": "goleak", "match": {"pid": leaky.pid},
             "pprof": {"url": leaky.url, "interval": "2s"}},
            {"name": "goblind", "match": {"pid": blind.pid},
             "pprof": {"url": f"{blind.url}/nothing/here", "interval": "2s"}},
        ]},
        "load": {"status_interval": "1h", "scenarios": [
            {"name": "leak", "kind": "http", "rate": "15/s",
             "endpoints": [{"url": f"{leaky.url}/leak"}, {"url": f"{leaky.url}/healthy"}]},
            {"name": "leak_blind", "kind": "http", "rate": "15/s",
             "endpoints": [{"url": f"{blind.url}/leak"}]},
        ]},
    }  # fmt: skip
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    code = main(["--config", str(path), "--out", str(run_dir)])
    verdict = json.loads((run_dir / "verdict.json").read_text())
    memory = {
        r["subject"]["service"]: r for r in verdict["results"] if r["rule"] == "memory_growth"
    }
    assert code == 1
    assert memory["goleak"]["status"] == "fail", memory["goleak"]
    sites = memory["goleak"]["details"]["allocation_sites"]
    assert (sites[0]["site"], sites[0]["function"]) == (LEAK_SITE, "main.keep"), sites
    assert sites[0]["share"] > 0.9
    assert f"mostly at {LEAK_SITE}" in memory["goleak"]["reason"]
    assert memory["goblind"]["status"] == "fail"
    assert memory["goblind"]["details"]["allocation_sites"] == []
    assert "allocation sites unavailable" in memory["goblind"]["reason"]
    log = (run_dir / "logs").glob("exporter*")
    assert any("no Go heap profile at" in p.read_text() for p in log)
