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
