"""Find a service's process (by PID, pidfile or command line), notice when it exits, pick up
the next one that matches and count it as a restart.

A process is identified by its PID *and* its start time, so a PID reused by an unrelated
process is never mistaken for the one we watched. A zombie counts as exited.

A service can be a process *group* (``children: sum`` or ``each``): the matched process and
all its descendants, as a pre-fork server (gunicorn, uwsgi, celery) runs a master and its
workers. The matched process is member ``"0"``; each descendant gets the lowest free number
from ``"1"`` on, in order of appearance, and keeps it while it lives. A descendant that takes
the number of one that exited (a worker recycled after ``max_requests``) is a restart of that
member, counted in ``member_restarts``; only a new matched process is a restart of the
service. The numbers stay bounded by the most members alive at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Literal, NamedTuple, Protocol

import psutil

from soakwatch.exporter.config import MatchSpec

__all__ = [
    "CHILDREN",
    "CallableMatcher",
    "Children",
    "CmdlineMatcher",
    "ExitWatch",
    "Matcher",
    "Member",
    "PidMatcher",
    "PidfileMatcher",
    "ProcessTracker",
    "matcher_for",
    "scan_round",
]

log = logging.getLogger(__name__)

ProcessFactory = Callable[[int], Any]  # psutil.Process or a class with its methods

#: ``none``: the matched process alone (the Python API's default, and in-process mode);
#: ``sum``: it and its descendants as one service; ``each``: one series per member.
Children = Literal["none", "sum", "each"]
CHILDREN: tuple[Children, ...] = ("none", "sum", "each")

#: The member number of the matched process itself (uwsgi numbers its master 0 as well).
ROOT_MEMBER = "0"


class Matcher(Protocol):
    """Names the PID of the process to watch, or None when none matches now."""

    #: False when the matcher names one process for good (``--pid``): after it exits, nothing
    #: else is picked up.
    follows_restarts: bool
    #: Whether the matched process's descendants belong to the service (see ``Children``).
    children: Children

    def find(self) -> int | None: ...

    def describe(self) -> str: ...


class PidMatcher:
    """One fixed PID (``--pid``). Once that process exits the service stays down."""

    follows_restarts = False

    def __init__(self, pid: int, *, children: Children = "none") -> None:
        self.pid = pid
        self.children = _check_children(children)

    def find(self) -> int | None:
        return self.pid if psutil.pid_exists(self.pid) else None

    def describe(self) -> str:
        return f"pid {self.pid}"


class PidfileMatcher:
    """The PID written in a file, re-read on every look: a restarted service rewrites it."""

    follows_restarts = True

    def __init__(self, path: str | os.PathLike[str], *, children: Children = "none") -> None:
        from pathlib import Path  # only for a pidfile: pathlib is 0.4 MB of RSS

        self.path = Path(path)
        self.children = _check_children(children)

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
    (like process-exporter's cmdline matcher). The exporter itself and its ancestors are never
    matched: its own command line often contains the pattern, and so does the shell or
    supervisor that started it (``sh -c "soak-exporter --match X"``). ``exclude_pids`` replaces
    that set (an empty one matches anything).

    The oldest match is never the descendant of another match (a parent starts before its
    children), so when the pattern matches a pre-fork master and its workers alike, the master
    is the service and the workers count once, as its descendants (``children``)."""

    follows_restarts = True

    def __init__(
        self,
        pattern: str,
        *,
        exclude_pids: frozenset[int] | None = None,
        children: Children = "none",
    ) -> None:
        self.pattern = re.compile(pattern)
        self.exclude_pids = exclude_pids
        self.children = _check_children(children)

    def find(self) -> int | None:
        excluded = own_lineage() if self.exclude_pids is None else self.exclude_pids
        best: tuple[float, int] | None = None
        for pid, started, cmdline in _process_table():
            if pid in excluded or not self.pattern.search(cmdline):
                continue
            if best is None or (started, pid) < best:
                best = (started, pid)
        return None if best is None else best[1]

    def describe(self) -> str:
        return f"cmdline /{self.pattern.pattern}/"


