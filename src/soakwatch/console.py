"""The one place that prints for the CLIs. Output never raises on a narrow console encoding
(cp1252 on Windows, ascii in a bare container): unencodable characters are replaced."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["error", "out", "safe_text", "status"]


def safe_text(text: str, stream: TextIO) -> str:
    """Return ``text`` re-encoded so that ``stream`` can write it without UnicodeEncodeError."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        try:
            return text.encode(encoding, errors="replace").decode(encoding, errors="replace")
        except LookupError:
            return text.encode("ascii", errors="replace").decode("ascii")
    return text


def _write(text: str, stream: TextIO, end: str = "\n") -> None:
    stream.write(safe_text(text, stream) + end)
    stream.flush()


def out(text: str = "") -> None:
    """A result line on stdout."""
    _write(text, sys.stdout)


def error(text: str) -> None:
    """An error line on stderr."""
    _write(text, sys.stderr)


def status(text: str, *, final: bool = False) -> None:
    """A live one-line status on stderr: redrawn in place on a terminal, plain lines otherwise."""
    stream = sys.stderr
    if stream.isatty():
        _write("\r\x1b[2K" + text, stream, end="\n" if final else "")
    else:
        _write(text, stream)
