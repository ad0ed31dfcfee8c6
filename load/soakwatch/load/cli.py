"""``soak load``: hold HTTP / WebSocket / session / database load at set rates.

    soak load --http URL --rate 100/s --duration 10s --summary out.json
    soak load --config load.yaml --profile ci --shard 0/4 --metrics-listen 0.0.0.0:9105
    soak load --config load.yaml --run-id nightly-42 --metrics-listen 0.0.0.0:9105
    soak load --config load.yaml --threshold 'p95<200ms' --threshold 'api:error_ratio<1%'

Every flag can also be set from the environment as ``SOAK_LOAD_<FLAG>`` (``SOAK_LOAD_RATE``,
``SOAK_LOAD_METRICS_LISTEN``; ``1``/``0`` for the switches; ``SOAK_LOAD_THRESHOLD`` holds one or
more thresholds separated by ``;``): a flag wins over the environment, the environment over the
config file, the config file over the profile.

Exit codes: 0 when the run ended (at its end or stopped by SIGINT/SIGTERM: the graceful stop,
summary written) and every threshold held, 99 (EXIT_THRESHOLD) when a threshold was breached
(at the end, or during the run with ``abort_on_fail``) or every operation of the run failed,
2 for a bad command line or config (the message names the key), a missing
extra (``soakwatch[http]`` for HTTP/WebSocket/sessions, ``[redis]``, ``[postgres]``,
``[clickhouse]``), a failed precondition, or a summary file that could not be written (the
summary JSON then goes to stderr; a warning said so during the run); 130 for a Ctrl-C the
graceful stop cannot catch. ``--summary -`` prints the summary JSON on stdout (the per-scenario
lines then go to stderr)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from soakwatch import console
from soakwatch.cli import add_version, run_main
from soakwatch.errors import ConfigError, SoakwatchError, UsageError
from soakwatch.exitcodes import EXIT_ERROR, EXIT_PASS, EXIT_THRESHOLD
from soakwatch.load.workers import run_loop

if TYPE_CHECKING:
    from collections.abc import Mapping

    from soakwatch.load.config import LoadConfig
    from soakwatch.load.driver import Driver

__all__ = ["main"]

PROG = "soak load"
STDOUT = "-"  # --summary -: the summary JSON on stdout
ENV_PREFIX = "SOAK_LOAD_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class _Parser(argparse.ArgumentParser):
    # "soak load: unrecognized arguments: --bogus", one line, like every other error
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Hold HTTP, WebSocket, session-churn and database load at set rates.",
    )
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML file with the scenario mix (docs/load.md)")
    add("--profile", help="ci, staging or production: default duration, connections and rates")
    add("--http", metavar="URL", help="an HTTP scenario against URL (needs --rate)")
    add("--rate", help="requests per second of --http, e.g. 100/s or 600/min")
    add("--method", default=None, help="HTTP method of --http (default GET)")
    add("--timeout", default=None, help="per-operation deadline of --http/--ws (default 5s)")
    add("--ws", metavar="URL", help="a WebSocket scenario against URL (ws:// or wss://)")
    add("--connections", default=None, help="WebSocket connections to hold for --ws")
    add("--interval", default=None, help="time between messages per WebSocket (default 1s)")
    add("--duration", help="length of the steady stage, e.g. 10s, 2h")
    add("--ramp-up", help="ramp-up before the steady stage (default 0)")
    add("--ramp-down", help="ramp-down after the steady stage (default 0)")
    add("--shard", metavar="I/N", help="run shard I of N: 1/N of every rate and connection count")
    add("--metrics-listen", metavar="HOST:PORT", help="serve /metrics here")
    add("--run-id", metavar="ID", help="publish soak_run_info{run_id=ID} 1 while running")
    add("--summary", metavar="FILE", help="write the JSON summary here (atomically; - for stdout)")
    add(
        "--threshold",
        action="append",
        metavar="EXPR",
        help="[SCENARIO:]STAT OP VALUE, e.g. 'p95<200ms' (repeatable; exit 99 when breached)",
    )
    add(
        "--abort-on-fail",
        action="store_true",
        help="stop the run as soon as a --threshold is breached (after --abort-grace)",
    )
    add(
        "--abort-grace",
        metavar="DURATION",
        help="how long after the start --abort-on-fail waits before judging (default 0)",
    )
    add("--status-interval", help="seconds between status lines (default 5s)")
    add(
        "--workers",
        metavar="N",
        help="processes sharing the schedule like --shard i/N, one summary and /metrics "
        "(default: the cores)",
    )
    add("--quiet", action="store_true", help="no live status line")
    add("-v", "--verbose", action="store_true", help="log details to stderr")
    add_version(parser)
    return parser


def _environment(
    parser: argparse.ArgumentParser, argv: Sequence[str], environ: Mapping[str, str]
) -> dict[str, str]:
    """Set the defaults of the flags from ``SOAK_LOAD_<FLAG>`` (a flag given wins, as argparse
    applies defaults only to flags left out); return {dest: variable} of the ones it set."""
    used: dict[str, str] = {}
    for action in parser._actions:  # argparse offers no public list of its actions
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        name = ENV_PREFIX + action.dest.upper()
        given = any(
            arg == option or arg.startswith(option + "=")
            for arg in argv
            for option in action.option_strings
        )
        if name not in environ or given:
            continue
        text = environ[name]
        value: Any = text
        if isinstance(action, argparse._StoreTrueAction):
            if text.strip().lower() not in _TRUE + _FALSE:
                raise UsageError(f"{name}: expected 1 or 0 (true/false), got {text!r}")
            value = text.strip().lower() in _TRUE
        elif isinstance(action, argparse._AppendAction):
            value = [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]
        action.default = value
        used[action.dest] = name
    return used


def _flags(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Top-level keys and scenarios built from the flags, in the config file's vocabulary."""
    top: dict[str, Any] = {}
    for flag, key in (
        ("duration", "duration"),
        ("ramp_up", "ramp_up"),
        ("ramp_down", "ramp_down"),
        ("shard", "shard"),
        ("metrics_listen", "metrics_listen"),
        ("run_id", "run_id"),
        ("summary", "summary"),
        ("status_interval", "status_interval"),
    ):
        value = getattr(args, flag)
        if value is not None:
            top[key] = value
    if args.threshold:
        if args.abort_on_fail or args.abort_grace is not None:
            grace = {} if args.abort_grace is None else {"abort_grace": args.abort_grace}
            top["thresholds"] = [
                {"threshold": text, "abort_on_fail": True, **grace} for text in args.threshold
            ]
        else:
            top["thresholds"] = list(args.threshold)
    elif args.abort_on_fail or args.abort_grace is not None:
        raise UsageError("--abort-on-fail and --abort-grace go with --threshold EXPR")
    scenarios: list[dict[str, Any]] = []
    if args.http is not None:
        if args.rate is None:
            raise UsageError("--http needs --rate (e.g. --rate 100/s)")
        http: dict[str, Any] = {"kind": "http", "url": args.http, "rate": args.rate}
        if args.method is not None:
            http["method"] = args.method.upper()
        if args.timeout is not None:
            http["timeout"] = args.timeout
        scenarios.append(http)
    elif args.rate is not None or args.method is not None:
        raise UsageError("--rate and --method go with --http URL")
    if args.ws is not None:
        ws: dict[str, Any] = {"kind": "websocket", "url": args.ws}
        if args.connections is not None:
            ws["connections"] = _int_flag("--connections", args.connections)
        if args.interval is not None:
            ws["interval"] = args.interval
        if args.timeout is not None:
            ws["timeout"] = args.timeout
        scenarios.append(ws)
    elif args.connections is not None or args.interval is not None:
        raise UsageError("--connections and --interval go with --ws URL")
    return top, scenarios


