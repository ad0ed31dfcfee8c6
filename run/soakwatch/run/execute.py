"""The run itself: check availability, start the exporter and the load driver as children,
record what they serve into the run directory every sampling interval, stop them in order,
then analyze (``soakwatch.run.analysis``) and annotate Grafana (``soakwatch.run.grafana``).

Ctrl-C or SIGTERM (the ``stop_event`` of the request) ends the recording early; what was
measured is still analyzed. A run killed outright keeps its samples for ``soak-analyze
--run-dir``."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
import yaml

from soakwatch.addresses import Address, parse_address
from soakwatch.configfile import redact_url
from soakwatch.durations import format_duration
from soakwatch.errors import SoakwatchError, UsageError
from soakwatch.files import write_json_atomic
from soakwatch.run.analysis import analyze_run, early_verdict, require_analyzer
from soakwatch.run.availability import check_availability
from soakwatch.run.children import ChildProcess, child_env, free_port, soak_command, wait_until
from soakwatch.run.config import ScrapeTarget
from soakwatch.run.grafana import mark_run_in_grafana
from soakwatch.run.localservers import Server
from soakwatch.run.recorder import Recorder, progress_line
from soakwatch.run.request import RunRequest, RunResult

__all__ = ["RUN_FILE", "execute", "new_run_id"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
START_TIMEOUT_SECONDS = 30.0
# --fail-fast re-analyzes every this many sampling intervals (never more often than every 5 s)
FAIL_FAST_EVERY_INTERVALS = 5
FAIL_FAST_MIN_SECONDS = 5.0


def new_run_id(profile: str, now: float | None = None) -> str:
    """The UTC start time and the profile: ``20261125T210056Z-demo``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{profile}"


def _redacted(value: Any) -> Any:
    """``value`` with every URL password hidden (for the resolved config in the run dir)."""
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def _write_private_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Configs handed to children may hold passwords: readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(dict(data), out, sort_keys=False)


def _wait_http(url: str, child: ChildProcess, timeout: float) -> None:
    def ready() -> bool:
        return requests.get(url, timeout=2).status_code == 200

    try:
        wait_until(ready, timeout=timeout, what=child.name, alive=child.running)
    except RuntimeError as exc:
        raise SoakwatchError(f"{exc}\n{child.log_tail()}") from None


def _metrics_url(listen: str) -> str:
    """The URL the run scrapes a child at that listens on ``listen`` (a wildcard address is
    reached on the loopback interface)."""
    address = parse_address(listen, any_host="127.0.0.1")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    return f"http://{Address(host, address.port)}/metrics"


