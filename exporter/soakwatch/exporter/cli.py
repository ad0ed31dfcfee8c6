"""``soak-exporter``: serve the soak metrics of one or more services on ``/metrics``.

    soak-exporter --config exporter.yaml
    soak-exporter --pid 1234 --service api --listen 127.0.0.1:9464
    soak-exporter --match 'gunicorn .*myapp' --service api --pool postgres=127.0.0.1:5432
    soak-exporter --match 'gunicorn .*myapp' --service api --children each

Exit codes (``soakwatch.exitcodes``): 0 after SIGTERM/SIGINT (the exporter's graceful stop),
2 on a bad command line or config (the message names the file and the key) and when the listen
address cannot be bound: 1 means "the soak failed" everywhere else, never "cannot start".
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from soakwatch import console
from soakwatch.addresses import parse_address
from soakwatch.cli import add_version, run_main
from soakwatch.configfile import Section
from soakwatch.errors import SoakwatchError, UsageError

if TYPE_CHECKING:
    from soakwatch.exporter.config import ExporterConfig

__all__ = ["main"]

PROG = "soak-exporter"


class _ConsoleLogHandler(logging.Handler):
    """Log records on stderr through the console module: never raises on a narrow encoding."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            console.error(self.format(record))
        except Exception:  # pragma: no cover - logging must never take the exporter down
            self.handleError(record)


def _help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, at the width shutil.get_terminal_size() would give, without
    importing shutil: argparse imports it for every add_argument() (with zlib, bz2 and lzma,
    about 0.4 MB of RSS in a sidecar that never prints help)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return argparse.HelpFormatter(prog, width=columns or 80)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve process, connection-pool and probe metrics of services under soak.",
        formatter_class=_help_formatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE", help="YAML config (see docs/exporter.md)")
    source.add_argument("--pid", type=int, metavar="PID", help="watch this process")
    source.add_argument("--pidfile", metavar="FILE", help="watch the process named in FILE")
    source.add_argument(
        "--match", metavar="REGEX", help="watch the oldest process whose command line matches"
    )
    parser.add_argument("--service", metavar="NAME", help="the service label (with --pid etc.)")
    parser.add_argument(
        "--children",
        choices=["sum", "each"],
        help="the process's descendants (pre-fork workers): summed into the service (sum, the "
        "default) or one series per member with a worker label (each); with --pid etc.",
    )
    parser.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME=[HOST:]PORT",
        help="count TCP connections to this endpoint (repeatable; with --pid etc.)",
    )
    parser.add_argument(
        "--listen", metavar="HOST:PORT", help="serve /metrics here (default 127.0.0.1:9464)"
    )
    parser.add_argument("--check", action="store_true", help="validate the configuration and exit")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    add_version(parser)
    return parser


def _pool_item(text: str) -> dict[str, Any]:
    """``NAME=PORT`` (any host) or ``NAME=HOST:PORT`` in the one address grammar."""
    name, sep, endpoint = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--pool: expected NAME=[HOST:]PORT, got {text!r}")
    if endpoint.isdigit():
        return {"name": name, "port": int(endpoint)}
    try:
        address = parse_address(endpoint)
    except ValueError as exc:
        raise UsageError(f"--pool {name}: {exc}") from None
    return {"name": name, "host": address.host, "port": address.port}


def _config_from_args(args: argparse.Namespace) -> ExporterConfig:
    from soakwatch.exporter.config import ExporterConfig, load_config, parse_listen

    if args.config is not None:
        if args.service or args.pool or args.children:
            raise UsageError(
                "--service, --pool and --children go with --pid/--pidfile/--match, not --config"
            )
        config = load_config(args.config)
    else:
        if not args.service:
            raise UsageError("--service NAME is required with --pid, --pidfile or --match")
        if args.pid is not None:
            match: dict[str, Any] = {"pid": args.pid}
        elif args.pidfile is not None:
            match = {"pidfile": args.pidfile}
        else:
            match = {"cmdline": args.match}
        if args.children is not None:
            match["children"] = args.children
        data = {
            "services": [
                {"name": args.service, "match": match, "pools": [_pool_item(p) for p in args.pool]}
            ]
        }
        config = ExporterConfig.from_section(Section(data, source="command line"))
        config = config.with_environment()
    if args.listen is not None:
        try:
            listen = parse_listen(args.listen)
        except ValueError as exc:
            raise UsageError(f"--listen: {exc}") from None
        config = config.replace(listen=listen)
    return config


def _install_stop_handlers(stop: Callable[[], None]) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, lambda *_: stop())


def main(argv: Sequence[str] | None = None, *, stop_event: threading.Event | None = None) -> int:
    """Run the exporter until SIGTERM/SIGINT (or ``stop_event``). Returns the exit code."""
    return run_main(PROG, lambda args: _main(args, stop_event), argv)


def _main(argv: list[str], stop_event: threading.Event | None) -> int:
    args = _parser().parse_args(argv)
    handler = _ConsoleLogHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("soakwatch")
    root.addHandler(handler)
    root.setLevel(args.log_level.upper())
    try:
        return _run(args, stop_event)
    finally:
        root.removeHandler(handler)


def _run(args: argparse.Namespace, stop_event: threading.Event | None) -> int:
    config = _config_from_args(args)
    names = ", ".join(f"{s.name} ({s.match.describe()})" for s in config.services)
    if args.check:
        console.out(f"{PROG}: config OK: {names}")
        return 0
    from soakwatch.exporter.server import SidecarExporter

    exporter = SidecarExporter(config)
    try:
        server = exporter.start()
    except OSError as exc:
        exporter.stop()
        raise SoakwatchError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from None
    stop = stop_event or threading.Event()
    _install_stop_handlers(stop.set)
    console.out(f"{PROG}: serving {server.url} for {names}")
    # POSIX: a signal interrupts the wait and its handler sets ``stop``, so nothing polls (each
    # wake-up is CPU of a sidecar that is otherwise idle between scrapes). Windows: a wait is
    # not interrupted by Ctrl-C, so it wakes twice a second.
    timeout = None if os.name == "posix" else 0.5
    try:
        while not stop.wait(timeout):
            pass
    except KeyboardInterrupt:  # a Ctrl-C before the handlers were installed: the same clean stop
        pass
    finally:
        exporter.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