def own_lineage() -> frozenset[int]:
    """This process and its ancestors, read now (a parent that exits is replaced by init)."""
    pids = {os.getpid()}
    with contextlib.suppress(psutil.Error, OSError):
        pids.update(parent.pid for parent in psutil.Process().parents())
    return frozenset(pids)


def _check_children(children: str) -> Children:
    if children not in CHILDREN:
        raise ValueError(f"children must be one of {', '.join(CHILDREN)}, got {children!r}")
    return children


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


#: States of /proc/PID/stat of a process that has exited: zombie, dead.
_EXITED_STATES = (b"Z", b"X")


class _ProcessTree:
    """Every process's parent, start time and state; ``fresh`` holds the PIDs whose stat file
    was read for this tree (the others are as an earlier pass read them)."""

    __slots__ = ("children", "fresh", "stat")

    def __init__(self, stat: dict[int, tuple[int, int, bytes]], fresh: Collection[int]) -> None:
        #: PID -> (parent PID, start time in clock ticks since boot, state)
        self.stat = stat
        self.fresh = fresh
        self.children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in stat.items():
            self.children.setdefault(ppid, []).append(pid)


#: Seconds a process outside every watched group may go without its stat file being read
#: again. Between two full passes over /proc only new PIDs and the members of watched groups
#: are read (1 to 50 files instead of every process's): a parent never changes, and a PID
#: that exits leaves the listing. What this can miss: a PID of another process reused, within
#: those seconds, by a new worker of a watched group; it is seen at the next full pass. (A
#: full pass is most of the CPU of the background scan of an idle sidecar: every 5 s it cost
#: about 2 ms with 130 processes on a 2-core VM.)
FULL_TREE_SECONDS = 30.0


class _TreeMemory:
    """The process tree of the last pass, for the next one to read only what can change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stat: dict[int, tuple[int, int, bytes]] = {}
        self._watched: set[int] = set()
        self._full_at = float("-inf")

    def read(self) -> _ProcessTree:
        with self._lock:
            now = time.monotonic()
            full = now - self._full_at >= FULL_TREE_SECONDS
            if full:
                self._full_at = now
            known, watched = self._stat, self._watched
            stat: dict[int, tuple[int, int, bytes]] = {}
            fresh: set[int] = set()
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                pid = int(name)
                entry = known.get(pid)
                if full or entry is None or pid in watched:
                    entry = _read_stat(pid)
                    if entry is None:  # exited since the listing
                        continue
                    fresh.add(pid)
                stat[pid] = entry
            self._stat = stat
            self._watched = watched & stat.keys()
            return _ProcessTree(stat, fresh)

    def watch(self, pids: Iterable[int]) -> None:
        """Read these processes' stat files on every pass (a watched group's members)."""
        with self._lock:
            self._watched.update(pids)

    def forget(self) -> None:
        """The next pass reads every process (tests; after a long pause)."""
        with self._lock:
            self._full_at = float("-inf")


_TREE = _TreeMemory()


_PROC_STAT = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")


def _read_stat(pid: int) -> tuple[int, int, bytes] | None:
    """(parent PID, start time in clock ticks since boot, state) from /proc/PID/stat; None
    when the process is gone (or hidden from us)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            data = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    # after "pid (comm) ": field 3 (state) is at 0, 4 (ppid) at 1, 22 (starttime) at 19
    fields = data[data.rfind(b")") + 2 :].split(b" ", 20)
    if len(fields) <= 19:
        return None
    return int(fields[1]), int(fields[19]), fields[0]


def _read_process_tree() -> _ProcessTree | None:
    """The tree now; None where there is no /proc/PID/stat (not Linux)."""
    return _TREE.read() if _PROC_STAT else None


def _round_tree() -> _ProcessTree | None:
    """The process tree this thread's ``scan_round`` has already read, if any."""
    if not getattr(_round, "active", False):
        return None
    tree: _ProcessTree | None = _round.tree
    return tree


def _process_tree() -> _ProcessTree | None:
    """The process tree: read afresh, or once per ``scan_round`` in this thread."""
    if not getattr(_round, "active", False):
        return _read_process_tree()
    if _round.tree is None:
        _round.tree = _read_process_tree()
    tree: _ProcessTree | None = _round.tree
    return tree


