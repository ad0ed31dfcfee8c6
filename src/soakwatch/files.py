"""Writing files that readers may look at while they are written: the run's JSON records, the
load summary, the reports. One way, everywhere: a temporary file in the same directory, created
readable by this user only, fsync, then ``os.replace`` — a reader, or a run killed mid-write,
sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_atomic", "write_json_atomic"]


def write_atomic(path: str | os.PathLike[str], content: str | bytes) -> None:
    """Replace ``path`` by ``content`` atomically (text is written as UTF-8); the parent folder
    is created when missing. The file is mode 0600 (it may hold what a run measured)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def write_json_atomic(
    path: str | os.PathLike[str], document: Any, *, sort_keys: bool = False
) -> None:
    """``document`` as indented JSON, atomically (values JSON cannot hold are written with
    ``str()``: paths, timestamps)."""
    text = json.dumps(document, indent=2, sort_keys=sort_keys, default=str) + "\n"
    write_atomic(path, text)
