"""``soak run`` under faults (issue 13): secrets given in every place never reach a file, a
full run directory, the exporter or the load driver killed -9. Each case is a real ``soak run``
subprocess against real children and servers (Redis with requirepass, PostgreSQL with a SCRAM
password, Prometheus); the only stand-in is a /metrics endpoint that demands basic auth, which
no real server here does by default (it also counts the authorized scrapes of Prometheus)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

import servers
from soakwatch.run.localservers import MissingBinaryError, RedisServer, start_redis

pytestmark = pytest.mark.slow

SOAK = [sys.executable, "-m", "soakwatch.commands", "run"]
RULES = Path(__file__).parent / "data" / "short-rules.yaml"


def soak_config(tmp_path: Path, service: Any, *, duration: str, interval: str = "1s") -> Path:
    """The sample service watched by the exporter, under HTTP load, judged by RULES."""
    config = {
        "profile": "ci",
        "duration": duration,
        "sampling_interval": interval,
        "rules": str(RULES),
        "exporter": {
            "scan_interval": "1s",
            "services": [{"name": "backend", "match": {"pid": service.pid}}],
        },
        "load": {
            "status_interval": "1h",
            "scenarios": [
                {"name": "api", "kind": "http", "rate": "10/s",
                 "endpoints": [{"url": f"{service.url}/api/hello"}]},
            ],
        },
    }  # fmt: skip
    path = tmp_path / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_run(config: Path, run_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SOAK, "--config", str(config), "--out", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_samples(
    run_dir: Path, scrapes: int, run: subprocess.Popen[bytes], timeout: float = 90.0
) -> dict[str, Any]:
    """run.json once the run is running and ``scrapes`` scrapes are recorded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:
            output = run.stdout.read().decode(errors="replace") if run.stdout else ""
            raise AssertionError(f"the run ended ({run.returncode}) before {scrapes}:\n{output}")
        try:
            info = json.loads((run_dir / "run.json").read_text())
            text = (run_dir / "samples.om").read_text()
        except (OSError, ValueError):
            info, text = {}, ""
        if info.get("state") == "running" and text.count("soak_run_info") >= scrapes:
            return dict(info)
        time.sleep(0.2)
    raise AssertionError(f"no {scrapes} scrapes in {run_dir} after {timeout}s")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- secrets -----------------------------------------------------------------------------------
class AuthMetrics:
    """A /metrics endpoint that answers only with the right basic-auth credentials."""

    def __init__(self, user: str, password: str) -> None:
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.authorized: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                owner.authorized.append(self.headers.get("User-Agent", ""))
                body = b"# TYPE app_up gauge\napp_up 1\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def redis_with_password() -> Iterator[RedisServer]:
    try:
        server = start_redis(password=f"redispw{secrets.token_hex(8)}")
    except MissingBinaryError:
        servers.require_binary("redis-server", "redis-server")
        raise
    with server:
        yield server


@pytest.fixture
def secret_config(
    tmp_path: Path, sample_service_factory: Any, redis_with_password: RedisServer
) -> Iterator[tuple[Path, dict[str, str], AuthMetrics]]:
    """A soak config with a password, a token or a key in every place one can go."""
    pg_password = f"pgpw{secrets.token_hex(8)}"
    postgres = _start_postgres(pg_password)
    service = sample_service_factory()
    found = {
        "redis": redis_with_password.password or "",
        "postgres": pg_password,
        "scrape": f"scrapepw{secrets.token_hex(8)}",
        "probe_header": f"probetoken{secrets.token_hex(8)}",
        "load_header": f"loadtoken{secrets.token_hex(8)}",
        "api_key": f"apikey{secrets.token_hex(8)}",
    }
    metrics = AuthMetrics("scraper", found["scrape"])
    redis_url = redis_with_password.url
    pg_dsn = postgres.dsn
    config = {
        "profile": "ci",
        "sampling_interval": "1s",
        "checks": [
            {"name": "cache", "kind": "redis", "target": redis_url},
            {"name": "db", "kind": "postgres", "target": pg_dsn},
        ],
        "exporter": {
            "scan_interval": "1s",
            "services": [{
                "name": "backend", "match": {"pid": service.pid},
                "probes": [
                    {"name": "cache", "kind": "redis", "interval": "1s", "timeout": "1s",
                     "target": f"redis://127.0.0.1:{redis_with_password.port}/0",
                     "password": found["redis"]},
                    {"name": "db", "kind": "postgres", "interval": "1s", "timeout": "1s",
                     "target": f"postgresql://soak@127.0.0.1:{postgres.port}/soak",
                     "password": pg_password},
                    {"name": "health", "kind": "http", "interval": "1s", "timeout": "1s",
                     "target": f"{service.url}/health",
                     "headers": {"Authorization": f"Bearer {found['probe_header']}"}},
                ],
            }],
        },
        "load": {
            "status_interval": "1h",
            "scenarios": [
                {"name": "api", "kind": "http", "rate": "5/s",
                 "endpoints": [{"url": f"{service.url}/api/hello",
                                "headers": {"Authorization": f"Bearer {found['load_header']}",
                                            "X-Api-Key": found["api_key"]}}]},
                {"name": "cache_ops", "kind": "redis", "rate": "2/s", "url": redis_url,
                 "statements": ["PING"]},
                {"name": "db_ops", "kind": "postgres", "rate": "2/s", "url": pg_dsn,
                 "statements": ["SELECT 1"]},
            ],
        },
        "scrape": [
            {"name": "app",
             "url": f"http://scraper:{found['scrape']}@127.0.0.1:{metrics.port}/metrics"},
        ],
    }  # fmt: skip
    path = tmp_path / "config" / "soak.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    try:
        yield path, found, metrics
    finally:
        metrics.close()
        postgres.stop()


