"""The one Prometheus launcher: ``soak run --local-prometheus``, the tests (``tests/servers.py``)
and the benchmarks (``benchmarks/_servers.py``) all start Prometheus here.

A Prometheus runs as a child of this process (``soakwatch.run.localservers``: its own session,
dies with this process, stopped by its PID) on a free port of 127.0.0.1, with a generated
``prometheus.yml``; when another process takes the port before Prometheus binds it, the start
is retried on a fresh port. Without ``home`` it lives in a temporary directory removed at stop
(tests, benchmarks); with ``home`` (a run's ``prometheus/``) its config and data stay there, so
the run's series can be reopened later."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import yaml

from soakwatch.errors import SoakwatchError
from soakwatch.run.config import ScrapeTarget
from soakwatch.run.localservers import (
    HOST,
    START_ATTEMPTS,
    PortTakenError,
    ServerStartError,
    SinglePortServer,
    find_binary,
    free_port,
    launch,
    spawn,
    start_in_temp_dir,
)
from soakwatch.run.secrets import PrivateFile, basic_auth_of

__all__ = [
    "PrometheusServer",
    "prometheus_config",
    "require_prometheus",
    "scrape_jobs",
    "start_local_prometheus",
    "start_prometheus",
]

RUN_RETENTION = "30d"
PrometheusT = TypeVar("PrometheusT", bound="PrometheusServer")
ConfigSource = Mapping[str, Any] | Callable[[int], Mapping[str, Any]]


class PrometheusServer(SinglePortServer):
    """A started Prometheus: ``.url``, ``.port``, ``.config_path``, ``.storage_path``."""

    name = "prometheus"

    def __init__(
        self,
        process: Any,
        data_dir: Path,
        log_path: Path,
        *,
        port: int,
        config_path: Path,
        storage_path: Path,
    ) -> None:
        super().__init__(process, data_dir, log_path, port=port)
        self.config_path = config_path
        self.storage_path = storage_path
        # scrape passwords (``basic_auth.password_file``), closed when Prometheus stops
        self.secrets: list[PrivateFile] = []

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        for secret in self.secrets:
            secret.close()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reload(self, config_text: str | None = None) -> None:
        """Re-read the config and the rule files (optionally writing a new config first);
        needs ``--web.enable-lifecycle``."""
        if config_text is not None:
            self.config_path.write_text(config_text)
        response = requests.post(f"{self.url}/-/reload", timeout=30)
        if response.status_code != 200:
            raise ServerStartError(f"reload failed: {response.status_code} {response.text}")


def prometheus_config(
    scrape_targets: Sequence[str] | None = None,
    rule_files: Sequence[str | os.PathLike[str]] | None = None,
    alertmanager_urls: Sequence[str] | None = None,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    extra_scrape_configs: Sequence[Mapping[str, Any]] | None = None,
    *,
    job_name: str = "soak",
) -> dict[str, Any]:
    """A prometheus.yml: ``scrape_targets`` ("host:port" or a URL with a metrics path) in one
    job per scheme and path, more jobs as given, rule files by absolute path, Alertmanagers
    by URL."""
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [],
    }
    by_path: dict[tuple[str, str], list[str]] = {}
    for target in scrape_targets or []:
        if "://" in target:
            parts = urlsplit(target)
            key = (parts.scheme, parts.path or "/metrics")
            by_path.setdefault(key, []).append(parts.netloc)
        else:
            by_path.setdefault(("http", "/metrics"), []).append(target)
    for index, ((scheme, path), targets) in enumerate(by_path.items()):
        config["scrape_configs"].append(
            {
                "job_name": job_name if index == 0 else f"{job_name}-{index}",
                "scheme": scheme,
                "metrics_path": path,
                "static_configs": [{"targets": targets}],
            }
        )
    config["scrape_configs"].extend(dict(job) for job in extra_scrape_configs or [])
    if rule_files:
        config["rule_files"] = [str(Path(path).resolve()) for path in rule_files]
    if alertmanager_urls:
        alertmanagers = []
        for url in alertmanager_urls:
            parts = urlsplit(url)
            entry: dict[str, Any] = {
                "scheme": parts.scheme or "http",
                "static_configs": [{"targets": [parts.netloc]}],
            }
            if parts.path.strip("/"):
                entry["path_prefix"] = parts.path
            alertmanagers.append(entry)
        config["alerting"] = {"alertmanagers": alertmanagers}
    return config


def scrape_jobs(
    targets: Sequence[ScrapeTarget],
    password_file: Callable[[ScrapeTarget, str], Path] | None = None,
) -> list[dict[str, Any]]:
    """One scrape job per run target, named after it (the recording's ``job`` label). A
    target URL's ``user:password@`` never enters the config: the target is ``host:port`` and
    the credentials are ``basic_auth`` with the password in ``password_file(target, password)``
    (without that function, such a target is scraped without them)."""
    jobs = []
    for target in targets:
        parts = urlsplit(target.url)
        job: dict[str, Any] = {
            "job_name": target.name,
            "scheme": parts.scheme or "http",
            "metrics_path": parts.path or "/metrics",
            "static_configs": [{"targets": [parts.netloc.rpartition("@")[2]]}],
        }
        credentials = basic_auth_of(target.url)
        if credentials is not None and password_file is not None:
            user, password = credentials
            job["basic_auth"] = {
                "username": user,
                "password_file": str(password_file(target, password)),
            }
        jobs.append(job)
    return jobs


def require_prometheus() -> str:
    """The prometheus binary; MissingBinaryError (naming the Debian package) without it."""
    return find_binary("prometheus", "prometheus")


def start_prometheus(
    config: ConfigSource,
    *,
    home: Path | None = None,
    storage_path: Path | None = None,
    log_path: Path | None = None,
    retention: str | None = None,
    log_level: str = "warn",
    extra_args: Sequence[str] = (),
    server_class: type[PrometheusT] = PrometheusServer,  # type: ignore[assignment]  # the default of a TypeVar-typed parameter (mypy #3737)
) -> PrometheusT:
    """Prometheus on a free port with ``config`` (a mapping, or a function of the port for a
    config that names Prometheus itself), ready once ``/-/ready`` answers 200.

    ``home``: keep the config (and, by default, the TSDB in ``home/data``) there after stop;
    without it, all lives in a temporary directory removed at stop. ``storage_path``: a TSDB
    elsewhere (e.g. blocks made by promtool). Raises MissingBinaryError without Prometheus,
    ServerStartError when it does not become ready."""
    binary = require_prometheus()

    def attempt(data_dir: Path) -> PrometheusT:
        port = free_port()
        document = config(port) if callable(config) else config
        config_path = data_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(dict(document), sort_keys=False))
        storage = storage_path or data_dir / ("data" if home is not None else "tsdb")
        argv = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address={HOST}:{port}",
            f"--log.level={log_level}",
        ]
        if retention is not None:
            argv.append(f"--storage.tsdb.retention.time={retention}")
        argv += extra_args
        process, server_log = spawn(argv, data_dir, log_path=log_path)
        server = server_class(
            process,
            data_dir,
            server_log,
            port=port,
            config_path=config_path,
            storage_path=storage,
        )
        server.remove_data_dir = home is None
        return launch(server, _ready(server.url))

    if home is None:
        return start_in_temp_dir("prometheus", attempt)
    home.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(START_ATTEMPTS):
        try:
            return attempt(home)
        except PortTakenError as exc:
            last_error = str(exc)
    raise ServerStartError(
        f"prometheus failed to start {START_ATTEMPTS} times; last error:\n{last_error}"
    )


def _ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200

    return ready


def start_local_prometheus(
    run_dir: Path, targets: Sequence[ScrapeTarget], interval_seconds: float
) -> PrometheusServer:
    """``soak run --local-prometheus``: a Prometheus scraping each of the run's targets as its
    own job at the run's interval, its config and data in ``run_dir/prometheus``, its output in
    ``run_dir/logs/prometheus.log``."""
    interval = f"{max(1, round(interval_seconds))}s"
    secrets: list[PrivateFile] = []

    def password_file(target: ScrapeTarget, password: str) -> Path:
        # Read by Prometheus on every scrape: in memory for the run's life (see secrets.py)
        secret = PrivateFile(run_dir, f"scrape-{target.name}.password", password)
        secrets.append(secret)
        return secret.path

    config = prometheus_config(
        scrape_interval=interval,
        evaluation_interval=interval,
        extra_scrape_configs=scrape_jobs(targets, password_file),
    )
    try:
        server: PrometheusServer = start_prometheus(
            config,
            home=run_dir / "prometheus",
            log_path=run_dir / "logs" / "prometheus.log",
            retention=RUN_RETENTION,
            log_level="info",  # the run's log keeps what Prometheus did, as it always has
        )
    except SoakwatchError as exc:
        for secret in secrets:
            secret.close()
        raise SoakwatchError(f"--local-prometheus: {exc}") from None
    server.secrets = secrets
    return server
