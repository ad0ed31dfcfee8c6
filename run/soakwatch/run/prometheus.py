"""``soak run --local-prometheus``: a private Prometheus for one run, scraping what the run
records, with its data in the run directory (``prometheus/``) so it can be reopened later."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml

from soakwatch.errors import SoakwatchError
from soakwatch.run.children import ChildProcess, free_port, wait_until
from soakwatch.run.config import ScrapeTarget

__all__ = ["prometheus_config", "start_local_prometheus"]


def prometheus_config(
    targets: Sequence[ScrapeTarget], interval_seconds: float
) -> dict[str, object]:
    """A Prometheus config scraping each target as its own job, at the run's interval."""
    interval = f"{max(1, round(interval_seconds))}s"
    jobs = []
    for target in targets:
        parts = urlsplit(target.url)
        jobs.append(
            {
                "job_name": target.name,
                "scheme": parts.scheme or "http",
                "metrics_path": parts.path or "/metrics",
                "static_configs": [{"targets": [parts.netloc]}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }


def start_local_prometheus(
    run_dir: Path, targets: Sequence[ScrapeTarget], interval_seconds: float
) -> tuple[ChildProcess, str]:
    """Start ``prometheus`` on a free port; returns the child and its URL once ready."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise SoakwatchError(
            "--local-prometheus: no prometheus binary on PATH (Debian: apt install prometheus)"
        )
    home = run_dir / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(prometheus_config(targets, interval_seconds)))
    port = free_port()
    child = ChildProcess(
        "prometheus",
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        run_dir / "logs" / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200

    try:
        wait_until(ready, timeout=60.0, what="prometheus", alive=child.running)
    except RuntimeError as exc:
        child.stop()
        raise SoakwatchError(f"--local-prometheus: {exc}\n{child.log_tail()}") from None
    return child, url
