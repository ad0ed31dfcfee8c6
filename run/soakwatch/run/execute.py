"""The run itself: check availability, start the exporter and the load driver as children,
record what they serve into the run directory every sampling interval, stop them in order,
then analyze (``soakwatch.run.analysis``) and annotate Grafana (``soakwatch.run.grafana``).

Ctrl-C or SIGTERM (the ``stop_event`` of the request) ends the recording early; what was
measured is still analyzed. A run killed outright keeps its samples for ``soak-analyze
--run-dir``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
import yaml

from soakwatch.addresses import Address, parse_address
from soakwatch.configfile import redact_url
from soakwatch.durations import format_duration
from soakwatch.errors import SoakwatchError, UsageError
from soakwatch.exitcodes import EXIT_THRESHOLD
from soakwatch.files import write_json_atomic
from soakwatch.run.analysis import RunFinding, analyze_run, early_verdict, require_analyzer
from soakwatch.run.availability import check_availability
from soakwatch.run.children import (
    ChildProcess,
    child_env,
    exit_description,
    free_port,
    soak_command,
    wait_until,
)
from soakwatch.run.config import ScrapeTarget
from soakwatch.run.grafana import mark_run_in_grafana
from soakwatch.run.localservers import Server
from soakwatch.run.needs import RuleNeed, rule_needs, short_run_warnings, still_needed
from soakwatch.run.recorder import Recorder, RunDirError, progress_line, run_dir_error
from soakwatch.run.request import RunRequest, RunResult
from soakwatch.run.secrets import PRIVATE_DIR, PrivateFile, redacted, without_userinfo

__all__ = ["MAX_EXPORTER_RESTARTS", "RUN_FILE", "execute", "new_run_id"]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
START_TIMEOUT_SECONDS = 30.0
# --fail-fast re-analyzes every this many sampling intervals (never more often than every 5 s)
FAIL_FAST_EVERY_INTERVALS = 5
FAIL_FAST_MIN_SECONDS = 5.0
# An exporter that dies is started again at most this many times; then the run ends and what
# was recorded is analyzed.
MAX_EXPORTER_RESTARTS = 3
EXPORTER_PORT_ATTEMPTS = 3


def new_run_id(profile: str, now: float | None = None) -> str:
    """The UTC start time and the profile: ``20261125T210056Z-demo``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{profile}"


