"""Secrets of a run: what the run writes never holds one, and what its children need is handed
to them without a file on disk.

- :func:`redacted` hides every secret of a config mapping (for ``config.json``): values of keys
  named like a secret (``password``, ``token``, ...), values of credential headers
  (``Authorization``, ``Cookie``, ``X-Api-Key``, ...), and the password of every URL or DSN
  (``soakwatch.configfile.redact_url``).
- :func:`instance_of` is the ``instance`` label of a scraped URL: ``host:port``, never its
  userinfo.
- :class:`PrivateFile` holds a child's config (or the local Prometheus's scrape password). On
  Linux it is an anonymous in-memory file (``memfd``) that the child opens as
  ``/proc/<run pid>/fd/<n>``: nothing reaches a disk, and nothing remains after any exit, SIGKILL
  included. Elsewhere it is a 0600 file in the run directory's ``.private/`` folder (0700),
  removed as soon as the child is ready (:meth:`PrivateFile.release`) and at the end of the run.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from soakwatch.configfile import redact_url

__all__ = [
    "PRIVATE_DIR",
    "REDACTED",
    "PrivateFile",
    "basic_auth_of",
    "instance_of",
    "is_secret_header",
    "is_secret_key",
    "redacted",
    "without_userinfo",
]

REDACTED = "***"
PRIVATE_DIR = ".private"

# A key whose value is a credential, whatever section it is in.
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:password|passwd|pwd|pass|passphrase|token|secret|credentials?|api[_-]?key"
    r"|access[_-]?key|private[_-]?key|auth[_-]?token)(?:$|[_-])",
    re.IGNORECASE,
)
# A request header whose value is a credential.
_SECRET_HEADER = re.compile(
    r"^(?:authorization|proxy-authorization|cookie|set-cookie)$"
    r"|(?:api[_-]?key|token|secret|password|session|auth)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def is_secret_header(name: str) -> bool:
    return bool(_SECRET_HEADER.search(name))


def redacted(value: Any, *, key: str = "") -> Any:
    """``value`` (a loaded config) with every secret replaced by ``***``."""
    if isinstance(value, Mapping):
        if key.lower() == "headers":
            return {
                str(k): REDACTED if is_secret_header(str(k)) else redacted(v)
                for k, v in value.items()
            }
        return {
            str(k): REDACTED
            if is_secret_key(str(k)) and not isinstance(v, (Mapping, list))
            # a mapping under a secret-like key (e.g. ``auth: {url, body}``) is searched too
            else redacted(v, key=str(k))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redacted(v) for v in value]
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    return value


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def instance_of(url: str) -> str:
    """The ``instance`` label of a scrape of ``url``: its ``host:port`` (as Prometheus names a
    target), never its userinfo."""
    return urlsplit(url).netloc.rpartition("@")[2]


def basic_auth_of(url: str) -> tuple[str, str] | None:
    """(user, password) of a URL's userinfo, or None."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return None
    return unquote(parts.username or ""), unquote(parts.password or "")


def _memfd_supported() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "memfd_create")
        and Path(f"/proc/{os.getpid()}/fd").is_dir()
    )


class PrivateFile:
    """Text only this user (and only while the run lives) can read, under a path to give a
    child. See the module docstring for where it lives."""

    def __init__(self, run_dir: Path, name: str, text: str) -> None:
        self.name = name
        self._fd: int | None = None
        self._file: Path | None = None
        self._data = data = text.encode("utf-8")
        if _memfd_supported():
            fd = os.memfd_create(f"soak-{name}", os.MFD_CLOEXEC)
            os.write(fd, data)
            os.fchmod(fd, 0o600)
            self._fd = fd
            self.path = Path(f"/proc/{os.getpid()}/fd/{fd}")
        else:
            self._file = self.path = run_dir / PRIVATE_DIR / name
            self.ensure()

    def ensure(self) -> Path:
        """The path, its file written again if :meth:`release` removed it (a restart)."""
        if self._file is not None and not self._file.exists():
            self._file.parent.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self._file.parent, 0o700)
            out = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(out, self._data)
            finally:
                os.close(out)
        return self.path

    @property
    def in_memory(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """The child has read it: remove the file from disk (an in-memory file is kept until
        :meth:`close`, so a restarted child can read it again)."""
        if self._file is not None:
            with contextlib.suppress(FileNotFoundError):
                self._file.unlink()
            with contextlib.suppress(OSError):  # others may still be in the folder
                self._file.parent.rmdir()

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
