"""Find a service's process (by PID, pidfile or command line), notice when it exits, pick up
the next one that matches and count it as a restart.

A process is identified by its PID *and* its start time, so a PID reused by an unrelated
process is never mistaken for the one we watched. A zombie counts as exited.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import psutil

from soakwatch.exporter.config import MatchSpec

__all__ = [
    "CallableMatcher",
    "CmdlineMatcher",
    "Matcher",
    "PidMatcher",
    "PidfileMatcher",
    "ProcessTracker",
    "matcher_for",
    "scan_round",
]

log = logging.getLogger(__name__)

ProcessFactory = Callable[[int], Any]  # psutil.Process or a class with its methods


class Matcher(Protocol):
    """Names the PID of the process to watch, or None when none matches now."""

    #: False when the matcher names one process for good (``--pid``): after it exits, nothing
    #: else is picked up.
    follows_restarts: bool

    def find(self) -> int | None: ...

    def describe(self) -> str: ...


class PidMatcher:
    """One fixed PID (``--pid``). Once that process exits the service stays down."""

    follows_restarts = False

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def find(self) -> int | None:
        return self.pid if psutil.pid_exists(self.pid) else None

    def describe(self) -> str:
        return f"pid {self.pid}"


class PidfileMatcher:
    """The PID written in a file, re-read on every look: a restarted service rewrites it."""

    follows_restarts = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def find(self) -> int | None:
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            return None
        first = text.split(maxsplit=1)[0] if text else ""
        return int(first) if first.isdigit() and int(first) > 0 else None

    def describe(self) -> str:
        return f"pidfile {self.path}"


class CmdlineMatcher:
    """The oldest process whose arguments, joined by spaces, contain a match of ``pattern``
    (like process-exporter's cmdline matcher). The exporter itself is never matched: its own
    command line often contains the pattern."""

    follows_restarts = True

    def __init__(self, pattern: str, *, exclude_pids: frozenset[int] | None = None) -> None:
        self.pattern = re.compile(pattern)
        self.exclude_pids = frozenset({os.getpid()}) if exclude_pids is None else exclude_pids

    def find(self) -> int | None:
        best: tuple[float, int] | None = None
        for pid, started, cmdline in _process_table():
            if pid in self.exclude_pids or not self.pattern.search(cmdline):
                continue
            if best is None or (started, pid) < best:
                best = (started, pid)
        return None if best is None else best[1]

    def describe(self) -> str:
        return f"cmdline /{self.pattern.pattern}/"


_round = threading.local()


def _list_processes() -> list[tuple[int, float, str]]:
    rows = []
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        cmdline = proc.info.get("cmdline")
        if cmdline:  # None when denied; empty for kernel threads and zombies
            rows.append((proc.pid, proc.info.get("create_time") or 0.0, " ".join(cmdline)))
    return rows


def _process_table() -> list[tuple[int, float, str]]:
    """(PID, start time, command line) of every process: listed afresh, or once per
    ``scan_round`` in this thread."""
    if not getattr(_round, "active", False):
        return _list_processes()
    if _round.rows is None:
        _round.rows = _list_processes()
    rows: list[tuple[int, float, str]] = _round.rows
    return rows


@contextlib.contextmanager
def scan_round() -> Iterator[None]:
    """Within this block, every command-line matcher of this thread shares one listing of
    the processes: N services that are down cost one walk of /proc, not N."""
    if getattr(_round, "active", False):  # nested: the outer round's listing serves
        yield
        return
    _round.active, _round.rows = True, None
    try:
        yield
    finally:
        _round.active, _round.rows = False, None


class CallableMatcher:
    """A PID from any callable (tests, embedding): a new PID counts as a restart."""

    follows_restarts = True

    def __init__(self, pid: Callable[[], int | None], description: str = "pid callable") -> None:
        self._pid = pid
        self._description = description

    def find(self) -> int | None:
        return self._pid()

    def describe(self) -> str:
        return self._description


def matcher_for(spec: MatchSpec) -> Matcher:
    """The matcher a validated MatchSpec asks for."""
    if spec.pid is not None:
        return PidMatcher(spec.pid)
    if spec.pidfile is not None:
        return PidfileMatcher(spec.pidfile)
    assert spec.cmdline is not None  # MatchSpec guarantees exactly one kind
    return CmdlineMatcher(spec.cmdline)


def _is_alive(process: Any) -> bool:
    try:
        return bool(process.is_running()) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ProcessTracker:
    """The current process of one service, and how many times it was replaced.

    ``current()`` is cheap while the process lives; once it is gone the matcher is asked again,
    at most once per ``scan_interval_seconds`` (a command-line scan reads every process on the
    machine). The first process found is not a restart; each later, different one is.
    Thread-safe: the scrape and a background scanner may call it at once."""

    def __init__(
        self,
        matcher: Matcher,
        *,
        scan_interval_seconds: float = 5.0,
        process_factory: ProcessFactory = psutil.Process,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.matcher = matcher
        self.scan_interval_seconds = scan_interval_seconds
        self.process_factory = process_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._process: Any = None
        self._identity: tuple[int, float] | None = None
        self._seen_any = False
        self._last_scan: float | None = None
        self._alive_at = float("-inf")
        self.restarts = 0

    @property
    def identity(self) -> tuple[int, float] | None:
        """(PID, start time) of the last process picked up, without looking again."""
        return self._identity

    def current(self, *, max_age_seconds: float = 0.0) -> Any:
        """The live process being watched, or None while none matches. With
        ``max_age_seconds``, a process found alive that recently is trusted without reading
        ``/proc`` again (the pool collector runs right after the process collector)."""
        with self._lock:
            if self._process is not None:
                now = self._clock()
                if max_age_seconds > 0 and now - self._alive_at <= max_age_seconds:
                    return self._process
                if _is_alive(self._process):
                    self._alive_at = now
                    return self._process
            if self._process is not None:
                log.info(
                    "watched process exited: %s (pid %d)",
                    self.matcher.describe(),
                    self._process.pid,
                )
                self._process = None
            now = self._clock()
            if self._last_scan is not None and now - self._last_scan < self.scan_interval_seconds:
                return None
            self._last_scan = now
            self._scan()
            return self._process

    def refresh(self) -> None:
        """Look for the process now if it is gone, whenever the last look was (for a
        background scanner that runs every ``scan_interval_seconds``)."""
        with self._lock:
            self._last_scan = None
        self.current()

    def _scan(self) -> None:
        if self._seen_any and not self.matcher.follows_restarts:
            return
        try:
            pid = self.matcher.find()
        except (OSError, psutil.Error) as exc:
            log.warning("cannot look for %s: %s", self.matcher.describe(), exc)
            return
        if pid is None:
            return
        try:
            process = self.process_factory(pid)
            identity = (pid, float(process.create_time()))
        except psutil.Error:
            return
        if not _is_alive(process):
            return
        if self._identity is not None and identity == self._identity:
            # the same process as before (a pidfile matcher found it again after a blip)
            self._process = process
            self._alive_at = self._clock()
            return
        if self._seen_any:
            self.restarts += 1
            log.info(
                "picked up restarted process for %s: pid %d (restart %d)",
                self.matcher.describe(),
                pid,
                self.restarts,
            )
        else:
            log.info("found pid %d for %s", pid, self.matcher.describe())
        self._seen_any = True
        self._identity = identity
        self._process = process
        self._alive_at = self._clock()
