"""``soak run``: a whole soak, from availability checks to a verdict and a report.

    soak run --profile ci --config soak.yaml [--duration 30m] [--prometheus URL]
             [--local-prometheus] [--fail-fast] [--out DIR] [--grafana-url URL]
    soak run --demo

Order of events: check every configured service (a required one down: exit 2 listing each; an
optional one down: the load scenarios that need it are left out and the run says so), start the
exporter and the load driver as child processes, record what they serve on /metrics into the
run directory every sampling interval (the embedded default of DESIGN.md), show live progress,
then analyze and write the verdict (JSON, JUnit XML, HTML). Ctrl-C or SIGTERM ends the run
early and keeps everything measured so far; a run killed outright can still be analyzed with
``soak-analyze --run-dir DIR``.

Exit codes (as soak-analyze): 0 pass, 1 fail, 3 inconclusive, 2 usage, config or availability
error; 130 when interrupted before anything was measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from soakwatch import console
from soakwatch.configfile import check_url, redact_url
from soakwatch.durations import format_duration, parse_duration
from soakwatch.errors import SoakwatchError, UsageError
from soakwatch.profiles import PROFILES, Profile, resolve_profile
from soakwatch.run.availability import Availability, check_all, describe_down
from soakwatch.run.children import ChildProcess, free_port
from soakwatch.run.config import RunConfig, ScrapeTarget, load_run_config

__all__ = [
    "AvailabilityError",
    "RunRequest",
    "RunResult",
    "analyze_run",
    "check_availability",
    "execute",
    "main",
]

log = logging.getLogger(__name__)

PROG = "soak run"
GRAFANA_TOKEN_VARIABLE = "SOAK_GRAFANA_TOKEN"  # as `soak dashboards push`
EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3, "error": 2}
RUN_FILE = "run.json"
START_TIMEOUT_SECONDS = 30.0
PROGRESS_WINDOW_POINTS = 240
# --fail-fast re-analyzes every this many sampling intervals (never more often than every 5 s)
FAIL_FAST_EVERY_INTERVALS = 5


class AvailabilityError(SoakwatchError):
    """A required service is down before the run starts."""


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs, resolved: the config, the profile (with its duration), where
    to write, and how to analyze."""

    config: RunConfig
    profile: Profile
    out_dir: Path | None = None
    prometheus_url: str | None = None
    local_prometheus: bool = False
    fail_fast: bool = False
    only_scenarios: tuple[str, ...] | None = None
    progress: Callable[[str, bool], None] | None = None
    stop_event: threading.Event | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    grafana_url: str | None = None


@dataclass
class RunResult:
    """What a run produced. ``verdict`` is the analyzer's JSON result (None when there was
    nothing to analyze); ``status`` is its verdict or "error"."""

    run_id: str
    run_dir: Path
    status: str
    verdict: dict[str, Any] | None
    interrupted: bool
    stopped_early: bool
    skipped_scenarios: dict[str, str]
    availability: list[Availability]
    reports: dict[str, Path]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 2)

    def verdict_of(self, rule: str, subject: str | None = None) -> str | None:
        """The status of one rule (optionally for one subject, e.g. a service) or None."""
        statuses = [r.get("status") for r in _results(self.verdict, rule, subject)]
        for status in ("fail", "inconclusive", "pass", "not_applicable"):
            if status in statuses:
                return status
        return None


def _results(
    verdict: Mapping[str, Any] | None, rule: str, subject: str | None
) -> Iterator[dict[str, Any]]:
    for result in (verdict or {}).get("results", []) or []:
        if result.get("rule") != rule:
            continue
        labels = result.get("subject") or result.get("labels") or {}
        if subject is None or subject in (
            labels.values() if isinstance(labels, dict) else [labels]
        ):
            yield result


