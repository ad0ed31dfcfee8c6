"""The exporter's import path stays light and portable (checked in fresh interpreters)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("numpy", "scipy", "matplotlib", "grafana_client", "aiohttp")

# Serve one scrape of this very interpreter through the whole sidecar stack.
ONE_SCRAPE = """
import os, urllib.request
from soakwatch.exporter.config import parse_config
from soakwatch.exporter.server import SidecarExporter
config = parse_config(
    {"listen": "127.0.0.1:0", "services": [{"name": "me", "match": {"pid": os.getpid()}}]},
    source="test",
)
exporter = SidecarExporter(config)
server = exporter.start()
text = urllib.request.urlopen(server.url, timeout=10).read().decode()
exporter.stop()
assert 'soak_process_up{service="me"} 1.0' in text, text
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_importing_and_running_the_exporter_loads_no_heavy_library():
    result = run_python(
        "import sys\n"
        "import soakwatch.exporter, soakwatch.exporter.cli\n"
        + ONE_SCRAPE
        + f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(heavy))\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_exporter_works_on_a_platform_without_resource_and_fcntl():
    # psutil is the platform layer and may use them itself on Linux; soakwatch must not.
    result = run_python(
        "import sys, psutil\n"
        "sys.modules['resource'] = None\n"
        "sys.modules['fcntl'] = None\n"
        "import soakwatch.exporter, soakwatch.exporter.cli\n" + ONE_SCRAPE + "print('ok')\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_in_process_mode_works_on_a_platform_without_resource_and_fcntl():
    result = run_python(
        "import sys, gc, psutil\n"
        "sys.modules['resource'] = None\n"
        "sys.modules['fcntl'] = None\n"
        "import urllib.request\n"
        "from soakwatch.exporter import start_in_process\n"
        "exporter = start_in_process(port=0, service='me')\n"
        "gc.collect()\n"
        "text = urllib.request.urlopen(exporter.url, timeout=10).read().decode()\n"
        "exporter.stop()\n"
        "assert 'soak_process_up{service=\"me\"} 1.0' in text, text\n"
        'assert \'soak_gc_collections_total{generation="2",service="me"}\' in text, text\n'
        "print('ok')\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_in_process_mode_is_loaded_only_when_asked_for():
    result = run_python(
        "import sys\n"
        "import soakwatch.exporter as exporter\n"
        "print('soakwatch.exporter.inprocess' in sys.modules)\n"
        "from soakwatch.exporter.inprocess import start_in_process\n"
        "print(exporter.start_in_process is start_in_process)\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


# What a sidecar without probes must not load: prometheus-client (its package __init__ pulls in
# http.server, urllib.request and ssl, ~11 MB of RSS), the stdlib HTTP stacks themselves, and
# asyncio (probes only). The scrape below speaks HTTP over a raw socket, so that the test's own
# client loads none of them either.
SIDECAR_UNUSED = (
    "prometheus_client",
    "http.server",
    "http.client",
    "urllib.request",
    "ssl",
    "wsgiref",
    "asyncio",
    "email",
)

RAW_SCRAPE = """
import os, socket
from soakwatch.exporter.config import parse_config
from soakwatch.exporter.server import SidecarExporter
config = parse_config(
    {"listen": "127.0.0.1:0", "services": [{"name": "me", "match": {"pid": os.getpid()},
     "pools": [{"name": "db", "port": 5432}]}]},
    source="test",
)
exporter = SidecarExporter(config)
server = exporter.start()
with socket.create_connection((server.host, server.port), timeout=10) as connection:
    connection.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\nAccept-Encoding: gzip\\r\\n\\r\\n")
    reply = b""
    while chunk := connection.recv(65536):
        reply += chunk
exporter.stop()
head, _, body = reply.partition(b"\\r\\n\\r\\n")
assert head.startswith(b"HTTP/1.1 200 OK"), head
assert b"Content-Type: text/plain; version=0.0.4" in head, head
text = body.decode()
assert 'soak_process_up{service="me"} 1.0' in text, text
assert "# TYPE soak_process_restarts_total counter" in text, text
assert 'soak_pool_connections{pool="db",service="me",state="established"} 0.0' in text, text
"""


def loaded_unused(entry: str) -> list[str]:
    result = run_python(
        "import sys\n"
        + entry
        + RAW_SCRAPE
        + f"unused = {SIDECAR_UNUSED!r}\n"
        + "print(','.join(sorted(m for m in sys.modules if m in unused"
        + " or m.split('.')[0] in unused)))\n"
    )
    assert result.returncode == 0, result.stderr
    return [name for name in result.stdout.strip().split(",") if name]


def test_a_sidecar_without_probes_loads_no_prometheus_client_http_stack_or_asyncio():
    assert loaded_unused("import soakwatch.exporter, soakwatch.exporter.cli\n") == []


def test_the_soak_umbrella_path_to_the_exporter_loads_nothing_more():
    entry = (
        "import soakwatch.commands, importlib\n"
        "importlib.import_module(soakwatch.commands.SUBCOMMANDS['exporter'][0])\n"
    )
    assert loaded_unused(entry) == []


def test_a_sidecar_with_probes_loads_asyncio_only_then():
    result = run_python(
        "import sys\n"
        "from soakwatch.exporter.config import parse_config\n"
        "from soakwatch.exporter.server import SidecarExporter\n"
        "print('asyncio' in sys.modules)\n"
        "config = parse_config({'listen': '127.0.0.1:0', 'services': [{'name': 'me',"
        " 'match': {'pid': 1}, 'probes': [{'name': 'up', 'kind': 'tcp',"
        " 'target': '127.0.0.1:9'}]}]}, source='test')\n"
        "exporter = SidecarExporter(config)\n"
        "print('asyncio' in sys.modules, 'prometheus_client' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "False"]
