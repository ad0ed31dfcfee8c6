"""``soak-exporter`` end to end: run as a subprocess, GET /metrics, stop it with SIGTERM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import servers
from soakwatch.exporter.cli import main

EXPORTER = str(Path(sys.executable).with_name("soak-exporter"))
CONTRACT = [
    "soak_process_resident_memory_bytes",
    "soak_process_unique_memory_bytes",
    "soak_process_virtual_memory_bytes",
    "soak_process_cpu_seconds_total",
    "soak_process_threads",
    "soak_process_start_time_seconds",
    "soak_process_restarts_total",
    "soak_process_up",
]
if sys.platform.startswith("linux"):
    CONTRACT += ["soak_process_proportional_memory_bytes", "soak_process_open_fds"]


def vmrss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmRSS is Linux only")
def test_the_exporter_serves_the_contract_for_a_pid_and_stops_on_sigterm(
    spawn_child, start_exporter
):
    child = spawn_child("block = bytearray(40 * 1024 * 1024)")
    port = servers.free_port()

    exporter = start_exporter(
        "--pid", str(child.pid), "--service", "demo", "--listen", f"127.0.0.1:{port}"
    )
    samples = exporter.samples()

    names = {name for name, _ in samples}
    for name in CONTRACT:
        assert name in names, name
    assert exporter.url == f"http://127.0.0.1:{port}/metrics"
    demo = (("service", "demo"),)
    assert samples[("soak_process_up", demo)] == 1
    assert abs(samples[("soak_process_resident_memory_bytes", demo)] - vmrss_bytes(child.pid)) <= (
        64 * 1024
    )
    code, stderr = exporter.stop()
    assert code == 0
    assert "Traceback" not in stderr


def test_a_killed_and_restarted_process_is_counted(spawn_child, start_exporter):
    child = spawn_child()
    exporter = start_exporter(
        "--match",
        child.marker,
        "--service",
        "demo",
        "--listen",
        "127.0.0.1:0",
        env={"SOAK_EXPORTER_SCAN_INTERVAL": "0.2s"},
    )
    assert exporter.value("soak_process_up", service="demo") == 1
    assert exporter.value("soak_process_restarts_total", service="demo") == 0

    child.kill()
    assert exporter.value("soak_process_up", service="demo") == 0
    successor = spawn_child(marker=child.marker)

    deadline = time.monotonic() + 20
    while exporter.value("soak_process_restarts_total", service="demo") != 1:
        assert time.monotonic() < deadline, "the restart was not counted"
        time.sleep(0.1)
    assert exporter.value("soak_process_up", service="demo") == 1
    assert exporter.value("soak_process_start_time_seconds", service="demo") == pytest.approx(
        __import__("psutil").Process(successor.pid).create_time()
    )
    assert exporter.stop()[0] == 0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_the_exporter_listens_on_ipv6(spawn_child, start_exporter):
    child = spawn_child()
    exporter = start_exporter("--pid", str(child.pid), "--service", "demo", "--listen", "[::1]:0")

    assert exporter.url.startswith("http://[::1]:")
    assert exporter.value("soak_process_up", service="demo") == 1


def test_output_survives_a_narrow_console_encoding(spawn_child, start_exporter):
    child = spawn_child()
    name = "démo ✓ 服务"
    exporter = start_exporter(
        "--pid",
        str(child.pid),
        "--service",
        name,
        "--listen",
        "127.0.0.1:0",
        env={"PYTHONIOENCODING": "cp1252"},
    )

    assert exporter.value("soak_process_up", service=name) == 1
    code, stderr = exporter.stop()
    assert code == 0
    assert "UnicodeEncodeError" not in stderr and "Traceback" not in stderr


def test_an_error_naming_characters_a_narrow_console_lacks_is_printed_replaced(tmp_path):
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "services:\n  - {name: démo, match: {pid: 1}, sérvice✓: x}\n", encoding="utf-8"
    )
    result = subprocess.run(
        [EXPORTER, "--config", str(config), "--check"],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "cp1252"},
    )

    assert result.returncode == 2
    assert result.stderr.decode("cp1252") == (
        f"soak-exporter: {config}: services[0].sérvice?: unknown key\n"
    )


def test_probes_report_a_stopped_server_and_never_show_the_password(
    spawn_child, start_exporter, tmp_path
):
    child = spawn_child()
    closed_port = servers.free_port()
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "listen: 127.0.0.1:0\n"
        "services:\n"
        "  - name: demo\n"
        f"    match: {{pid: {child.pid}}}\n"
        "    probes:\n"
        f"      - {{name: db, kind: postgres, timeout: 1s, interval: 1s,\n"
        f"          target: 'postgresql://soak:hunter2@127.0.0.1:{closed_port}/soak'}}\n"
        f"      - {{name: port, kind: tcp, timeout: 1s, interval: 1s,\n"
        f"          target: '127.0.0.1:{closed_port}'}}\n"
    )
    exporter = start_exporter("--config", str(config), "--log-level", "debug")

    deadline = time.monotonic() + 15
    while exporter.value("soak_probe_success", service="demo", probe="db") is None:
        assert time.monotonic() < deadline, "the probe never reported"
        time.sleep(0.2)
    samples = exporter.samples()
    assert samples[("soak_probe_success", (("probe", "db"), ("service", "demo")))] == 0
    assert samples[("soak_probe_success", (("probe", "port"), ("service", "demo")))] == 0
    assert samples[("soak_process_up", (("service", "demo"),))] == 1
    text = urllib.request.urlopen(exporter.url, timeout=10).read().decode()
    assert text.count("# TYPE soak_probe_success gauge") == 1
    code, stderr = exporter.stop()
    assert code == 0
    assert "hunter2" not in text and "hunter2" not in stderr


def test_a_busy_listen_port_is_an_error_with_exit_code_2_never_1_which_means_fail(
    spawn_child, capsys
):
    child = spawn_child()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        code = main(["--pid", str(child.pid), "--service", "demo", "--listen", f"127.0.0.1:{port}"])

    assert code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith(f"soak-exporter: cannot listen on 127.0.0.1:{port}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--pid", "1"],
            "soak-exporter: --service NAME is required with --pid, --pidfile or --match",
        ),
        (
            ["--pid", "1", "--service", "x", "--listen", "nowhere"],
            "soak-exporter: --listen: expected host:port (the port is missing), got 'nowhere'",
        ),
        (
            ["--match", "x", "--service", "x", "--pool", "db"],
            "soak-exporter: --pool: expected NAME=[HOST:]PORT, got 'db'",
        ),
        (
            ["--match", "(", "--service", "x"],
            "soak-exporter: command line: services[0].match.cmdline: not a valid regular "
            "expression: missing ), unterminated subpattern at position 0",
        ),
    ],
)
def test_a_wrong_command_line_exits_2_with_a_message(args, message, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err == message + "\n"


def test_version_prints_the_one_version_and_exits_0(capsys):
    from soakwatch.version import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"soak-exporter {__version__}\n"


def test_the_console_script_prints_its_version():
    from soakwatch.version import __version__

    result = subprocess.run([EXPORTER, "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"soak-exporter {__version__}\n")


def test_a_pool_endpoint_follows_the_one_address_grammar(capsys):
    assert main(["--match", "x", "--service", "x", "--pool", "db=::1:5432", "--check"]) == 2
    assert capsys.readouterr().err == (
        "soak-exporter: --pool db: an IPv6 address needs brackets, as in [::1]:9464, "
        "got '::1:5432'\n"
    )


def test_argparse_errors_exit_2_without_raising(capsys):
    assert main([]) == 2
    assert "one of the arguments --config --pid --pidfile --match is required" in (
        capsys.readouterr().err
    )


def test_check_validates_flags_and_names_the_service(capsys):
    assert (
        main(["--match", "gunicorn", "--service", "api", "--pool", "db=[::1]:5432", "--check"]) == 0
    )
    assert capsys.readouterr().out == "soak-exporter: config OK: api (cmdline /gunicorn/)\n"


def test_children_each_is_a_flag_beside_match_and_not_beside_config(capsys):
    assert main(["--match", "gunicorn", "--service", "api", "--children", "each", "--check"]) == 0
    out = capsys.readouterr().out
    assert out == "soak-exporter: config OK: api (cmdline /gunicorn/, children: each)\n"
    assert main(["--config", "x.yaml", "--children", "sum"]) == 2
    assert "--children go with --pid/--pidfile/--match" in capsys.readouterr().err


def test_soak_exporter_is_also_the_exporter_subcommand_of_soak(capsys):
    from soakwatch.commands import main as soak_main

    assert soak_main(["exporter", "--pid", "1", "--service", "init", "--check"]) == 0
    assert capsys.readouterr().out == "soak-exporter: config OK: init (pid 1)\n"


def _type_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("# TYPE ")]


def test_a_config_with_several_services_each_with_pools_and_probes_runs_end_to_end(
    spawn_child, start_exporter, tmp_path, redis_server, postgres_server
):
    # "api" holds 3 connections to a real Redis and probes Redis and PostgreSQL (its DSN has a
    # password); "worker" is found by its command line, holds 2 connections to a queue
    # endpoint and probes it over TCP; "batch" has no process yet.
    with socket.create_server(("127.0.0.1", 0)) as queue:
        queue_port = queue.getsockname()[1]
        api = spawn_child(
            "import socket\n"
            f"conns = [socket.create_connection(('127.0.0.1', {redis_server.port}))"
            " for _ in range(3)]\n"
        )
        worker = spawn_child(
            "import socket\n"
            f"conns = [socket.create_connection(('127.0.0.1', {queue_port})) for _ in range(2)]\n"
        )
        config = tmp_path / "exporter.yaml"
        config.write_text(
            "listen: 127.0.0.1:0\n"
            "scan_interval: 0.5s\n"
            "services:\n"
            "  - name: api\n"
            f"    match: {{pid: {api.pid}}}\n"
            "    pools:\n"
            f"      - {{name: cache, host: 127.0.0.1, port: {redis_server.port}}}\n"
            f"      - {{name: queue, port: {queue_port}}}\n"
            "    probes:\n"
            f"      - {{name: cache, kind: redis, target: '{redis_server.url}',"
            " timeout: 1s, interval: 1s}\n"
            f"      - {{name: db, kind: postgres, target: '{postgres_server.dsn}',"
            " timeout: 1s, interval: 1s}\n"
            "  - name: worker\n"
            f"    match: {{cmdline: '{worker.marker}'}}\n"
            "    pools:\n"
            f"      - {{name: queue, host: localhost, port: {queue_port}}}\n"
            "    probes:\n"
            f"      - {{name: queue, kind: tcp, target: '127.0.0.1:{queue_port}',"
            " timeout: 1s, interval: 1s}\n"
            "  - name: batch\n"
            f"    match: {{pidfile: '{tmp_path / 'batch.pid'}'}}\n"
            "    pools:\n"
            f"      - {{name: cache, port: {redis_server.port}}}\n"
        )
        exporter = start_exporter("--config", str(config), "--log-level", "debug")

        probes = [("api", "cache"), ("api", "db"), ("worker", "queue")]
        deadline = time.monotonic() + 20
        while any(exporter.value("soak_probe_success", service=s, probe=p) is None
                  for s, p in probes):  # fmt: skip
            assert time.monotonic() < deadline, "the probes never reported"
            time.sleep(0.2)
        with urllib.request.urlopen(exporter.url, timeout=10) as response:
            text = response.read().decode("utf-8")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

        def get(name: str, **labels: str) -> float | None:
            return samples.get((name, tuple(sorted(labels.items()))))

        for service, probe in probes:
            assert get("soak_probe_success", service=service, probe=probe) == 1, (service, probe)
            duration = get("soak_probe_duration_seconds", service=service, probe=probe)
            assert duration is not None and 0 < duration < 1.5
        assert get("soak_process_up", service="api") == 1
        assert get("soak_process_up", service="worker") == 1
        assert get("soak_process_up", service="batch") == 0
        assert get("soak_pool_connections", service="api", pool="cache", state="established") == 3
        assert get("soak_pool_connections", service="api", pool="queue", state="established") == 0
        assert (
            get("soak_pool_connections", service="worker", pool="queue", state="established") == 2
        )
        assert not any(
            name == "soak_pool_connections" and ("service", "batch") in labels
            for name, labels in samples
        )
        api_rss = get("soak_process_resident_memory_bytes", service="api")
        assert api_rss is not None and abs(api_rss - vmrss_bytes(api.pid)) <= 256 * 1024
        types = _type_lines(text)
        assert len(types) == len(set(types)), "a family appears twice"
        code, stderr = exporter.stop()
    assert code == 0
    assert "Traceback" not in stderr
    assert postgres_server.password not in text and postgres_server.password not in stderr


def test_a_scrape_stays_fast_while_a_probe_hangs(spawn_child, start_exporter, tmp_path):
    child = spawn_child()
    timeout_seconds = 4.0
    with socket.create_server(("127.0.0.1", 0)) as hung:
        config = tmp_path / "exporter.yaml"
        config.write_text(
            "listen: 127.0.0.1:0\n"
            "services:\n"
            "  - name: demo\n"
            f"    match: {{pid: {child.pid}}}\n"
            "    probes:\n"
            f"      - {{name: stuck, kind: redis, target: '127.0.0.1:{hung.getsockname()[1]}',"
            f" timeout: {timeout_seconds:g}s, interval: 30s}}\n"
        )
        exporter = start_exporter("--config", str(config))
        hung.settimeout(20)
        connection, _ = hung.accept()  # the probe has connected and now waits for +PONG
        with connection:
            accepted = time.monotonic()
            scrape_seconds = []
            for _ in range(5):
                started = time.monotonic()
                assert exporter.value("soak_process_up", service="demo") == 1
                scrape_seconds.append(time.monotonic() - started)
                # still in flight: no result yet, and not one scrape waited for it
                assert exporter.value("soak_probe_success", service="demo", probe="stuck") is None
            assert time.monotonic() - accepted < timeout_seconds - 1, "scrapes took too long"
            assert max(scrape_seconds) < 1.0, scrape_seconds

            deadline = accepted + timeout_seconds + 10
            while exporter.value("soak_probe_success", service="demo", probe="stuck") is None:
                assert time.monotonic() < deadline, "the hung probe never reported"
                time.sleep(0.2)
        assert exporter.value("soak_probe_success", service="demo", probe="stuck") == 0
        duration = exporter.value("soak_probe_duration_seconds", service="demo", probe="stuck")
        assert duration is not None and timeout_seconds * 0.9 <= duration < timeout_seconds + 2
        code, stderr = exporter.stop()
    assert code == 0
    assert "timed out after 4s" in stderr