def _targets_json(targets: list[ScrapeTarget]) -> list[dict[str, str]]:
    return [{"name": t.name, "url": without_userinfo(t.url)} for t in targets]


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Everything the run (and its children: Prometheus's TSDB, the logs) creates is this
    user's only: directories 0700, files 0600."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def load_exit_description(code: int | None) -> dict[str, Any]:
    """How the load driver ended (``exit_description``), naming its threshold exit: 99 is
    ``soak load``'s "a threshold was breached", not a crash."""
    how = exit_description(code)
    if code == EXIT_THRESHOLD:
        how["how"] = f"stopped on a breached load threshold (exit {code})"
    return how


class _RunEnded(Exception):
    """The recording ended for a fault of the run itself (see ``_Run.end``)."""


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
        self.load_started: float | None = None  # monotonic, once the load driver serves
        self.load_target: ScrapeTarget | None = None
        self.private: list[PrivateFile] = []
        self.exporter_config: PrivateFile | None = None
        self.info: dict[str, Any] = {}
        # what the run went through: exporter restarts, the load's end (run.json, verdict.json)
        self.restarts: list[dict[str, Any]] = []
        self.findings: list[RunFinding] = []
        self.ended_by: str | None = None  # a state other than finished/interrupted

    def say(self, text: str, final: bool = True) -> None:
        if self.request.progress is not None:
            self.request.progress(text, final)
        else:
            log.info("%s", text)

    def write_info(self, **changes: Any) -> None:
        """Update run.json. On a run directory that cannot be written, the run goes on and
        the state is said on stderr (the progress) instead."""
        self.info.update(changes)
        path = self.run_dir / RUN_FILE
        try:
            try:
                write_json_atomic(path, self.info, sort_keys=True)
            except OSError:
                if not path.exists():
                    raise
                # A full disk has no room for a second copy: overwrite in place (truncating
                # first frees the old blocks for the new text).
                text = json.dumps(self.info, indent=2, sort_keys=True, default=str) + "\n"
                with open(path, "w", encoding="utf-8") as out:
                    out.write(text)
        except OSError as exc:
            state = self.info.get("state")
            self.say(
                f"soak run: cannot write {self.run_dir / RUN_FILE} ({exc.strerror or exc}); "
                f"state {state}" + (f": {self.info['reason']}" if self.info.get("reason") else ""),
                True,
            )

    def private_file(self, name: str, data: Mapping[str, Any]) -> PrivateFile:
        """A child's config: it may hold passwords (see soakwatch.run.secrets)."""
        secret = PrivateFile(self.run_dir, name, yaml.safe_dump(dict(data), sort_keys=False))
        self.private.append(secret)
        return secret

    def start_exporter(self) -> ScrapeTarget | None:
        section = self.request.config.exporter
        if not section:
            return None
        fixed = section.get("listen")
        for attempt in range(1, EXPORTER_PORT_ATTEMPTS + 1):
            # A port of its own, kept across restarts (the recorder and Prometheus scrape it
            # there); taken by another process meanwhile, a fresh one
            listen = str(fixed or f"127.0.0.1:{free_port()}")
            self.exporter_config = self.private_file("exporter.yaml", {**section, "listen": listen})
            try:
                return self._launch_exporter()
            except RuntimeError as exc:
                taken = "address already in use" in str(exc).lower()
                if fixed or not taken or attempt == EXPORTER_PORT_ATTEMPTS:
                    raise
                self.children = [c for c in self.children if c.running()]
        raise AssertionError("unreachable")

    def _launch_exporter(self) -> ScrapeTarget:
        assert self.exporter_config is not None
        path = self.exporter_config.ensure()
        child = ChildProcess(
            "soak-exporter",
            soak_command("exporter", "--config", str(path)),
            self.run_dir / "logs" / "exporter.log",
            env=child_env(),
        )
        self.children.insert(0, child)  # stopped last: after the load
        try:
            line = child.wait_for_line("serving http", START_TIMEOUT_SECONDS)
        finally:
            self.exporter_config.release()
        url = line.split("serving ", 1)[1].split()[0]
        if not url.endswith("/metrics"):
            url = url.rstrip("/") + "/metrics"
        return ScrapeTarget("exporter", url)

    def restart_exporter(self, dead: ChildProcess, recorder: Recorder, elapsed: float) -> None:
        """Start the exporter again (bounded by MAX_EXPORTER_RESTARTS); past the bound, end
        the run (``_RunEnded``) so that what was recorded is analyzed."""
        code = dead.process.returncode
        self.children.remove(dead)
        how = exit_description(code)
        note = {"child": "soak-exporter", "after_seconds": round(elapsed, 1), **how}
        if len(self.restarts) >= MAX_EXPORTER_RESTARTS:
            reason = (
                f"the exporter died {len(self.restarts) + 1} times (last: {how['how']}); "
                f"ending the run after {format_duration(elapsed)}"
            )
            self.end("exporter_lost", reason, subject={"child": "soak-exporter"})
        self.say(f"the exporter died ({how['how']}); restarting it", True)
        try:
            target = self._launch_exporter()
        except (RuntimeError, OSError) as exc:
            self.end(
                "exporter_lost",
                f"the exporter died ({how['how']}) and could not be started again: {exc}",
                subject={"child": "soak-exporter"},
            )
        self.restarts.append(note)
        recorder.targets[:] = [target if t.name == "exporter" else t for t in recorder.targets]
        self.write_info(restarts=self.restarts, pids=self.pids())
        log.warning(
            "exporter restarted (%d of at most %d)", len(self.restarts), MAX_EXPORTER_RESTARTS
        )

    def end(self, state: str, reason: str, *, subject: Mapping[str, str], **facts: Any) -> None:
        """End the recording for a fault of the run: ``state`` in run.json, and an
        inconclusive finding in the report (a pass is not a pass after this)."""
        self.ended_by = state
        self.findings.append(
            RunFinding(rule="run_completed", subject=dict(subject), reason=reason, **facts)
        )
        self.say(f"soak run: {reason}", True)
        raise _RunEnded(reason)

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children}

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
        config_file = self.private_file("load.yaml", data)
        child = ChildProcess(
            "soak-load",
            soak_command(
                "load", "--config", str(config_file.path), "--profile", self.request.profile.name
            ),
            self.run_dir / "logs" / "load.log",
            env=child_env(),
            # SIGINT: the load driver's graceful stop, which writes its summary.
            stop_signal=signal.SIGINT,
        )
        self.children.append(child)
        url = _metrics_url(listen)
        try:
            _wait_http(url, child, START_TIMEOUT_SECONDS)
        finally:
            config_file.close()  # read: it has nothing more to give
        self.load_started = time.monotonic()
        self.load_target = ScrapeTarget("load", url)
        return self.load_target

    def stop_children(self) -> None:
        # The load first: its final summary should still see the service it measured.
        for child in reversed(self.children):
            child.stop()

    def cleanup(self) -> None:
        for secret in self.private:
            secret.close()
        with contextlib.suppress(OSError):
            (self.run_dir / PRIVATE_DIR).rmdir()

    def mark_in_grafana(self, start: float, end: float | None, text: str) -> None:
        url = self.request.grafana_url
        if url is None:
            return
        annotation = mark_run_in_grafana(url, self.run_id, start, end, text)
        if annotation is not None:
            which = "end" if end is not None else "start"
            self.say(f"grafana: run {which} annotated ({annotation})", True)

    def record_until_done(
        self,
        recorder: Recorder,
        stop: threading.Event,
        started: float,
        interval: float,
        *,
        needs: Sequence[RuleNeed] = (),
    ) -> bool:
        """Scrape every ``interval`` until the duration (counted from the first scrape) is
        over, the load driver is done, or the stop event is set; the progress line says how
        long the rules (``needs``) still need. Returns True when --fail-fast ended the run."""
        duration = self.request.profile.duration_seconds
        load_child = next((c for c in self.children if c.name == "soak-load"), None)
        next_scrape = time.monotonic()
        early_every = max(FAIL_FAST_MIN_SECONDS, FAIL_FAST_EVERY_INTERVALS * interval)
        next_early_check = time.monotonic() + early_every
        end_at = time.monotonic() + duration
        first_scrape = time.time()
        # the load driver started this long before the first scrape (children, a local
        # Prometheus): a load that ends on time ends that much before the recording does
        lead = time.monotonic() - self.load_started if self.load_started is not None else 0.0
        while not stop.is_set():
            now = time.monotonic()
            try:
                recorder.scrape(time.time())
            except RunDirError as exc:
                self.end(exc.state, exc.reason, subject={"run_dir": str(self.run_dir)})
            elapsed = time.time() - started
            self.say(
                progress_line(
                    elapsed,
                    duration,
                    recorder,
                    still=still_needed(needs, now_recorded(first_scrape)),
                ),
                False,
            )
            if now >= end_at:
                break
            if load_child is not None and not load_child.running():
                code = load_child.process.returncode
                how = load_exit_description(code)
                self.info["load"] = {**how, "after_seconds": round(elapsed, 1)}
                if code == 0 and end_at - now <= lead + interval:
                    # done on time: the recording still owes the run its planned duration
                    recorder.targets = [t for t in recorder.targets if t is not self.load_target]
                    load_child = None
                    next_scrape += interval
                    stop.wait(max(0.0, min(next_scrape, end_at) - time.monotonic()))
                    continue
                if code != 0:
                    # Killed, or failed: the service was not under the planned load to the end
                    self.end(
                        "load_failed",
                        f"the load driver {how['how']} after {format_duration(elapsed)} of "
                        f"{format_duration(duration)}: the service was not under load to the end",
                        subject={"child": "soak-load"},
                        figure=round(elapsed, 1),
                        threshold=duration,
                    )
                self.say(f"the load driver exited ({code}); ending the run", True)
                break
            for child in list(self.children):
                if child.name == "soak-load":
                    continue  # its end is judged above, and after an end on time not at all
                if not child.running():
                    if child.name != "soak-exporter":
                        raise SoakwatchError(
                            f"{child.name} exited unexpectedly:\n{child.log_tail()}"
                        )
                    self.restart_exporter(child, recorder, elapsed)
            if self.request.fail_fast and now >= next_early_check:
                next_early_check = now + early_every
                if early_verdict(self.run_dir, self.request.config.rules_path) == "fail":
                    self.say("fail-fast: the evidence is already decisive (fail); stopping", True)
                    return True
            next_scrape += interval
            stop.wait(max(0.0, min(next_scrape, end_at) - time.monotonic()))
        return False


