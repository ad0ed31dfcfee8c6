"""The servers the benchmarks start on 127.0.0.1, built on ``soakwatch.run.localservers``: a child
listening on a free port (a benchmark's own minimal server, an exporter), a Prometheus over
a TSDB made with ``promtool tsdb create-blocks-from openmetrics`` (``soakwatch.run.prometheus``,
the launcher ``soak run`` and the tests use), a VictoriaMetrics over a storage directory of
the caller's; and ``serve_protocol``, the loop of a benchmark's own minimal asyncio server in
its child process.

Each runs in its own temporary directory (its output in ``server.log`` there), dies with this
process, and is stopped by its PID (``with`` or ``.stop()``)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from soakwatch.run import prometheus
from soakwatch.run.localservers import (
    HOST,
    SinglePortServer,
    find_binary,
    free_port,
    launch,
    spawn,
    start_in_temp_dir,
)
from soakwatch.run.prometheus import PrometheusServer

ROOT = Path(__file__).parent.parent


class ListeningServer(SinglePortServer):
    """A child process listening on ``.port``; ``.url`` is its HTTP root."""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _accepts(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        with socket.create_connection((HOST, port), timeout=1):
            return True

    return ready


def start_listening(
    name: str, argv_for: Callable[[int, Path], list[str]], *, python_env: bool = False
) -> ListeningServer:
    """Start ``argv_for(port, data_dir)`` on a free port; return once the port accepts
    connections. ``python_env``: the repository root on PYTHONPATH (for ``-m benchmarks.x``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)} if python_env else None

    def attempt(data_dir: Path) -> ListeningServer:
        port = free_port()
        process, log_path = spawn(argv_for(port, data_dir), data_dir, env=env)
        server = ListeningServer(process, data_dir, log_path, port=port)
        server.name = name
        return launch(server, _accepts(port))

    return start_in_temp_dir(name, attempt)


def serve_protocol(factory: Callable[[], asyncio.Protocol], port: int) -> None:
    """Serve ``factory()`` connections on 127.0.0.1:``port`` until this process is stopped."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, HOST, port, backlog=4096)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def start_benchmark_server(module: str, flag: str = "--serve") -> ListeningServer:
    """``python -m benchmarks.<module> <flag> PORT``: a benchmark's own minimal server."""
    return start_listening(
        module,
        lambda port, _: [sys.executable, "-m", f"benchmarks.{module}", flag, str(port)],
        python_env=True,
    )


def import_openmetrics(
    openmetrics: Path, tsdb: Path, timeout: float, *, max_block_duration: str | None = None
) -> float:
    """Make TSDB blocks in ``tsdb`` from an OpenMetrics file with promtool (blocks of at most
    ``max_block_duration``, promtool's default 2h when None); the seconds taken."""
    promtool = find_binary("promtool", "prometheus")
    argv = [promtool, "tsdb", "create-blocks-from", "openmetrics"]
    if max_block_duration:
        argv.append(f"--max-block-duration={max_block_duration}")
    began = time.perf_counter()
    subprocess.run(
        [*argv, str(openmetrics), str(tsdb)], check=True, capture_output=True, timeout=timeout
    )
    return time.perf_counter() - began


def start_prometheus(tsdb: Path, extra_args: Sequence[str] = ()) -> PrometheusServer:
    """A Prometheus serving the blocks in ``tsdb`` (nothing scraped, kept for 100 years),
    returned once ``/-/ready`` answers; started by ``soak run``'s launcher."""
    return prometheus.start_prometheus(
        {"global": {}},
        storage_path=tsdb,
        retention="100y",
        log_level="error",
        extra_args=extra_args,
    )


def start_victoriametrics(storage: Path) -> ListeningServer:
    """A VictoriaMetrics keeping its data in ``storage`` (kept after it stops: a cache of the
    caller's), without its query cache (each query is read from storage, as a first look at a
    run is) and with samples visible as soon as they are flushed; returned once ``/health``
    answers."""
    binary = find_binary("victoria-metrics", "victoria-metrics")
    server = start_listening(
        "victoriametrics",
        lambda port, _data_dir: [
            binary,
            f"-httpListenAddr={HOST}:{port}",
            f"-storageDataPath={storage}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-search.latencyOffset=0s",
            "-loggerLevel=WARN",
        ],
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"VictoriaMetrics on {storage} did not become healthy")
        time.sleep(0.2)
