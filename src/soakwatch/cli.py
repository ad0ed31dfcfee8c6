"""The one way every soakwatch command starts and ends: ``--version``, and the same mapping of
errors to exit codes and messages (``soakwatch.exitcodes``) for ``soak``, ``soak-exporter``,
``soak-analyze``, ``soak load``, ``soak run``, ``soak rules`` and ``soak dashboards``.

    def main(argv: list[str] | None = None) -> int:
        return run_main(PROG, _main, argv)

``_main(argv)`` parses with a parser that got :func:`add_version`, does the work and returns its
exit code; it raises ``SoakwatchError`` for anything the user must fix. ``run_main`` turns an
argparse exit into its code (0 for --help/--version, 2 for a usage error), a ``SoakwatchError``
into ``PROG: message`` on stderr and the error's exit code, and Ctrl-C into ``PROG: interrupted``
and 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from soakwatch import console
from soakwatch.errors import SoakwatchError
from soakwatch.exitcodes import EXIT_INTERRUPTED
from soakwatch.version import __version__

__all__ = ["add_version", "argv_of", "run_main"]


def add_version(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` a ``--version`` that prints ``PROG VERSION`` and exits 0."""
    parser.add_argument(
        "--version",
        action="version",
        version=f"{parser.prog} {__version__}",
        help=argparse.SUPPRESS,
    )


def argv_of(argv: Sequence[str] | None) -> list[str]:
    """The arguments to parse: ``argv`` or, when None, the process's own."""
    return sys.argv[1:] if argv is None else list(argv)


def run_main(prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """Run ``body`` on the arguments and map how it ends to an exit code (see the module)."""
    try:
        return body(argv_of(argv))
    except SystemExit as exc:  # argparse: --help, --version, or a usage error it has printed
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        console.error(f"{prog}: {code}")
        return 2
    except SoakwatchError as exc:
        console.error(f"{prog}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        console.error(f"{prog}: interrupted")
        return EXIT_INTERRUPTED