@contextlib.contextmanager
def scan_round() -> Iterator[None]:
    """Within this block, every command-line matcher of this thread shares one listing of
    the processes, and every process group one process tree: N services cost one walk of
    /proc, not N."""
    if getattr(_round, "active", False):  # nested: the outer round's listing serves
        yield
        return
    _round.active, _round.rows, _round.tree = True, None, None
    try:
        yield
    finally:
        _round.active, _round.rows, _round.tree = False, None, None


class CallableMatcher:
    """A PID from any callable (tests, embedding): a new PID counts as a restart."""

    follows_restarts = True

    def __init__(
        self,
        pid: Callable[[], int | None],
        description: str = "pid callable",
        *,
        children: Children = "none",
    ) -> None:
        self._pid = pid
        self._description = description
        self.children = _check_children(children)

    def find(self) -> int | None:
        return self._pid()

    def describe(self) -> str:
        return self._description


def matcher_for(spec: MatchSpec) -> Matcher:
    """The matcher a validated MatchSpec asks for (its ``children`` mode included)."""
    children = _check_children(spec.children)
    if spec.pid is not None:
        return PidMatcher(spec.pid, children=children)
    if spec.pidfile is not None:
        return PidfileMatcher(spec.pidfile, children=children)
    assert spec.cmdline is not None  # MatchSpec guarantees exactly one kind
    return CmdlineMatcher(spec.cmdline, children=children)