# -- the recorder: scrape, write, and keep a short window for the progress line -----------------
class Recorder:
    """Scrapes /metrics endpoints and appends their text to the run's samples file."""

    def __init__(self, run_dir: Path, run_id: str, profile: str, timeout: float) -> None:
        from soakwatch.recording import SampleWriter

        self.writer = SampleWriter(run_dir)
        self.run_id = run_id
        self.profile = profile
        self.timeout = timeout
        self.targets: list[ScrapeTarget] = []
        # The target that publishes soak_run_info itself (the load driver, given the run id):
        # then its series is the one recorded, and the recorder writes none of its own.
        self.run_info_target: str | None = None
        self.session = requests.Session()
        self.rss: dict[str, deque[tuple[float, float]]] = {}
        self.load_totals: deque[tuple[float, float, float]] = deque(maxlen=PROGRESS_WINDOW_POINTS)
        self.scrapes = 0

    def scrape(self, timestamp: float) -> None:
        if self.run_info_target is None:
            self.writer.write_sample(
                "soak_run_info", {"run_id": self.run_id, "profile": self.profile}, 1.0, timestamp
            )
        for target in self.targets:
            instance = target.url.split("://", 1)[-1].split("/", 1)[0]
            labels = {"job": target.name, "instance": instance}
            try:
                response = self.session.get(target.url, timeout=self.timeout)
                response.raise_for_status()
                self.writer.write_scrape(response.text, timestamp, labels)
            except (requests.RequestException, ValueError) as exc:
                log.info("scrape of %s failed: %s", target.name, exc)
                self.writer.write_sample("up", labels, 0.0, timestamp)
                continue
            self.writer.write_sample("up", labels, 1.0, timestamp)
            self._remember(response.text, timestamp)
        self.scrapes += 1

    def _remember(self, text: str, timestamp: float) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        total = errors = 0.0
        seen_load = False
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "soak_process_resident_memory_bytes":
                    service = sample.labels.get("service", "?")
                    window = self.rss.setdefault(service, deque(maxlen=PROGRESS_WINDOW_POINTS))
                    window.append((timestamp, sample.value))
                elif sample.name == "soak_load_requests_total":
                    seen_load = True
                    total += sample.value
                    if sample.labels.get("outcome") != "ok":
                        errors += sample.value
        if seen_load:
            self.load_totals.append((timestamp, total, errors))

    def close(self) -> None:
        self.writer.close()
        self.session.close()

    # figures for the progress line
    def load_rate(self) -> tuple[float, float] | None:
        """Requests per second and error share over the last few scrapes."""
        if len(self.load_totals) < 2:
            return None
        first = self.load_totals[max(0, len(self.load_totals) - 6)]
        last = self.load_totals[-1]
        seconds = last[0] - first[0]
        count = last[1] - first[1]
        if seconds <= 0:
            return None
        return count / seconds, ((last[2] - first[2]) / count if count > 0 else 0.0)

    def memory_slopes(self) -> dict[str, float]:
        """Least-squares slope of RSS per service in MB/h over the recent window (progress only;
        the verdict comes from the analyzer's robust estimator)."""
        slopes = {}
        for service, points in self.rss.items():
            if len(points) >= 3:
                slopes[service] = _ols_slope(list(points)) * 3600.0 / 1e6
        return slopes


def _ols_slope(points: Sequence[tuple[float, float]]) -> float:
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    denominator = sum((t - mean_t) ** 2 for t, _ in points)
    if denominator == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / denominator


def progress_line(elapsed: float, total: float, recorder: Recorder) -> str:
    parts = [f"{format_duration(min(elapsed, total))}/{format_duration(total)}"]
    rate = recorder.load_rate()
    if rate is not None:
        parts.append(f"load {rate[0]:.1f}/s, {rate[1] * 100:.1f}% errors")
    slopes = recorder.memory_slopes()
    if slopes:
        shown = ", ".join(f"{name} {slope:+.1f} MB/h" for name, slope in sorted(slopes.items()))
        parts.append(f"memory {shown}")
    return " | ".join(parts)


# -- helpers -------------------------------------------------------------------------------------
def _redacted(value: Any) -> Any:
    """``value`` with every URL password hidden (for the resolved config in the run dir)."""
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: a run killed mid-write leaves the previous version, never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _write_private_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Configs handed to children may hold passwords: readable by this user only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(dict(data), out, sort_keys=False)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The run decides where children listen; an inherited override would break the wiring.
    for name in ("SOAK_EXPORTER_LISTEN", "SOAK_LOAD_METRICS_LISTEN"):
        env.pop(name, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _soak_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "soakwatch.commands", *args]


