"""The exit codes of every soakwatch command, in one table.

0 pass (or: done, no verdict involved)   1 fail: the soak failed a rule
2 error: usage, config, data source or environment — never a verdict
3 inconclusive: not enough evidence yet  130 interrupted (Ctrl-C) before a verdict
99 threshold: ``soak load`` ran, and a threshold of its own was breached (or every operation
   failed); k6 uses 99 for the same. Not a verdict of the soak: the analyzer's codes are 0-3.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_FAIL",
    "EXIT_INCONCLUSIVE",
    "EXIT_INTERRUPTED",
    "EXIT_PASS",
    "EXIT_THRESHOLD",
    "exit_code_of",
    "status_of",
]

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_ERROR = 2
EXIT_INCONCLUSIVE = 3
EXIT_THRESHOLD = 99  # soak load: a threshold breached, or every operation failed
EXIT_INTERRUPTED = 130

# verdict -> exit code
EXIT_CODES: Mapping[str, int] = {
    "pass": EXIT_PASS,
    "fail": EXIT_FAIL,
    "inconclusive": EXIT_INCONCLUSIVE,
    "error": EXIT_ERROR,
}
_STATUS_OF_CODE = {code: status for status, code in EXIT_CODES.items() if status != "error"}


def exit_code_of(status: str) -> int:
    """The exit code of a verdict; anything that is not a verdict is an error (2)."""
    return EXIT_CODES.get(status, EXIT_ERROR)


def status_of(code: int) -> str | None:
    """The verdict an analyzer exit code stands for (None: not a verdict, e.g. 2)."""
    return _STATUS_OF_CODE.get(code)