class _Run:
    """One run in progress: its directory, children and record file."""

    def __init__(self, request: RunRequest, run_dir: Path, run_id: str) -> None:
        self.request = request
        self.run_dir = run_dir
        self.run_id = run_id
        self.children: list[ChildProcess] = []
        self.secrets_dir = Path(tempfile.mkdtemp(prefix="soak-run-"))
        self.info: dict[str, Any] = {}

    def say(self, text: str, final: bool = True) -> None:
        if self.request.progress is not None:
            self.request.progress(text, final)

    def write_info(self, **changes: Any) -> None:
        self.info.update(changes)
        write_json_atomic(self.run_dir / RUN_FILE, self.info, sort_keys=True)

    def start_exporter(self) -> ScrapeTarget | None:
        section = self.request.config.exporter
        if not section:
            return None
        path = self.secrets_dir / "exporter.yaml"
        listen = str(section.get("listen") or "127.0.0.1:0")
        _write_private_yaml(path, {**section, "listen": listen})
        child = ChildProcess(
            "soak-exporter",
            soak_command("exporter", "--config", str(path)),
            self.run_dir / "logs" / "exporter.log",
            env=child_env(),
        )
        self.children.append(child)
        line = child.wait_for_line("serving http", START_TIMEOUT_SECONDS)
        url = line.split("serving ", 1)[1].split()[0]
        if not url.endswith("/metrics"):
            url = url.rstrip("/") + "/metrics"
        return ScrapeTarget("exporter", url)

    def start_load(self, skipped: Mapping[str, str], duration: float) -> ScrapeTarget | None:
        config = self.request.config
        if not config.load:
            return None
        data = config.load_without(set(skipped))
        if not data["scenarios"]:
            self.say("load: every scenario was left out; recording without load")
            return None
        listen = data.get("metrics_listen") or f"127.0.0.1:{free_port()}"
        data.update(
            duration=f"{duration:g}s",
            summary=str(self.run_dir / "load-summary.json"),
            metrics_listen=listen,
            run_id=self.run_id,  # its soak_run_info is the run's, for recording and Prometheus
        )
        data.setdefault("ramp_up", "0s")
        data.setdefault("ramp_down", "0s")
        path = self.secrets_dir / "load.yaml"
        _write_private_yaml(path, data)
        child = ChildProcess(
            "soak-load",
            soak_command("load", "--config", str(path), "--profile", self.request.profile.name),
            self.run_dir / "logs" / "load.log",
            env=child_env(),
            # SIGINT: the load driver's graceful stop, which writes its summary.
            stop_signal=signal.SIGINT,
        )
        self.children.append(child)
        url = _metrics_url(listen)
        _wait_http(url, child, START_TIMEOUT_SECONDS)
        return ScrapeTarget("load", url)

    def stop_children(self) -> None:
        # The load first: its final summary should still see the service it measured.
        for child in reversed(self.children):
            child.stop()

    def cleanup(self) -> None:
        shutil.rmtree(self.secrets_dir, ignore_errors=True)

    def mark_in_grafana(self, start: float, end: float | None, text: str) -> None:
        url = self.request.grafana_url
        if url is None:
            return
        annotation = mark_run_in_grafana(url, self.run_id, start, end, text)
        if annotation is not None:
            which = "end" if end is not None else "start"
            self.say(f"grafana: run {which} annotated ({annotation})", True)

    def record_until_done(
        self, recorder: Recorder, stop: threading.Event, started: float, interval: float
    ) -> bool:
        """Scrape every ``interval`` until the duration is over, the load driver is done, or
        the stop event is set. Returns True when --fail-fast ended the run."""
        duration = self.request.profile.duration_seconds
        load_child = next((c for c in self.children if c.name == "soak-load"), None)
        next_scrape = time.monotonic()
        early_every = max(FAIL_FAST_MIN_SECONDS, FAIL_FAST_EVERY_INTERVALS * interval)
        next_early_check = time.monotonic() + early_every
        end_at = time.monotonic() + duration
        while not stop.is_set():
            now = time.monotonic()
            recorder.scrape(time.time())
            self.say(progress_line(time.time() - started, duration, recorder), False)
            if now >= end_at:
                break
            if load_child is not None and not load_child.running():
                code = load_child.process.returncode
                self.say(f"the load driver exited ({code}); ending the run", True)
                break
            for child in self.children:
                if child is not load_child and not child.running():
                    raise SoakwatchError(f"{child.name} exited unexpectedly:\n{child.log_tail()}")
            if self.request.fail_fast and now >= next_early_check:
                next_early_check = now + early_every
                if early_verdict(self.run_dir, self.request.config.rules_path) == "fail":
                    self.say("fail-fast: the evidence is already decisive (fail); stopping", True)
                    return True
            next_scrape += interval
            stop.wait(max(0.0, min(next_scrape, end_at) - time.monotonic()))
        return False


def _prepare_run_dir(request: RunRequest, run_id: str) -> Path:
    base = request.config.out_dir or Path("soak-runs")
    run_dir = request.out_dir or base / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if any(p.name == "samples.om" for p in run_dir.iterdir()):
        raise UsageError(f"{run_dir} already holds a run; choose another --out")
    return run_dir