# config key (as a ConfigError of the command line names it) -> the flag's dest
_DEST_OF_KEY = {"thresholds": ("threshold",), "url": ("http", "ws")}


def _from_environment(exc: ConfigError, used: Mapping[str, str]) -> ConfigError:
    """``exc`` naming the environment variable when the bad value came from one."""
    if exc.source != "command line" or not exc.key:
        return exc
    key = exc.key.split("[")[0].split(".")[0]
    names = [used[dest] for dest in _DEST_OF_KEY.get(key, (key,)) if dest in used]
    if len(names) != 1:
        return exc
    return ConfigError(exc.reason, source="environment", key=names[0])


def _int_flag(flag: str, text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text  # the config border rejects it with the key's name


async def _run(driver: Driver) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Not available on Windows event loops: Ctrl-C then ends the run without a summary.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, driver.stop, signal.Signals(signum).name)
    try:
        result: dict[str, Any] = await driver.run()
        return result
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)


def _report(summary: dict[str, Any], out: Callable[[str], None]) -> None:
    for name, part in summary["scenarios"].items():
        latency = part["latency_seconds"]
        if part["skipped"]:
            out(f"{name}: skipped: {part['skipped']}")
            continue
        figures = " ".join(
            f"{key}={latency[key] * 1000:.1f}ms"
            for key in ("p50", "p95", "p99")
            if latency[key] is not None
        )
        bad = ", ".join(f"{k}={v}" for k, v in part["outcomes"].items() if v and k != "ok")
        out(
            f"{name}: {part['sent']} sent, {part['achieved_rate_per_second']:.1f}/s, "
            f"ok={part['outcomes']['ok']}{', ' + bad if bad else ''} {figures}".rstrip()
        )
        for step, figures_of in part.get("steps", {}).items():
            p95 = figures_of["latency_seconds"]["p95"]
            shown = f" p95={p95 * 1000:.1f}ms" if p95 is not None else ""
            out(f"  {name} step {step}: {figures_of['completed']} done, "
                f"errors={figures_of['errors']}{shown}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    parser = _parser()
    from_env = _environment(parser, argv, os.environ)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from soakwatch.load.config import load_config

    top, scenarios = _flags(args)
    try:
        config = load_config(args.config, flags=top, flag_scenarios=scenarios, profile=args.profile)
    except ConfigError as exc:
        raise _from_environment(exc, from_env) from None
    to_stdout = config.summary_path == STDOUT
    if to_stdout:  # printed at the end instead: no file named "-", no half documents
        config = dataclasses.replace(config, summary_path=None)
    status = None if args.quiet else lambda line: console.status(line)
    workers = _workers(args.workers)
    from soakwatch.load.driver import Driver

    driver = Driver(config, status=status, warn=_warn, workers=workers)
    try:
        summary = run_loop(_run(driver), config)
    except SoakwatchError:
        if driver.summary is not None and driver.summary_error is not None:
            console.error(json.dumps(driver.summary, indent=2))  # the error says why, below it
        raise
    if not args.quiet:
        sent = sum(part["sent"] for part in summary["scenarios"].values())
        active = summary["active_seconds"]
        rate = sent / active if active > 0 else 0.0
        console.status(driver.status_line(summary["elapsed_seconds"], rate), final=True)
    unwritten = driver.summary_error
    if summary["stop_reason"]:
        written = "summary printed" if to_stdout or unwritten else "summary written"
        console.error(f"{PROG}: stopped by {summary['stop_reason']}; {written}")
    if to_stdout:
        _report(summary, console.error)
        console.out(json.dumps(summary, indent=2))
    else:
        _report(summary, console.out)
    if unwritten is not None:
        console.error(json.dumps(summary, indent=2))
        console.error(
            f"{PROG}: cannot write the summary to {config.summary_path}: {unwritten}; "
            "the summary is on stderr above"
        )
        return EXIT_ERROR
    return _judge(summary, config)


def _judge(summary: Mapping[str, Any], config: LoadConfig) -> int:
    """Say how each threshold fared; EXIT_THRESHOLD when one (or the implicit one) broke."""
    from soakwatch.load.thresholds import breached, describe

    results = summary.get("thresholds", [])
    for result in results:
        if not result.get("implicit"):
            console.error(f"{PROG}: threshold {describe(result)}")
    broken = breached(results)
    if not broken:
        return EXIT_PASS
    for result in broken:
        if result.get("implicit"):
            console.error(f"{PROG}: every operation of the run failed ({describe(result)})")
    return EXIT_THRESHOLD


def _workers(text: str | None) -> int:
    from soakwatch.load.workers import default_workers

    if text is None:
        return default_workers()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--workers: a whole number of processes, at least 1, not {text!r}")
    return count


def _warn(message: str) -> None:
    console.error(f"{PROG}: warning: {message}")