def new_run_id(profile: str, now: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{profile}"


# -- the run -------------------------------------------------------------------------------------
def check_availability(
    config: RunConfig, only: tuple[str, ...] | None
) -> tuple[list[Availability], dict[str, str]]:
    """Check every service; raise AvailabilityError listing each required one that is down.
    Returns the results and the scenarios to leave out, each with its reason."""
    results = check_all(config.checks)
    required_down = [r for r in results if not r.up and r.service.required]
    if required_down:
        raise AvailabilityError(
            "required service(s) unavailable, not starting the run:\n"
            + describe_down(required_down)
        )
    down = {r.service.name: r.reason for r in results if not r.up}
    skipped: dict[str, str] = {}
    for scenario in config.scenario_names:
        if only is not None and scenario not in only:
            skipped[scenario] = "not selected"
            continue
        missing = [name for name in config.scenario_requires.get(scenario, ()) if name in down]
        if missing:
            skipped[scenario] = "; ".join(f"{name} unavailable ({down[name]})" for name in missing)
    return results, skipped


class _Run:
    """One run in progress: its directory, children and recorder. Used by ``execute``."""

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
        _write_json(self.run_dir / RUN_FILE, self.info)

    def start_exporter(self) -> ScrapeTarget | None:
        section = self.request.config.exporter
        if not section:
            return None
        path = self.secrets_dir / "exporter.yaml"
        listen = str(section.get("listen") or "127.0.0.1:0")
        _write_private_yaml(path, {**section, "listen": listen})
        child = ChildProcess(
            "soak-exporter",
            _soak_command("exporter", "--config", str(path)),
            self.run_dir / "logs" / "exporter.log",
            env=_child_env(),
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
            _soak_command("load", "--config", str(path), "--profile", self.request.profile.name),
            self.run_dir / "logs" / "load.log",
            env=_child_env(),
            # SIGINT: the load driver's graceful stop, which writes its summary.
            stop_signal=signal.SIGINT,
        )
        self.children.append(child)
        url = f"http://{listen}/metrics"
        target = ScrapeTarget("load", url)
        _wait_http(url, child, START_TIMEOUT_SECONDS)
        return target

    def stop_children(self) -> None:
        # The load first: its final summary should still see the service it measured.
        for child in reversed(self.children):
            child.stop()

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.secrets_dir, ignore_errors=True)


def _wait_http(url: str, child: ChildProcess, timeout: float) -> None:
    from soakwatch.run.children import wait_until

    def ready() -> bool:
        return requests.get(url, timeout=2).status_code == 200

    try:
        wait_until(ready, timeout=timeout, what=child.name, alive=child.running)
    except RuntimeError as exc:
        raise SoakwatchError(f"{exc}\n{child.log_tail()}") from None


