"""``soak run``: a whole soak, from availability checks to a verdict and a report.

    soak run --profile ci --config soak.yaml [--duration 30m] [--prometheus URL]
             [--local-prometheus] [--fail-fast] [--out DIR] [--grafana-url URL]
    soak run --check --config soak.yaml
    soak run --demo

The first Ctrl-C or SIGTERM ends the recording in order and still analyzes what was measured
(``soakwatch.run.execute``); a second one gives up at once (exit 130). Exit codes are those of
``soakwatch.exitcodes``: 0 pass, 1 fail, 3 inconclusive, 2 usage, config, extra or
availability error.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from soakwatch import console
from soakwatch.cli import add_version, run_main
from soakwatch.configfile import check_url
from soakwatch.durations import parse_duration
from soakwatch.errors import UsageError
from soakwatch.exitcodes import EXIT_FAIL, EXIT_PASS
from soakwatch.profiles import PROFILES, resolve_profile
from soakwatch.run.config import RunConfig, load_run_config
from soakwatch.run.execute import execute
from soakwatch.run.grafana import GRAFANA_TOKEN_VARIABLE
from soakwatch.run.request import RunRequest, RunResult

__all__ = [
    "PROG",
    "build_parser",
    "build_request",
    "check_config",
    "console_progress",
    "main",
    "print_result",
    "stop_on_signals",
    "summarize_verdict",
]

PROG = "soak run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run a whole soak: availability checks, exporter, load, recording, verdict.",
    )
    add_version(parser)
    parser.add_argument("--config", metavar="FILE", help="soak config (see docs/run.md)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only validate the config (and its exporter, load and rules parts), then exit",
    )
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
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` instead of killing the run, so it ends in order; a second
    one raises KeyboardInterrupt (exit 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(received: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        stop.set()

    previous = {
        signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def console_progress(text: str, final: bool) -> None:
    """The run's progress on the terminal (stderr): final lines stay, the others redraw."""
    console.status(text, final=final)


def summarize_verdict(verdict: Mapping[str, Any] | None) -> list[str]:
    """One line per rule result: status, rule, subject, reason."""
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


def print_result(result: RunResult) -> None:
    """The end of a run on the terminal: the verdict per rule and where the reports are."""
    console.out(f"verdict: {result.status.upper()}  ({result.run_dir})")
    for line in summarize_verdict(result.verdict):
        console.out(f"  {line}")
    for scenario, reason in result.skipped_scenarios.items():
        console.out(f"  skipped scenario {scenario}: {reason}")
    if "html" in result.reports:
        console.out(f"report: {result.reports['html'].resolve()}")


def build_request(
    args: argparse.Namespace, stop: threading.Event, config: RunConfig | None = None
) -> RunRequest:
    """The request of a parsed command line: ``config`` (the demo's), else ``--config``'s file.
    Raises UsageError or ConfigError for anything wrong, before anything starts."""
    if config is None:
        if not args.config:
            raise UsageError("--config FILE is required (or --demo)")
        config = load_run_config(args.config)
    profile = resolve_profile(args.profile or config.profile or "ci")
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
        progress=console_progress,
        stop_event=stop,
        grafana_url=args.grafana_url,
    )


def check_config(path: str) -> str:
    """Validate a whole soak config — the run's keys, its exporter section (the exporter's
    parser), its load section (the load driver's) and its rules file (the rules model) — and
    return a one-line summary. Raises ConfigError naming the file and the key."""
    from soakwatch.rules.model import load_rules

    config = load_run_config(path)
    ruleset = load_rules(config.rules_path)
    services = len((config.exporter or {}).get("services", []) or [])
    parts = [
        f"{len(config.checks)} checks",
        f"exporter: {services} services" if config.exporter else "no exporter",
        f"load: {len(config.scenario_names)} scenarios" if config.load else "no load",
        f"rules: {len(ruleset.rules)} from {config.rules_path or 'the packaged soak.yaml'}",
    ]
    return f"{path}: OK ({', '.join(parts)})"


def planned_warnings(args: argparse.Namespace) -> list[str]:
    """The start warnings of the run the command line plans (its profile, ``--duration`` and
    the config's sampling interval and rules): one per rule it can only be inconclusive on."""
    from soakwatch.rules.model import load_rules
    from soakwatch.run.needs import rule_needs, short_run_warnings

    request = build_request(args, threading.Event())
    interval = request.config.sampling_interval_seconds or request.profile.sampling_interval_seconds
    needs = rule_needs(load_rules(request.config.rules_path), interval)
    return short_run_warnings(needs, request.profile.duration_seconds, interval)


def _run_demo(args: argparse.Namespace, stop: threading.Event) -> int:
    from soakwatch.run.demo import (
        DEMO_LEAK_BYTES_PER_SECOND,
        DEMO_SERVICES,
        demo_environment,
        demo_passed,
        require_demo_tools,
        service_verdicts,
    )

    require_demo_tools()
    # The flags are checked before anything starts; the config is the demo's, once it runs.
    request = build_request(args, stop, RunConfig(source="soak run --demo", profile="demo"))
    with demo_environment() as config:
        result = execute(dataclasses.replace(request, config=config))
    print_result(result)
    verdicts = service_verdicts(result.verdict, list(DEMO_SERVICES))
    console.out("")
    console.out(f"healthy service: {verdicts['healthy'].upper()}")
    console.out(
        f"leaking service: {verdicts['leaky'].upper()}  "
        f"(leaks {DEMO_LEAK_BYTES_PER_SECOND * 3600 / 1e6:.0f} MB/h on purpose)"
    )
    return EXIT_PASS if demo_passed(verdicts) else EXIT_FAIL


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.check:
        if not args.config:
            raise UsageError("--check needs --config FILE")
        console.out(f"{PROG}: {check_config(args.config)}")
        for warning in planned_warnings(args):
            console.error(f"{PROG}: {warning}")
        return EXIT_PASS
    stop = threading.Event()
    with stop_on_signals(stop):
        if args.demo:
            return _run_demo(args, stop)
        result = execute(build_request(args, stop))
        print_result(result)
        return result.exit_code


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _main, argv)