def execute(request: RunRequest) -> RunResult:
    """Run one soak as described by ``request`` and return its result. Raises SoakwatchError
    (MissingExtraError, AvailabilityError, ConfigError, ...) before anything starts when the
    run cannot begin."""
    require_analyzer()
    if request.local_prometheus:
        from soakwatch.run.prometheus import require_prometheus

        require_prometheus()
    profile = request.profile
    run_id = new_run_id(profile.name)
    run_dir = _prepare_run_dir(request, run_id)
    say = request.progress or (lambda text, final: None)

    availability, skipped = check_availability(request.config, request.only_scenarios)
    write_json_atomic(
        run_dir / "availability.json", [a.to_json() for a in availability], sort_keys=True
    )
    for result in availability:
        say(
            f"check {result.service.name}: "
            + ("up" if result.up else f"DOWN ({result.reason})")
            + ("" if result.service.required else " [optional]"),
            True,
        )
    for scenario, reason in skipped.items():
        say(f"scenario {scenario} skipped: {reason}", True)

    interval = request.config.sampling_interval_seconds or profile.sampling_interval_seconds
    duration = profile.duration_seconds
    write_json_atomic(
        run_dir / "config.json",
        {
            "run_id": run_id,
            "source": request.config.source,
            "profile": dataclasses.asdict(profile),
            "duration_seconds": duration,
            "sampling_interval_seconds": interval,
            "checks": [a.to_json() for a in availability],
            "exporter": _redacted(request.config.exporter),
            "load": _redacted(request.config.load_without(set(skipped))),
            "skipped_scenarios": skipped,
            "scrape": [dataclasses.asdict(t) for t in request.config.scrape],
            "rules": str(request.config.rules_path) if request.config.rules_path else None,
            "prometheus": redact_url(request.prometheus_url) if request.prometheus_url else None,
        },
        sort_keys=True,
    )
    run = _Run(request, run_dir, run_id)
    stop = request.stop_event or threading.Event()
    started = time.time()
    run.write_info(
        run_id=run_id,
        profile=profile.name,
        started=started,
        ended=None,
        planned_duration_seconds=duration,
        sampling_interval_seconds=interval,
        state="starting",
        skipped_scenarios=skipped,
        labels=dict(request.labels),
    )
    recorder = Recorder(run_dir, run_id, profile.name, timeout=max(1.0, min(interval, 10.0)))
    prometheus: Server | None = None
    prometheus_url = request.prometheus_url
    stopped_early = False
    try:
        with ExitStack() as stack:
            stack.callback(run.cleanup)
            stack.callback(run.stop_children)
            exporter = run.start_exporter()
            if exporter:
                recorder.targets.append(exporter)
            load = run.start_load(skipped, duration)
            if load:
                recorder.targets.append(load)
                recorder.run_info_target = load.name
            recorder.targets.extend(request.config.scrape)
            if request.local_prometheus:
                from soakwatch.run.prometheus import start_local_prometheus

                local = start_local_prometheus(run_dir, recorder.targets, interval)
                prometheus, prometheus_url = local, local.url
            pids = {c.name: c.pid for c in run.children}
            if prometheus is not None:
                pids["prometheus"] = prometheus.pid
            run.write_info(
                state="running",
                targets=[dataclasses.asdict(t) for t in recorder.targets],
                pids=pids,
                prometheus=prometheus_url and redact_url(prometheus_url),
            )
            say(f"run {run_id}: recording into {run_dir} every {format_duration(interval)}", True)
            run.mark_in_grafana(
                started, None, f"soak run {run_id} started ({profile.name} profile)"
            )
            stopped_early = run.record_until_done(recorder, stop, started, interval)
    except BaseException:
        if prometheus is not None:
            prometheus.stop()
        raise
    finally:
        recorder.close()
    ended = time.time()
    interrupted = stop.is_set()
    run.write_info(
        state="interrupted" if interrupted else "finished",
        ended=ended,
        measured_seconds=ended - started,
        scrapes=recorder.scrapes,
        stopped_early=stopped_early,
    )
    say(
        f"run {run_id} {'interrupted' if interrupted else 'finished'} after "
        f"{format_duration(ended - started)}; analyzing",
        True,
    )
    try:
        analysis = analyze_run(
            run_dir,
            request.config.rules_path,
            prometheus_url,
            started,
            ended,
            interval,
            skipped=skipped,
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
    run.write_info(status=analysis.status, reports={k: str(v) for k, v in analysis.reports.items()})
    run.mark_in_grafana(started, ended, f"soak run {run_id}: {analysis.status}")
    return RunResult(
        run_id=run_id,
        run_dir=run_dir,
        status=analysis.status,
        verdict=analysis.verdict,
        interrupted=interrupted,
        stopped_early=stopped_early,
        skipped_scenarios=skipped,
        availability=availability,
        reports=analysis.reports,
        report=analysis.report,
    )
