"""``soak``: one command with subcommands. Each subcommand is the ``main(argv)`` of its
component, imported only when asked for, so ``soak exporter`` never imports numpy."""

from __future__ import annotations

import importlib
import sys

from soakwatch import console
from soakwatch.cli import run_main
from soakwatch.errors import UsageError
from soakwatch.exitcodes import EXIT_ERROR, EXIT_PASS
from soakwatch.version import __version__

__all__ = ["main"]

# subcommand -> (module with main(argv) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "exporter": ("soakwatch.exporter.cli", "run the Prometheus exporter (same as soak-exporter)"),
    "load": ("soakwatch.load.cli", "hold HTTP/WebSocket/session/DB load at set rates"),
    "analyze": ("soakwatch.analyzer.cli", "judge a run's series (same as soak-analyze)"),
    "rules": ("soakwatch.rules.cli", "generate Prometheus alerting rules from the soak rules"),
    "dashboards": ("soakwatch.dashboards.cli", "build or push the Grafana dashboards"),
    "run": ("soakwatch.run", "run a whole soak: exporter, load, recording, verdict, report"),
}


def _usage() -> str:
    lines = ["usage: soak COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<11} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "Run 'soak COMMAND --help' for the options of one command."]
    return "\n".join(lines)


def _main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        console.out(_usage())
        return EXIT_PASS if args else EXIT_ERROR
    if args[0] == "--version":
        console.out(f"soak {__version__}")
        return EXIT_PASS
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        raise UsageError(f"unknown command {name!r}\n\n{_usage()}")
    module = importlib.import_module(SUBCOMMANDS[name][0])
    result: int = module.main(rest)
    return result


def main(argv: list[str] | None = None) -> int:
    return run_main("soak", _main, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