def now_recorded(first_scrape: float) -> float:
    """Seconds of samples recorded since the first scrape."""
    return max(time.time() - first_scrape, 0.0)


def planned_needs(rules_path: Path | str | None, interval: float) -> list[RuleNeed]:
    """What each rule of the run's rules file needs (the rules were checked with the config;
    a file that cannot be read now gives no needs, and the analysis names the problem)."""
    from soakwatch.rules.model import load_rules

    try:
        return rule_needs(load_rules(rules_path), interval)
    except SoakwatchError:
        return []


def _prepare_run_dir(request: RunRequest, run_id: str) -> Path:
    base = request.config.out_dir or Path("soak-runs")
    run_dir = request.out_dir or base / run_id
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if any(p.name == "samples.om" for p in run_dir.iterdir()):
        raise UsageError(f"{run_dir} already holds a run; choose another --out")
    os.chmod(run_dir, 0o700)
    return run_dir


def execute(request: RunRequest) -> RunResult:
    """Run one soak as described by ``request`` and return its result. Raises SoakwatchError
    (MissingExtraError, AvailabilityError, ConfigError, ...) before anything starts when the
    run cannot begin, and RunDirError (exit 2) when the run directory cannot be written before
    the recording starts. Once it records, a fault of the run (a full disk, the load driver
    killed, the exporter dying past its restarts) ends the recording, says so in run.json and
    the report, and what was recorded is still analyzed."""
    require_analyzer()
    if request.local_prometheus:
        from soakwatch.run.prometheus import require_prometheus

        require_prometheus()
    with _private_umask():
        run_id = new_run_id(request.profile.name)
        run_dir = _prepare_run_dir(request, run_id)
        try:
            return _execute(request, run_id, run_dir)
        except OSError as exc:
            error = run_dir_error(run_dir, exc)
            if error is None:
                raise
            raise error from None


