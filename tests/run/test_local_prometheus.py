"""``soak run --local-prometheus`` starts Prometheus with the one launcher the tests and the
benchmarks use: a free port, its config and data kept in the run directory, stopped by PID."""

from __future__ import annotations

from pathlib import Path

import psutil
import requests
import yaml

import servers
from soakwatch.run.config import ScrapeTarget
from soakwatch.run.prometheus import start_local_prometheus


def test_the_runs_prometheus_scrapes_each_target_as_a_job_and_keeps_its_data_after_stop(
    tmp_path: Path,
) -> None:
    servers.require_binary("prometheus", "prometheus")
    targets = [
        ScrapeTarget("exporter", "http://127.0.0.1:9/metrics"),
        ScrapeTarget("load", "http://127.0.0.1:10/load/metrics"),
    ]
    prometheus = start_local_prometheus(tmp_path, targets, 2.0)
    try:
        assert requests.get(f"{prometheus.url}/-/ready", timeout=5).status_code == 200
        config = yaml.safe_load((tmp_path / "prometheus" / "prometheus.yml").read_text())
        assert config["global"]["scrape_interval"] == "2s"
        assert [
            (job["job_name"], job["metrics_path"], job["static_configs"][0]["targets"])
            for job in config["scrape_configs"]
        ] == [
            ("exporter", "/metrics", ["127.0.0.1:9"]),
            ("load", "/load/metrics", ["127.0.0.1:10"]),
        ]
        pid = prometheus.pid
    finally:
        prometheus.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert (tmp_path / "prometheus" / "data").is_dir()
    assert "Server is ready" in (tmp_path / "logs" / "prometheus.log").read_text()