def execute(request: RunRequest) -> RunResult:
    """Run one soak as described by ``request`` and return its result. Raises SoakwatchError
    (AvailabilityError, ConfigError) before anything starts when the run cannot begin."""
    profile = request.profile
    run_id = new_run_id(profile.name)
    base = request.config.out_dir or Path("soak-runs")
    run_dir = request.out_dir or base / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if any(p.name == "samples.om" for p in run_dir.iterdir()):
        raise UsageError(f"{run_dir} already holds a run; choose another --out")
    say = request.progress or (lambda text, final: None)

    availability, skipped = check_availability(request.config, request.only_scenarios)
    _write_json(run_dir / "availability.json", [a.to_json() for a in availability])
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
    _write_json(
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
    prometheus: ChildProcess | None = None
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

                prometheus, prometheus_url = start_local_prometheus(
                    run_dir, recorder.targets, interval
                )
            run.write_info(
                state="running",
                targets=[dataclasses.asdict(t) for t in recorder.targets],
                pids={
                    c.name: c.pid for c in [*run.children, *([prometheus] if prometheus else [])]
                },
                prometheus=prometheus_url and redact_url(prometheus_url),
            )
            say(f"run {run_id}: recording into {run_dir} every {format_duration(interval)}", True)
            if request.grafana_url:
                _mark_in_grafana(
                    run, started, None, f"soak run {run_id} started ({profile.name} profile)"
                )
            stopped_early = _record_until_done(
                request, run, recorder, stop, started, duration, interval
            )
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
        status, verdict, reports = analyze_run(
            run_dir, request.config.rules_path, prometheus_url, started, ended, interval
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
    if "junit" in reports:
        add_skipped_scenarios(reports["junit"], skipped)
    if "html" in reports:
        note_skipped_in_html(reports["html"], skipped)
    run.write_info(status=status, reports={k: str(v) for k, v in reports.items()})
    if request.grafana_url:
        _mark_in_grafana(run, started, ended, f"soak run {run_id}: {status}")
    return RunResult(
        run_id=run_id,
        run_dir=run_dir,
        status=status,
        verdict=verdict,
        interrupted=interrupted,
        stopped_early=stopped_early,
        skipped_scenarios=skipped,
        availability=availability,
        reports=reports,
    )


def _mark_in_grafana(run: _Run, start: float, end: float | None, text: str) -> None:
    """Annotate the run on the Grafana dashboards (a point at the start, a region at the end).
    Grafana down or refusing is a warning: a soak never dies for a missing annotation."""
    url = run.request.grafana_url
    assert url is not None
    token = os.environ.get(GRAFANA_TOKEN_VARIABLE) or None
    try:
        from soakwatch.dashboards.push import mark_run

        annotation = mark_run(
            url, run.run_id, start_seconds=start, end_seconds=end, text=text, token=token
        )
    except Exception as exc:  # SourceError, a bad answer, grafana-client missing: all alike
        reason = str(exc) or type(exc).__name__
        if token:
            reason = reason.replace(token, "***")
        log.warning(
            "Grafana annotation of run %s at %s failed (the run goes on): %s",
            run.run_id,
            redact_url(url),
            reason,
        )
        return
    run.say(f"grafana: run {'end' if end is not None else 'start'} annotated ({annotation})", True)


def _record_until_done(
    request: RunRequest,
    run: _Run,
    recorder: Recorder,
    stop: threading.Event,
    started: float,
    duration: float,
    interval: float,
) -> bool:
    """Scrape every ``interval`` until the duration is over, the load driver is done, or the
    stop event is set. Returns True when --fail-fast ended the run."""
    load_child = next((c for c in run.children if c.name == "soak-load"), None)
    next_scrape = time.monotonic()
    early_every = max(5.0, FAIL_FAST_EVERY_INTERVALS * interval)
    next_early_check = time.monotonic() + early_every
    end_at = time.monotonic() + duration
    while not stop.is_set():
        now = time.monotonic()
        recorder.scrape(time.time())
        run.say(progress_line(time.time() - started, duration, recorder), False)
        if now >= end_at:
            break
        if load_child is not None and not load_child.running():
            run.say(
                f"the load driver exited ({load_child.process.returncode}); ending the run", True
            )
            break
        for child in run.children:
            if child is not load_child and not child.running():
                raise SoakwatchError(f"{child.name} exited unexpectedly:\n{child.log_tail()}")
        if request.fail_fast and now >= next_early_check:
            next_early_check = now + early_every
            status = early_verdict(run.run_dir, request.config.rules_path)
            if status == "fail":
                run.say("fail-fast: the evidence is already decisive (fail); stopping", True)
                return True
        next_scrape += interval
        stop.wait(max(0.0, min(next_scrape, end_at) - time.monotonic()))
    return False


# -- analysis ------------------------------------------------------------------------------------
REPORTS = {"json": "verdict.json", "junit": "junit.xml", "html": "report.html"}


def _analyze_command(
    run_dir: Path,
    fmt: str,
    output: Path,
    rules: Path | None,
    prometheus_url: str | None,
    started: float,
    ended: float,
    step_seconds: float,
) -> list[str]:
    argv = _soak_command("analyze", "--format", fmt, "--output", str(output))
    if prometheus_url:
        span = max(60.0, math.ceil(ended - started))
        argv += ["--prometheus", prometheus_url, "--range", f"{span:.0f}s", "--end", f"{ended:.3f}"]
        # one point per scrape: the analyzer's default step suits hours, not a short run
        argv += ["--step", f"{max(1.0, step_seconds):g}s"]
    else:
        argv += ["--run-dir", str(run_dir)]
    if rules is not None:
        argv += ["--rules", str(rules)]
    return argv


def analyze_run(
    run_dir: Path,
    rules: Path | None,
    prometheus_url: str | None = None,
    started: float = 0.0,
    ended: float = 0.0,
    step_seconds: float = 15.0,
) -> tuple[str, dict[str, Any] | None, dict[str, Path]]:
    """Run soak-analyze for each report format; returns the status, the JSON verdict and the
    report paths. The analyzer runs as a child so a run never depends on its import cost."""
    import subprocess

    status_by_code = {0: "pass", 1: "fail", 3: "inconclusive"}
    reports: dict[str, Path] = {}
    status = "error"
    verdict: dict[str, Any] | None = None
    log_path = run_dir / "logs" / "analyze.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The three formats are analyzed side by side: each is a separate soak-analyze process.
    running = []
    with open(log_path, "ab") as out:
        for fmt, name in REPORTS.items():
            output = run_dir / name
            argv = _analyze_command(
                run_dir, fmt, output, rules, prometheus_url, started, ended, step_seconds
            )
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=_child_env())
            running.append((fmt, output, process))
        for fmt, output, process in running:
            code = process.wait()
            if code not in status_by_code or not output.exists():
                continue
            reports[fmt] = output
            if fmt == "json":
                status = status_by_code[code]
                try:
                    verdict = json.loads(output.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    verdict = None
    return status, verdict, reports


def add_skipped_scenarios(junit_path: Path, skipped: Mapping[str, str]) -> None:
    """Add each scenario left out of the run as a skipped test case of the JUnit report, so CI
    shows what was not soaked and why."""
    import xml.etree.ElementTree as ET

    if not skipped or not junit_path.exists():
        return
    tree = ET.parse(junit_path)
    root = tree.getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return
    for scenario, reason in skipped.items():
        case = ET.SubElement(suite, "testcase", classname="soakwatch.scenario", name=scenario)
        ET.SubElement(case, "skipped", message=f"scenario left out: {reason}")
    suite.set("tests", str(int(suite.get("tests", "0")) + len(skipped)))
    suite.set("skipped", str(int(suite.get("skipped", "0")) + len(skipped)))
    ET.indent(tree)
    tree.write(junit_path, encoding="UTF-8", xml_declaration=True)


def note_skipped_in_html(html_path: Path, skipped: Mapping[str, str]) -> None:
    """Say in the HTML report which scenarios were left out and why (before its findings)."""
    import html

    if not skipped or not html_path.exists():
        return
    text = html_path.read_text(encoding="utf-8")
    items = "".join(
        f"<li><b>{html.escape(name)}</b>: {html.escape(reason)}</li>"
        for name, reason in skipped.items()
    )
    note = f"<h2>Scenarios left out of this run</h2><ul>{items}</ul>\n"
    marker = "<h2>Findings</h2>"
    if marker in text:
        text = text.replace(marker, note + marker, 1)
    else:
        text = text.replace("</body>", note + "</body>", 1)
    html_path.write_text(text, encoding="utf-8")


def early_verdict(run_dir: Path, rules: Path | None) -> str | None:
    """The analyzer's verdict on what was recorded so far (for --fail-fast)."""
    import subprocess

    argv = _soak_command(
        "analyze", "--run-dir", str(run_dir), "--format", "json", "--output", os.devnull
    )
    if rules is not None:
        argv += ["--rules", str(rules)]
    code = subprocess.run(argv, capture_output=True, env=_child_env()).returncode
    return {0: "pass", 1: "fail", 3: "inconclusive"}.get(code)


# -- command line --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a whole soak: availability checks, exporter, load, recording, verdict.",
    )
    parser.add_argument("--config", metavar="FILE", help="soak config (see docs/run.md)")
    parser.add_argument(
        "--profile", choices=list(PROFILES), help="soak profile (default: the config's, or ci)"
    )
    parser.add_argument("--duration", metavar="DURATION", help="override the profile's duration")
    parser.add_argument("--prometheus", metavar="URL", help="analyze from this Prometheus")
    parser.add_argument(
        "--local-prometheus",
        action="store_true",
        help="also start a private Prometheus for the run (needs the prometheus binary)",
    )
    parser.add_argument(
        "--fail-fast", action="store_true", help="stop as soon as the verdict is a decisive fail"
    )
    parser.add_argument("--out", metavar="DIR", help="the run directory (default soak-runs/RUN_ID)")
    parser.add_argument(
        "--grafana-url",
        metavar="URL",
        help=f"annotate the run's start and end in this Grafana (token: ${GRAFANA_TOKEN_VARIABLE})",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start Redis, PostgreSQL and two sample services (healthy, leaking) and soak them",
    )
    return parser


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` instead of killing the run, so it ends in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):

        def handler(received: int, frame: Any) -> None:
            if stop.is_set():  # a second Ctrl-C: give up at once
                raise KeyboardInterrupt
            stop.set()

        previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _console_progress(text: str, final: bool) -> None:
    console.status(text, final=final)


def report(result: RunResult) -> None:
    """The end of a run on the terminal: the verdict per rule and where the reports are."""
    console.out(f"verdict: {result.status.upper()}  ({result.run_dir})")
    for line in summarize_verdict(result.verdict):
        console.out(f"  {line}")
    for scenario, reason in result.skipped_scenarios.items():
        console.out(f"  skipped scenario {scenario}: {reason}")
    if "html" in result.reports:
        console.out(f"report: {result.reports['html'].resolve()}")


def summarize_verdict(verdict: Mapping[str, Any] | None) -> list[str]:
    if not verdict:
        return ["no verdict (see logs/analyze.log in the run directory)"]
    lines = []
    for result in verdict.get("results", []) or []:
        subject = result.get("subject") or result.get("labels") or {}
        if isinstance(subject, Mapping):
            subject = ",".join(f"{k}={v}" for k, v in subject.items())
        text = result.get("summary") or result.get("reason") or ""
        lines.append(
            f"{result.get('status', '?'):<14} {result.get('rule', '?')} {subject} {text}".rstrip()
        )
    return lines


def build_request(args: argparse.Namespace, stop: threading.Event) -> RunRequest:
    if not args.config:
        raise UsageError("--config FILE is required (or --demo)")
    config = load_run_config(args.config)
    profile_name = args.profile or config.profile or "ci"
    profile = resolve_profile(profile_name)
    duration = config.duration_seconds
    if args.duration is not None:
        try:
            duration = parse_duration(args.duration)
        except ValueError as exc:
            raise UsageError(f"--duration: {exc}") from None
        if duration <= 0:
            raise UsageError(f"--duration: must be greater than 0, got {args.duration!r}")
    if duration is not None:
        profile = dataclasses.replace(profile, duration_seconds=duration)
    if args.prometheus:
        check_url(
            args.prometheus,
            schemes=("http", "https"),
            fail=lambda m: UsageError(f"--prometheus: {m}"),
        )
        if args.local_prometheus:
            raise UsageError("--prometheus and --local-prometheus exclude each other")
    if args.grafana_url:
        check_url(
            args.grafana_url,
            schemes=("http", "https"),
            fail=lambda m: UsageError(f"--grafana-url: {m}"),
        )
    return RunRequest(
        config=config,
        profile=profile,
        out_dir=Path(args.out) if args.out else None,
        prometheus_url=args.prometheus,
        local_prometheus=args.local_prometheus,
        fail_fast=args.fail_fast,
        progress=_console_progress,
        stop_event=stop,
        grafana_url=args.grafana_url,
    )


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    stop = threading.Event()
    try:
        with _stop_on_signals(stop):
            if args.demo:
                from soakwatch.run.demo import run_demo

                return run_demo(args, stop)
            request = build_request(args, stop)
            result = execute(request)
            report(result)
            return result.exit_code
    except SoakwatchError as exc:
        console.error(f"{PROG}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        console.error(f"{PROG}: interrupted")
        return 130