def _start_postgres(password: str) -> Any:
    from soakwatch.run.localservers import start_postgres

    try:
        return start_postgres(password=password)
    except MissingBinaryError as missing:
        servers.require_binary(missing.path, missing.package)
        raise


def temp_entries() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def files_under(path: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            yield Path(root) / name


def leaks(paths: list[Path], found: dict[str, str]) -> list[str]:
    """Every (file, secret name) where a secret is in the file's bytes."""
    hits = []
    for top in paths:
        for path in [top, *files_under(top)] if top.is_dir() else [top]:
            if not path.is_file() or path.is_symlink():
                continue
            try:
                data = path.read_bytes()
            except OSError:  # gone meanwhile (a Prometheus temp file)
                continue
            hits += [f"{path}: {name}" for name, value in found.items() if value.encode() in data]
    return hits


def new_temp_paths(before: set[str]) -> list[Path]:
    return [Path(tempfile.gettempdir()) / name for name in temp_entries() - before]


@pytest.mark.requires_binary("prometheus", "prometheus")
def test_a_run_given_passwords_everywhere_writes_none_of_them_and_keeps_its_files_private(
    tmp_path: Path, secret_config: tuple[Path, dict[str, str], AuthMetrics]
) -> None:
    config, found, metrics = secret_config
    run_dir = tmp_path / "run"
    before = temp_entries()
    done = subprocess.run(
        [*SOAK, "--config", str(config), "--out", str(run_dir), "--duration", "8s",
         "--local-prometheus"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1, 3), output
    assert "Traceback" not in output
    info = json.loads((run_dir / "run.json").read_text())
    assert info["state"] == "finished"
    # the recording scraped the protected endpoint with its credentials, and so did Prometheus
    samples = (run_dir / "samples.om").read_text()
    assert f'app_up{{instance="127.0.0.1:{metrics.port}",job="app"}} 1 ' in samples
    assert any(agent.startswith("Prometheus/") for agent in metrics.authorized)
    prometheus_yml = yaml.safe_load((run_dir / "prometheus" / "prometheus.yml").read_text())
    [app_job] = [j for j in prometheus_yml["scrape_configs"] if j["job_name"] == "app"]
    assert app_job["static_configs"] == [{"targets": [f"127.0.0.1:{metrics.port}"]}]
    assert app_job["basic_auth"]["username"] == "scraper"
    assert app_job["basic_auth"]["password_file"].startswith("/proc/")
    # the WAL holds samples of every job, and no secret (checked with every other file below)
    wal = list((run_dir / "prometheus" / "data" / "wal").iterdir())
    assert wal and sum(p.stat().st_size for p in wal) > 0
    # the probes really ran with their credentials: up, not just configured
    assert 'soak_probe_success{instance="127.0.0.1:' in samples
    for probe in ("cache", "db", "health"):
        assert f'probe="{probe}"' in samples
    assert leaks([run_dir, *new_temp_paths(before)], found) == []
    assert not any(found[name] in output for name in found)
    # private: the run dir and everything in it are this user's only
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for path in files_under(run_dir):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        expected = 0o700 if path.is_dir() else 0o600
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}, expected {oct(expected)}"
    assert not (run_dir / ".private").exists()


def test_a_run_killed_9_mid_way_leaves_no_config_with_a_password_anywhere(
    tmp_path: Path, secret_config: tuple[Path, dict[str, str], AuthMetrics]
) -> None:
    config, found, _ = secret_config
    run_dir = tmp_path / "run"
    before = temp_entries()
    run = subprocess.Popen(
        [*SOAK, "--config", str(config), "--out", str(run_dir), "--duration", "10m"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        info = wait_for_samples(run_dir, 3, run)
    finally:
        run.kill()
        run.communicate()
    children = [psutil.Process(pid) for pid in info["pids"].values() if psutil.pid_exists(pid)]
    _, still = psutil.wait_procs(children, timeout=20)
    assert not still
    assert leaks([run_dir, *new_temp_paths(before)], found) == []
    assert not list(run_dir.glob("**/*.yaml"))


# -- the children killed -----------------------------------------------------------------------
def final_info(run: subprocess.Popen[bytes], run_dir: Path) -> tuple[dict[str, Any], str]:
    output, _ = run.communicate(timeout=180)
    return json.loads((run_dir / "run.json").read_text()), output.decode(errors="replace")


def test_a_killed_exporter_is_restarted_then_after_three_restarts_the_run_ends_analyzed(
    tmp_path: Path, sample_service_factory: Any
) -> None:
    service = sample_service_factory()
    config = soak_config(tmp_path, service, duration="10m")
    run_dir = tmp_path / "run"
    run = start_run(config, run_dir)
    try:
        info = wait_for_samples(run_dir, 3, run)
        killed = []
        for restart in range(4):
            pid = info["pids"]["soak-exporter"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            if restart == 3:
                break
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                info = json.loads((run_dir / "run.json").read_text())
                if len(info.get("restarts", [])) == restart + 1:
                    break
                time.sleep(0.2)
            assert len(info["restarts"]) == restart + 1, f"no restart {restart + 1}"
            assert info["pids"]["soak-exporter"] not in killed
            # the restarted exporter is recorded again
            scrapes = (run_dir / "samples.om").read_text().count('job="exporter"')
            time.sleep(2.5)
            assert (run_dir / "samples.om").read_text().count('job="exporter"') > scrapes
        info, output = final_info(run, run_dir)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert "Traceback" not in output
    assert info["state"] == "exporter_lost", output
    assert [r["signal"] for r in info["restarts"]] == ["SIGKILL"] * 3
    assert "the exporter died 4 times (last: was killed by SIGKILL)" in info["reason"]
    assert info["status"] in ("fail", "inconclusive") and run.returncode in (1, 3)
    verdict = json.loads((run_dir / "verdict.json").read_text())
    assert verdict["run"]["restarts"] == info["restarts"]
    [finding] = [r for r in verdict["results"] if r["rule"] == "run_completed"]
    assert finding["status"] == "inconclusive" and finding["subject"] == {"child": "soak-exporter"}
    for pid in info["pids"].values():
        assert not alive(pid)


def test_a_load_driver_killed_9_is_load_failed_with_its_signal_and_never_a_pass(
    tmp_path: Path, sample_service_factory: Any
) -> None:
    service = sample_service_factory()
    config = soak_config(tmp_path, service, duration="10m")
    run_dir = tmp_path / "run"
    run = start_run(config, run_dir)
    try:
        info = wait_for_samples(run_dir, 6, run)
        os.kill(info["pids"]["soak-load"], signal.SIGKILL)
        info, output = final_info(run, run_dir)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert "Traceback" not in output
    assert info["state"] == "load_failed", output
    assert (info["load"]["exit"], info["load"]["signal"]) == (-9, "SIGKILL")
    assert "the load driver was killed by SIGKILL after" in info["reason"]
    assert info["status"] != "pass" and run.returncode != 0
    verdict = json.loads((run_dir / "verdict.json").read_text())
    [finding] = [r for r in verdict["results"] if r["rule"] == "run_completed"]
    assert finding["status"] == "inconclusive" and finding["subject"] == {"child": "soak-load"}
    assert verdict["run"]["load"]["signal"] == "SIGKILL"
    assert "soak run: the load driver was killed by SIGKILL" in output


# -- a full run directory ----------------------------------------------------------------------
@pytest.fixture
def tiny_tmpfs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    size = request.param
    mount = tmp_path / f"tmpfs-{size}"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("tiny_tmpfs", ["64k", "400k"], indirect=True)
def test_a_full_run_dir_ends_the_run_cleanly_with_a_verdict_or_exit_2_and_says_why(
    tmp_path: Path, sample_service_factory: Any, tiny_tmpfs: Path
) -> None:
    service = sample_service_factory()
    config = soak_config(tmp_path, service, duration="2m", interval="0.2s")
    run_dir = tiny_tmpfs / "run"
    started = time.monotonic()
    done = subprocess.run(
        [*SOAK, "--config", str(config), "--out", str(run_dir)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert time.monotonic() - started < 100, "the run went on on a full disk"
    assert "Traceback" not in output
    assert "the run directory is full (ENOSPC" in output, output
    assert done.returncode in (2, 1, 3), output  # a verdict, or 2; never a crash
    try:
        info = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        info = None
    if info is None:  # full before run.json was written: nothing started, exit 2
        assert done.returncode == 2, output
    elif info["state"] in ("starting", "running"):  # run.json could not be updated: stderr
        assert "cannot write" in output and "disk_full" in output, output
    else:
        assert info["state"] == "disk_full"
        assert info["reason"].startswith("the run directory is full (ENOSPC")
    if done.returncode != 2:
        assert "verdict: " in done.stdout
        assert "run_completed" in done.stdout
    for child in psutil.Process().children(recursive=True):
        assert "soakwatch.commands" not in " ".join(child.cmdline()), "a child outlived the run"
