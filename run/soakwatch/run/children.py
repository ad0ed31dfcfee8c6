"""Child processes of ``soak run``: started with their output in a log file, tied to the run's
life (on Linux they get SIGTERM when the run dies, even by SIGKILL), stopped by their own PID
only, politely first."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ChildProcess",
    "child_env",
    "exit_description",
    "free_port",
    "soak_command",
    "stop_process",
    "wait_until",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _as_user(user: str) -> Callable[[], None]:
    import pwd

    entry = pwd.getpwnam(user)

    def preexec() -> None:
        # Credentials first: changing the user clears the parent-death signal.
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        _die_with_parent()

    return preexec


def _posix_options(user: str | None) -> dict[str, Any]:
    """Popen options that exist only on POSIX: own session (a Ctrl-C in the terminal reaches
    only the run, which then stops its children in order, the load driver first so it can write
    its summary), and the parent-death signal / user switch before exec."""
    if os.name != "posix":
        return {}
    return {
        "start_new_session": True,
        "preexec_fn": _as_user(user) if user else _die_with_parent,
    }


def soak_command(*args: str) -> list[str]:
    """``soak ARGS...`` run by this interpreter (works without the ``soak`` script on PATH)."""
    return [sys.executable, "-m", "soakwatch.commands", *args]


def child_env() -> dict[str, str]:
    """The environment of the run's children: ours, without the listen overrides (the run
    decides where children listen; an inherited override would break the wiring)."""
    env = dict(os.environ)
    for name in ("SOAK_EXPORTER_LISTEN", "SOAK_LOAD_METRICS_LISTEN"):
        env.pop(name, None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def exit_description(code: int | None) -> dict[str, Any]:
    """How a child ended, for run.json: ``{"exit": -9, "signal": "SIGKILL", "how": "was killed
    by SIGKILL"}`` (a negative exit is the signal that ended it, as subprocess reports it)."""
    if code is None:
        return {"exit": None, "signal": None, "how": "did not stop"}
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return {"exit": code, "signal": name, "how": f"was killed by {name}"}
    return {"exit": code, "signal": None, "how": f"exited with code {code}"}


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the caller retries if someone takes it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    ready: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], bool]
) -> None:
    """Poll ``ready()`` (an exception counts as "not yet") until it is true; raise
    RuntimeError after ``timeout`` seconds or as soon as ``alive()`` turns false."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    last = ""
    while True:
        if not alive():
            raise RuntimeError(f"{what} exited before it was ready")
        try:
            if ready():
                return
        except Exception as exc:
            last = f" (last check: {type(exc).__name__}: {exc})"
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:.0f}s{last}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


class ChildProcess:
    """One process started by the run, its output appended to ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # a log may quote what a child met (never a secret, but still nobody else's business)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                **_posix_options(user),
            )
        log.debug("started %s pid %d", name, self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_line(self, marker: str, timeout: float) -> str:
        """The first line of the log containing ``marker``; RuntimeError on exit or timeout."""
        found: list[str] = []

        def ready() -> bool:
            found[:] = [line for line in self.log_text().splitlines() if marker in line][:1]
            return bool(found)

        try:
            wait_until(ready, timeout=timeout, what=self.name, alive=self.running)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None
        return found[0]

    def stop(self, timeout: float = 15.0) -> int | None:
        """Send the stop signal to our PID, wait, then SIGKILL. Returns the exit code."""
        return stop_process(self.process, self.stop_signal, timeout, self.name)


def stop_process(
    process: subprocess.Popen[bytes], stop_signal: int, timeout: float, name: str
) -> int | None:
    """Stop one child by its own PID: ``stop_signal``, wait ``timeout`` seconds, then SIGKILL.
    Returns the exit code (None only if it could not be reaped)."""
    if process.poll() is None:
        try:
            process.send_signal(stop_signal)
        except ProcessLookupError:
            pass
        except ValueError:  # Windows knows no SIGINT for another process: terminate it
            process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop in %.0fs: killing", name, process.pid, timeout)
            process.kill()
            process.wait()
    return process.returncode