def _execute(request: RunRequest, run_id: str, run_dir: Path) -> RunResult:
    profile = request.profile
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
    needs = planned_needs(request.config.rules_path, interval)
    for warning in short_run_warnings(needs, duration, interval):
        say(f"soak run: {warning}", True)
    write_json_atomic(
        run_dir / "config.json",
        {
            "run_id": run_id,
            "source": request.config.source,
            "profile": dataclasses.asdict(profile),
            "duration_seconds": duration,
            "sampling_interval_seconds": interval,
            "checks": [a.to_json() for a in availability],
            "exporter": redacted(request.config.exporter),
            "load": redacted(request.config.load_without(set(skipped))),
            "skipped_scenarios": skipped,
            "scrape": _targets_json(list(request.config.scrape)),
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
    load_child: ChildProcess | None = None
    try:
        with ExitStack() as stack:
            stack.callback(run.cleanup)
            stack.callback(run.stop_children)
            exporter = run.start_exporter()
            if exporter:
                recorder.targets.append(exporter)
            # one sampling interval more than the recording: the load starts before the first
            # scrape, and must not end (ending the run) before `duration` of samples is there
            load = run.start_load(skipped, duration + interval)
            if load:
                recorder.targets.append(load)
                recorder.run_info_target = load.name
            load_child = next((c for c in run.children if c.name == "soak-load"), None)
            recorder.targets.extend(request.config.scrape)
            if request.local_prometheus:
                from soakwatch.run.prometheus import start_local_prometheus

                local = start_local_prometheus(run_dir, recorder.targets, interval)
                prometheus, prometheus_url = local, local.url
            pids = run.pids()
            if prometheus is not None:
                pids["prometheus"] = prometheus.pid
            run.write_info(
                state="running",
                targets=_targets_json(recorder.targets),
                pids=pids,
                prometheus=prometheus_url and redact_url(prometheus_url),
            )
            say(f"run {run_id}: recording into {run_dir} every {format_duration(interval)}", True)
            run.mark_in_grafana(
                started, None, f"soak run {run_id} started ({profile.name} profile)"
            )
            with contextlib.suppress(_RunEnded):
                stopped_early = run.record_until_done(
                    recorder, stop, started, interval, needs=needs
                )
    except BaseException as exc:
        if prometheus is not None:
            prometheus.stop()
        error = run_dir_error(run_dir, exc)
        if error is not None:  # before the recording started: nothing to analyze
            run.write_info(state=error.state, reason=error.reason, ended=time.time())
            raise error from None
        if not isinstance(exc, Exception):  # a second Ctrl-C: run.json says so, if it can
            run.write_info(state="interrupted", ended=time.time())
        raise
    finally:
        recorder.close()
    ended = time.time()
    interrupted = stop.is_set() and run.ended_by is None
    state = run.ended_by or ("interrupted" if interrupted else "finished")
    if load_child is not None and "load" not in run.info:
        # stopped by the run (or done): its exit after the stop
        run.info["load"] = load_exit_description(load_child.process.returncode)
    notes: dict[str, Any] = {"state": state, "restarts": run.restarts}
    if "load" in run.info:
        notes["load"] = run.info["load"]
    run.write_info(
        state=state,
        reason=run.findings[0].reason if run.findings else None,
        ended=ended,
        measured_seconds=ended - started,
        scrapes=recorder.scrapes,
        stopped_early=stopped_early,
        restarts=run.restarts,
    )
    say(
        f"run {run_id} {state} after {format_duration(ended - started)}; analyzing",
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
            findings=run.findings,
            notes=notes,
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
