"""The sidecar's config values behave as the frozen dataclasses they replace (soakwatch.records),
and a sidecar run loads none of what a scrape does not use (checked in fresh interpreters)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from soakwatch.addresses import Address
from soakwatch.exporter.config import ExporterConfig, MatchSpec, PoolSpec, ServiceConfig


def a_config() -> ExporterConfig:
    service = ServiceConfig(
        "api", MatchSpec(cmdline="gunicorn"), pools=(PoolSpec("db", 5432, "127.0.0.1"),)
    )
    return ExporterConfig((service,), listen=Address("::1", 9555))


def test_a_record_is_equal_hashed_and_shown_by_its_fields():
    assert a_config() == a_config() and hash(a_config()) == hash(a_config())
    assert a_config() != a_config().replace(scan_interval_seconds=1.0)
    assert Address("::1", 1) != ("::1", 1)
    assert {MatchSpec(pid=1), MatchSpec(pid=1), MatchSpec(pid=2)} == {
        MatchSpec(pid=1),
        MatchSpec(pid=2),
    }
    assert repr(MatchSpec(pid=7)) == "MatchSpec(pid=7, pidfile=None, cmdline=None, children='sum')"
    assert repr(Address("h", 1)) == "Address(host='h', port=1)"


def test_a_record_is_frozen_as_a_dataclass_is():
    config = a_config()

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listen = Address("h", 1)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del config.services  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.extra = 1  # type: ignore[attr-defined]


def test_replace_runs_the_checks_of_the_constructor_again():
    spec = MatchSpec(pid=1)

    assert spec.replace(children="each") == MatchSpec(pid=1, children="each")
    with pytest.raises(ValueError, match="exactly one of pid, pidfile, cmdline is required"):
        spec.replace(cmdline="x")


def test_a_record_survives_copy_and_pickle():
    config = a_config()

    assert copy.copy(config) == config
    assert copy.deepcopy(config) == config
    assert pickle.loads(pickle.dumps(config)) == config
    assert ExporterConfig((), listen=None).listen == Address("127.0.0.1", 9464)


# A sidecar run from a config file, through the CLI, up to its first scrape.
# (Modules the interpreter had at start are left out: a venv's .pth files may import shutil.)
SIDECAR_RUN = """
import sys
at_start = set(sys.modules)
import os, socket, threading, time
from soakwatch.exporter.cli import main
path = sys.argv[1]
with open(path, "w") as handle:
    handle.write("listen: 127.0.0.1:0\\nservices:\\n  - name: me\\n"
                 f"    match: {{pid: {os.getpid()}}}\\n    pools: [{{name: db, port: 5432}}]\\n")
stop = threading.Event()
import soakwatch.exporter.server as server
served = []
real = server.serve_metrics
def serve(registry, listen):
    running = real(registry, listen)
    served.append(running)
    return running
server.serve_metrics = serve
thread = threading.Thread(target=main, args=(["--config", path],), kwargs={"stop_event": stop})
thread.start()
while not served:
    time.sleep(0.01)
# a bare socket for the scrape: urllib.request would load tempfile and shutil itself
with socket.create_connection(("127.0.0.1", served[0].port), timeout=10) as client:
    client.sendall(b"GET /metrics HTTP/1.0\\r\\n\\r\\n")
    text = b"".join(iter(lambda: client.recv(65536), b"")).decode()
stop.set()
thread.join()
assert 'soak_process_up{service="me"} 1.0' in text, text
print(",".join(sorted(set(sys.modules) - at_start)))
"""

NOT_FOR_A_SCRAPE = (
    "dataclasses",
    "inspect",
    "ast",
    "pathlib",
    "shutil",
    "difflib",
    "prometheus_client",
    "ipaddress",
)


def test_a_sidecar_run_loads_no_module_a_scrape_does_not_use(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SIDECAR_RUN), str(tmp_path / "exporter.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.strip().splitlines()[-1].split(","))
    assert "yaml" in loaded  # a config file was given
    assert sorted(loaded.intersection(NOT_FOR_A_SCRAPE)) == []


def test_a_sidecar_from_flags_never_loads_yaml():
    code = (
        "import sys\n"
        "from soakwatch.exporter.cli import _config_from_args, _parser\n"
        "from soakwatch.exporter.server import SidecarExporter\n"
        "args = _parser().parse_args(['--pid', '1', '--service', 'x', '--listen', '127.0.0.1:0'])\n"
        "exporter = SidecarExporter(_config_from_args(args))\n"
        "exporter.start()\n"
        "exporter.stop()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'yaml'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_pool_addresses_are_canonical_as_ipaddress_writes_them():
    import ipaddress
    import random

    from soakwatch.exporter.pools import normalize_address

    def reference(address: str) -> str:  # the implementation before, through ipaddress
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)

    rng = random.Random(16)
    addresses = [
        "127.0.0.1",
        "0.0.0.0",
        "01.2.3.4",
        "256.1.1.1",
        "db.internal",
        "",
        "::",
        "::1",
        "0:0:0:0:0:0:0:1",
        "fe80::1%eth0",
        "::ffff:127.0.0.1",
        "::1.2.3.4",
        "::ffff:0:1.2.3.4",
        "2001:0DB8:0000:0000:0001:0000:0000:0001",
        "1:0:2:3:4:5:6:7",
        "1::2::3",
    ]
    for _ in range(3000):  # words drawn so that runs of zeros of every length and place occur
        words = [rng.choice([0, 0, 0, 1, 0xFFFF, rng.randrange(65536)]) for _ in range(8)]
        addresses.append(":".join(f"{w:x}" for w in words))
        addresses.append(str(ipaddress.IPv4Address(rng.randrange(2**32))))

    assert [normalize_address(a) for a in addresses] == [reference(a) for a in addresses]