class Member(NamedTuple):
    """One process of a watched service: ``label`` is its member number (``"0"`` for the
    matched process), ``identity`` its (PID, start time). (A NamedTuple, not a dataclass:
    the sidecar does not import dataclasses, see soakwatch.records.)"""

    label: str
    identity: tuple[int, float]
    process: Any


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
    ``members()`` is the process group when the matcher's ``children`` is ``sum`` or ``each``
    (see the module's docstring). Thread-safe: the scrape and a background scanner may call it
    at once."""

    def __init__(
        self,
        matcher: Matcher,
        *,
        scan_interval_seconds: float = 5.0,
        process_factory: ProcessFactory = psutil.Process,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.matcher = matcher
        self.children: Children = _check_children(getattr(matcher, "children", "none"))
        self.scan_interval_seconds = scan_interval_seconds
        self.process_factory = process_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._process: Any = None
        self._identity: tuple[int, float] | None = None
        self._start_ticks: int | None = None  # of the process, as /proc/PID/stat has it
        self._seen_any = False
        self._last_scan: float | None = None
        self._alive_at = float("-inf")
        self.restarts = 0
        #: member number -> times a new descendant took it over from one that exited
        self.member_restarts: dict[str, int] = {}
        self._members_lock = threading.Lock()
        self._member_root: tuple[int, float] | None = None
        self._slots: dict[tuple[int, float], tuple[str, Any]] = {}  # identity -> (label, proc)
        self._free: set[int] = set()  # numbers whose member exited, taken again first
        self._next_slot = 1
        # descendant PID -> (start in clock ticks, identity, process): kept between looks
        self._known: dict[int, tuple[int, tuple[int, float], Any]] = {}
        self._last_members: tuple[float, list[Member]] | None = None

    @property
    def identity(self) -> tuple[int, float] | None:
        """(PID, start time) of the last process picked up, without looking again."""
        return self._identity

    def watched(self) -> tuple[tuple[int, float], ...]:
        """(PID, start time) of the live process and of the group's members as last seen,
        without looking again; empty while no process is watched."""
        if self._process is None or self._identity is None:
            return ()
        with self._members_lock:
            members = sorted(self._slots) if self.children != "none" else []
        return (self._identity, *members)

    def current(self, *, max_age_seconds: float = 0.0) -> Any:
        """The live process being watched, or None while none matches. With
        ``max_age_seconds``, a process found alive that recently is trusted without reading
        ``/proc`` again (the pool collector runs right after the process collector)."""
        with self._lock:
            if self._process is not None:
                now = self._clock()
                if max_age_seconds > 0 and now - self._alive_at <= max_age_seconds:
                    return self._process
                if self._still_running():
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

    def _still_running(self) -> bool:
        """Whether the watched process lives (not a zombie, its PID not reused): from the
        scan round's process tree when one was read, else from one read of its stat file
        (psutil's ``is_running`` and ``status`` read it twice and build a Process)."""
        if self._start_ticks is None:
            return _is_alive(self._process)
        tree = _round_tree()
        pid = self._process.pid
        entry = tree.stat.get(pid) if tree is not None and pid in tree.fresh else _read_stat(pid)
        if entry is None or entry[2] in _EXITED_STATES:
            return False
        return entry[1] == self._start_ticks

    def refresh(self) -> None:
        """Look for the process now if it is gone, whenever the last look was, and for the
        group's members (for a background scanner that runs every ``scan_interval_seconds``:
        a worker recycled twice between two scrapes is still counted)."""
        with self._lock:
            self._last_scan = None
        if self.children == "none":
            self.current()
        else:
            self.members()

    def members(self, *, max_age_seconds: float = 0.0) -> list[Member]:
        """The service's live processes, the matched one first (label ``"0"``), then its
        descendants by member number; only the matched one when ``children`` is ``none``;
        empty while none matches. The exporter's own process is never a member. With
        ``max_age_seconds``, a group listed that recently is returned as it was (the pool
        collector runs right after the process collector)."""
        if max_age_seconds > 0:
            with self._members_lock:
                last = self._last_members
            if last is not None and self._clock() - last[0] <= max_age_seconds:
                return list(last[1])
        root = self.current()
        identity = self._identity
        if root is None or identity is None:
            return []
        members = [Member(ROOT_MEMBER, identity, root)]
        if self.children == "none":
            return members
        with self._members_lock:
            found = self._descendants(root)
            if found is None:
                return members  # the root exited just now: the next look notices
            self._assign(identity, found)
            members += [
                Member(label, key, proc)
                for key, (label, proc) in sorted(self._slots.items(), key=lambda i: int(i[1][0]))
            ]
            self._last_members = (self._clock(), members)
        return list(members)

    def _descendants(self, root: Any) -> list[tuple[tuple[int, float], Any]] | None:
        """(identity, process) of every live descendant of ``root``; None if it exited.

        From one listing of /proc per scan round (shared by every service) instead of psutil's
        ``children(recursive=True)``, which reads every process's stat file once per service.
        A descendant seen before with the same start time keeps its process object; a new
        start time on a known PID (a reused PID) is a new process."""
        tree = _process_tree()
        if tree is None:
            return self._descendants_psutil(root)
        start_of_root = tree.stat.get(root.pid)
        if start_of_root is None:
            return None
        own = os.getpid()
        found: list[tuple[tuple[int, float], Any]] = []
        known: dict[int, tuple[int, tuple[int, float], Any]] = {}
        pending = [root.pid]
        while pending:
            parent = pending.pop()
            parent_start = tree.stat[parent][1]
            for pid in tree.children.get(parent, ()):
                _, start, state = tree.stat[pid]
                if start < parent_start:  # the parent's PID was reused: not its child
                    continue
                pending.append(pid)
                if pid == own or state in _EXITED_STATES:
                    continue
                seen = self._known.get(pid)
                if seen is None or seen[0] != start:
                    try:
                        proc = self.process_factory(pid)
                        seen = (start, (pid, float(proc.create_time())), proc)
                    except psutil.Error:
                        continue
                known[pid] = seen
                found.append((seen[1], seen[2]))
        self._known = known
        _TREE.watch([root.pid, *known])
        return found

    def _descendants_psutil(self, root: Any) -> list[tuple[tuple[int, float], Any]] | None:
        """``_descendants`` through psutil, where there is no /proc/PID/stat to read."""
        try:
            descendants = root.children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        except (psutil.AccessDenied, OSError) as exc:
            log.debug("cannot list the children of %s: %s", self.matcher.describe(), exc)
            descendants = []
        own = os.getpid()
        found: list[tuple[tuple[int, float], Any]] = []
        wrap = self.process_factory is not psutil.Process
        for child in descendants:
            if child.pid == own or not _is_alive(child):
                continue
            try:
                key = (child.pid, float(child.create_time()))
                proc = self.process_factory(child.pid) if wrap else child
            except psutil.Error:
                continue
            found.append((key, proc))
        return found

    def _assign(self, root: tuple[int, float], found: list[tuple[tuple[int, float], Any]]) -> None:
        """Give each new descendant a member number; free the numbers of those gone."""
        if root != self._member_root:  # a new service process: its workers start afresh
            self._member_root = root
            self._slots.clear()
            self._free.clear()
            self._next_slot = 1
        live = dict(found)
        for key in [k for k in self._slots if k not in live]:
            self._free.add(int(self._slots.pop(key)[0]))
        for key, proc in sorted(live.items(), key=lambda item: (item[0][1], item[0][0])):
            if key in self._slots:
                continue
            if self._free:
                number = min(self._free)
                self._free.discard(number)
                label = str(number)
                self.member_restarts[label] = self.member_restarts.get(label, 0) + 1
                log.info(
                    "member %s of %s replaced: pid %d (restart %d of that member)",
                    label,
                    self.matcher.describe(),
                    key[0],
                    self.member_restarts[label],
                )
            else:
                label = str(self._next_slot)
                self._next_slot += 1
                self.member_restarts.setdefault(label, 0)
            self._slots[key] = (label, proc)

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
        entry = _read_stat(pid) if _PROC_STAT else None
        self._start_ticks = None if entry is None else entry[1]
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


class ExitWatch:
    """Sleeps until a watched process exits, a timeout passes or ``wake()`` is called,
    without waking on a timer in between: one pidfd per watched process (Linux 5.3+), polled
    together with a pipe that ``wake()`` writes to. A pidfd refers to the process, not the
    PID, so a reused PID never looks alive. Where pidfds are missing (another OS, an older
    kernel, a seccomp filter) ``available`` is False and ``wait`` is a plain timed wait.

    Why: the sidecar's background scan used to look at every watched process every
    ``scan_interval`` (5 s) to count restarts between scrapes. That was most of its CPU
    between scrapes (up to 0.04 CPU-s a minute with 50 processes, more than four scrapes
    a minute cost); with pidfds an idle, healthy service costs nothing between scrapes and an
    exit is seen at once instead of up to 5 s later."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._poll.register(self._wake_read, select.POLLIN)
        self._fds: dict[tuple[int, float], int] = {}  # identity -> pidfd
        self._fired: set[int] = set()  # pidfds of exited processes, no longer polled
        self.available = hasattr(os, "pidfd_open")
        self.exited_unseen = False  # a process to watch was gone before its pidfd opened

    def track(self, identities: Iterable[tuple[int, float]]) -> None:
        """Watch exactly these processes ((PID, start time) as the trackers know them)."""
        wanted = set(identities)
        for identity in [i for i in self._fds if i not in wanted]:
            self._close(self._fds.pop(identity))
        if not self.available:
            return
        self.exited_unseen = False
        for identity in wanted - self._fds.keys():
            try:
                fd = os.pidfd_open(identity[0])
            except ProcessLookupError:
                self.exited_unseen = True  # gone already: the next look must come soon
                continue
            except OSError as exc:  # ENOSYS, EPERM: no pidfds here; poll on the timer
                log.info("no pidfd for pid %d (%s): restart scan on its timer", identity[0], exc)
                self.available = False
                self.close_processes()
                return
            self._fds[identity] = fd
            self._poll.register(fd, select.POLLIN)

    def wait(self, timeout_seconds: float) -> None:
        """Return when a watched process has exited, ``wake()`` was called, or after
        ``timeout_seconds``."""
        events = self._poll.poll(max(timeout_seconds, 0.0) * 1000.0)
        for fd, _ in events:
            if fd == self._wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 64)
            else:  # an exited process stays readable: poll it no more (``track`` closes it)
                self._poll.unregister(fd)
                self._fired.add(fd)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"x")

    def _close(self, fd: int) -> None:
        if fd in self._fired:
            self._fired.discard(fd)
        else:
            self._poll.unregister(fd)
        os.close(fd)

    def close_processes(self) -> None:
        for fd in self._fds.values():
            self._close(fd)
        self._fds.clear()

    def close(self) -> None:
        self.close_processes()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
