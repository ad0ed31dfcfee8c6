"""Process metrics of watched services, read from outside through psutil (any language).

One collector serves every service of the exporter, so that each metric family appears once
in the exposition. Each metric group is read on its own: a group the OS refuses
(``AccessDenied``) is left out and the others still publish; a process that vanishes during
the scrape reports ``soak_process_up 0``.

USS and PSS are costly (the kernel walks every page of the process: about 3 ms per 200 MB
resident on a 2-core VM), so they are read at most once per ``detail_interval_seconds`` and
the last reading of the same process is published in between. On Linux they come from
``/proc/PID/smaps_rollup`` (one line per total, about 1.5x cheaper than psutil's
``memory_full_info``, which parses the whole ``smaps``).

A service watched with ``children: sum`` is its process group (the matched process and its
descendants, ``ProcessTracker.members``) under the single-process names: USS and PSS are the
sums over the members (USS counts no shared page twice; PSS splits shared pages among the
sharers, so its sum is the group's share), RSS is the sum of the members' RSS (shared pages
counted once per member: larger than the memory used), threads and fds are summed, CPU is the
members' CPU plus the last reading of every member that exited (so the counter never goes
back when a worker is recycled), and the start time is the matched process's. With
``children: each`` every member gets its own series with a ``worker`` label.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import psutil

from soakwatch.exporter.config import DEFAULT_DETAIL_INTERVAL_SECONDS
from soakwatch.exporter.exposition import (
    REGISTRY,
    Collector,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from soakwatch.exporter.exposition import Registry as CollectorRegistry
from soakwatch.exporter.matching import (
    CallableMatcher,
    Member,
    ProcessFactory,
    ProcessTracker,
    scan_round,
)

__all__ = ["MemoryDetail", "ProcessCollector", "read_proc_stat", "read_smaps_rollup"]

log = logging.getLogger(__name__)

_ERRORS = (psutil.NoSuchProcess, psutil.AccessDenied)
Target = ProcessTracker | Callable[[], "int | None"]


class MemoryDetail(NamedTuple):
    """Memory that needs a page walk: USS (private to the process) and PSS (Linux only)."""

    unique_bytes: int
    proportional_bytes: int | None


def read_smaps_rollup(pid: int) -> MemoryDetail:
    """USS = Private_Clean + Private_Dirty, PSS = Pss, from ``/proc/PID/smaps_rollup``
    (Linux >= 4.14; the same sums psutil's ``memory_full_info`` makes from ``smaps``).

    Raises psutil.NoSuchProcess / AccessDenied like psutil does, FileNotFoundError when the
    kernel has no smaps_rollup."""
    path = f"/proc/{pid}/smaps_rollup"
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except PermissionError:
        raise psutil.AccessDenied(pid) from None
    except ProcessLookupError:
        raise psutil.NoSuchProcess(pid) from None
    except FileNotFoundError:
        if not psutil.pid_exists(pid):
            raise psutil.NoSuchProcess(pid) from None
        raise
    fields: dict[bytes, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(b":")
        value = rest.split()
        if value:
            fields[name] = int(value[0]) * 1024
    if b"Pss" not in fields:  # a kernel thread or an exiting process: nothing mapped
        raise psutil.NoSuchProcess(pid)
    unique = fields.get(b"Private_Clean", 0) + fields.get(b"Private_Dirty", 0)
    return MemoryDetail(unique_bytes=unique, proportional_bytes=fields[b"Pss"])


_PROC_STAT = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if _PROC_STAT else 100
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if _PROC_STAT else 4096


def _read_proc_file(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None


def read_proc_stat(pid: int) -> dict[str, Any] | None:
    """``rss``, ``vms`` (bytes), ``cpu`` ((user, system) seconds) and ``threads`` from
    ``/proc/PID/stat`` and ``statm`` (Linux): the counters psutil's ``memory_info`` (statm),
    ``cpu_times`` (stat) and ``num_threads`` (status) read, in two files instead of three.
    (RSS from statm, not stat: stat's is the kernel's approximate per-CPU sum, off by up to
    hundreds of KiB.) None when the process is gone or a zombie."""
    stat = _read_proc_file(f"/proc/{pid}/stat")
    statm = _read_proc_file(f"/proc/{pid}/statm")
    if stat is None or statm is None:
        return None
    # after "pid (comm) ", field N of proc(5) is at N - 3: utime 14, stime 15, num_threads 20
    fields = stat[stat.rfind(b")") + 2 :].split(b" ", 18)
    pages = statm.split(b" ", 2)  # size, resident
    if len(fields) < 18 or len(pages) < 2 or fields[0] in (b"Z", b"X"):
        return None
    return {
        "rss": int(pages[1]) * _PAGE_BYTES,
        "vms": int(pages[0]) * _PAGE_BYTES,
        "cpu": (int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS),
        "threads": int(fields[17]),
    }


def _smaps_rollup_available() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/smaps_rollup", "rb") as handle:
            handle.read(1)
    except OSError:
        return False
    return True


class ProcessCollector(Collector):
    """``soak_process_*`` for each watched service, by ``service`` label.

    ``targets`` maps a service name to a ProcessTracker or to a callable that returns the PID
    to watch (None: not running). ``process_factory`` (used for the callables) is
    ``psutil.Process`` or a class with its methods; what it lacks (``num_fds`` on Windows,
    ``num_handles`` on Unix) decides, once, which series exist. USS/PSS are re-read at most
    every ``detail_interval_seconds`` (0: on every scrape). ``worker`` puts a fixed ``worker``
    label on every series (in-process mode, one exporter per pre-fork worker). A tracker whose
    ``children`` is ``sum`` or ``each`` publishes its process group (see the module)."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        *,
        registry: CollectorRegistry | None = REGISTRY,
        process_factory: ProcessFactory = psutil.Process,
        detail_interval_seconds: float = DEFAULT_DETAIL_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        worker: str | None = None,
    ) -> None:
        self._trackers: dict[str, ProcessTracker] = {}
        for service, target in targets.items():
            if isinstance(target, ProcessTracker):
                self._trackers[service] = target
            else:
                self._trackers[service] = ProcessTracker(
                    CallableMatcher(target),
                    scan_interval_seconds=0.0,
                    process_factory=process_factory,
                )
        factories = {id(t.process_factory): t.process_factory for t in self._trackers.values()}
        factory = next(iter(factories.values()), process_factory)
        # The platform check, once: which count of open handles this OS (or factory) has.
        self._fd_method = (
            "num_fds"
            if hasattr(factory, "num_fds")
            else "num_handles"
            if hasattr(factory, "num_handles")
            else None
        )
        self._smaps_rollup = _smaps_rollup_available()
        self._proc_stat = _PROC_STAT
        self._full_info = hasattr(factory, "memory_full_info")
        self._detail_interval = detail_interval_seconds
        self._clock = clock
        self._worker = {} if worker is None else {"worker": worker}
        # The state kept between scrapes: the last costly memory reading per process
        # identity, reused until it is detail_interval_seconds old, and per summed service the
        # CPU book that keeps its counter from going back when a member exits.
        self._details: dict[tuple[int, float], tuple[float, MemoryDetail]] = {}
        self._details_lock = threading.Lock()
        self._cpu_books: dict[str, _CpuBook] = {}
        self._collect_lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    @property
    def trackers(self) -> Mapping[str, ProcessTracker]:
        return self._trackers

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    def _families(self) -> dict[str, Any]:
        # No fixed label names: a family holds {service} series of single or summed services
        # next to {service, worker} series of services watched with children: each.
        families: dict[str, Any] = {
            "up": GaugeMetricFamily(
                "soak_process_up", "1 while a process of the service is running, else 0."
            ),
            "restarts": CounterMetricFamily(
                "soak_process_restarts",
                "Times a new process of the service was picked up after the first one.",
            ),
            "rss": GaugeMetricFamily(
                "soak_process_resident_memory_bytes",
                "Resident set size (VmRSS) in bytes; of a process group, the sum over its "
                "members (shared pages counted once per member).",
            ),
            "vms": GaugeMetricFamily(
                "soak_process_virtual_memory_bytes",
                "Virtual memory size in bytes (of a process group, the sum).",
            ),
            "uss": GaugeMetricFamily(
                "soak_process_unique_memory_bytes",
                "Unique set size in bytes: memory freed if the process exited "
                "(of a process group, the sum).",
            ),
            "pss": GaugeMetricFamily(
                "soak_process_proportional_memory_bytes",
                "Proportional set size in bytes (Linux): shared pages split among sharers "
                "(of a process group, the sum).",
            ),
            "cpu": CounterMetricFamily(
                "soak_process_cpu_seconds",
                "CPU time spent by the process (of a process group: its members, including "
                "those that exited), by mode.",
            ),
            "threads": GaugeMetricFamily(
                "soak_process_threads", "Number of OS threads (of a process group, the sum)."
            ),
            "start": GaugeMetricFamily(
                "soak_process_start_time_seconds",
                "Start time of the process (of a process group, the matched process) since the "
                "Unix epoch in seconds.",
            ),
            "workers": GaugeMetricFamily(
                "soak_process_workers",
                "Descendants of the matched process now running (services watched with "
                "children: sum or each).",
            ),
            "worker_restarts": CounterMetricFamily(
                "soak_process_worker_restarts",
                "Times a new descendant took over the member number of one that exited (a "
                "worker recycled by its server): restarts of that member, not of the service.",
            ),
        }
        if self._fd_method == "num_fds":
            families["fds"] = GaugeMetricFamily(
                "soak_process_open_fds",
                "Number of open file descriptors (of a process group, the sum).",
            )
        elif self._fd_method == "num_handles":
            families["fds"] = GaugeMetricFamily(
                "soak_process_handles", "Number of open handles (of a process group, the sum)."
            )
        return families

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        seen: set[tuple[int, float]] = set()
        # one scrape at a time: psutil's oneshot cache is per process object, not per thread
        with self._collect_lock, scan_round():
            for service, tracker in self._trackers.items():
                seen.update(self._collect_service(service, tracker, families))
            with self._details_lock:
                for key in [k for k in self._details if k not in seen]:
                    del self._details[key]
        for family in families.values():
            if family.samples:
                yield family

    def _collect_service(
        self, service: str, tracker: ProcessTracker, fam: dict[str, Any]
    ) -> set[tuple[int, float]]:
        """Add the service's samples; return the identities of the processes it read."""
        labels = {"service": service, **self._worker}
        members = tracker.members()  # first: it may pick up a restarted process
        _put(fam["restarts"], labels, tracker.restarts)
        if tracker.children != "none":
            _put(fam["workers"], labels, max(0, len(members) - 1))
            if tracker.children == "sum":
                _put(fam["worker_restarts"], labels, sum(tracker.member_restarts.values()))
            else:
                for label, count in sorted(tracker.member_restarts.items(), key=_by_number):
                    _put(fam["worker_restarts"], {**labels, "worker": label}, count)
        if not members:
            _put(fam["up"], labels, 0)
            return set()
        readings = {m.label: self._read(m) for m in members}
        root = readings[members[0].label]
        _put(fam["up"], labels, 1 if root is not None else 0)
        if root is None:  # the matched process vanished during the scrape
            self._cpu_books.pop(service, None)
            return set()
        live = {m.label: m for m in members if readings[m.label] is not None}
        if tracker.children == "each":
            for label in live:
                reading = readings[label]
                assert reading is not None
                self._publish(fam, {**labels, "worker": label}, reading)
        elif tracker.children == "sum":
            group = [r for r in readings.values() if r is not None]
            total = _sum_readings(group)
            total["start"] = root.get("start")
            book = self._cpu_books.get(service)
            if book is None or book.root != members[0].identity:
                book = self._cpu_books[service] = _CpuBook(members[0].identity)
            total["cpu"] = book.update(
                {m.identity: r for m in members if (r := readings[m.label]) is not None}
            )
            self._publish(fam, labels, total)
        else:
            self._publish(fam, labels, root)
        return {m.identity for m in live.values()}

    def _publish(self, fam: dict[str, Any], labels: dict[str, str], reading: _Reading) -> None:
        for key in ("rss", "vms", "uss", "pss", "threads", "fds", "start"):
            value = reading.get(key)
            if value is not None and key in fam:
                _put(fam[key], labels, value)
        cpu = reading.get("cpu")
        if cpu is not None:
            user, system = cpu
            _put(fam["cpu"], {**labels, "mode": "user"}, user)
            _put(fam["cpu"], {**labels, "mode": "system"}, system)

    def _read(self, member: Member) -> _Reading | None:
        """One process's readings by group; None when it vanished. A group the OS refuses
        (AccessDenied) is left out of the reading."""
        process = member.process
        if self._proc_stat and type(process) is psutil.Process:
            return self._read_proc(member)
        reading: _Reading = {}

        def memory() -> None:
            info = process.memory_info()
            reading["rss"], reading["vms"] = info.rss, info.vms

        def cpu() -> None:
            times = process.cpu_times()
            reading["cpu"] = (float(times.user), float(times.system))

        def threads() -> None:
            reading["threads"] = process.num_threads()

        def fds() -> None:
            if self._fd_method is not None:
                reading["fds"] = getattr(process, self._fd_method)()

        def start() -> None:
            reading["start"] = member.identity[1]  # see _read_proc

        def detail() -> None:
            found = self._memory_detail(process, member.identity)
            if found is not None:
                reading["uss"] = found.unique_bytes
                reading["pss"] = found.proportional_bytes

        try:
            with process.oneshot():
                for read in (memory, cpu, threads, fds, start, detail):
                    with contextlib.suppress(psutil.AccessDenied):
                        read()
        except psutil.NoSuchProcess:  # includes ZombieProcess
            return None
        return reading

    def _read_proc(self, member: Member) -> _Reading | None:
        """``_read`` of a psutil.Process on Linux, from the files psutil would read
        (/proc/PID/stat, statm, fd/, smaps_rollup) without its per-call wrapping: RSS, VMS,
        CPU and threads come from two files where psutil reads three (stat, statm, status)."""
        pid, start = member.identity
        reading = read_proc_stat(pid)
        if reading is None:
            return None
        reading["start"] = start  # read at pick-up: create_time() reads /proc/stat again
        if self._fd_method == "num_fds":
            try:
                reading["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
            except PermissionError:  # another user's process: the group is left out
                pass
            except FileNotFoundError:
                return None
        try:
            found = self._memory_detail(member.process, member.identity)
        except psutil.AccessDenied:
            found = None
        except psutil.NoSuchProcess:
            return None
        if found is not None:
            reading["uss"] = found.unique_bytes
            reading["pss"] = found.proportional_bytes
        return reading

    def _memory_detail(self, process: Any, identity: tuple[int, float]) -> MemoryDetail | None:
        now = self._clock()
        with self._details_lock:
            cached = self._details.get(identity)
            if cached is not None and now - cached[0] < self._detail_interval:
                return cached[1]
        reading: MemoryDetail | None = None
        if self._smaps_rollup:
            try:
                reading = read_smaps_rollup(process.pid)
            except FileNotFoundError:  # /proc without smaps_rollup (Linux < 4.14)
                self._smaps_rollup = False
        if reading is None and self._full_info:
            full = process.memory_full_info()
            pss = getattr(full, "pss", None)
            reading = MemoryDetail(unique_bytes=full.uss, proportional_bytes=pss)
        if reading is not None:
            with self._details_lock:
                self._details[identity] = (now, reading)
        return reading


# One process's readings: "rss", "vms", "uss", "pss", "threads", "fds", "start" (numbers or
# None) and "cpu" ((user, system) seconds); a key the OS refused is absent.
_Reading = dict[str, Any]

_SUMMED = ("rss", "vms", "uss", "pss", "threads", "fds")


def _sum_readings(readings: list[_Reading]) -> _Reading:
    """The group's sums: a key only when every member has it (a partial sum would read as a
    drop of the service's memory)."""
    total: _Reading = {}
    for key in _SUMMED:
        values = [r.get(key) for r in readings]
        if values and all(v is not None for v in values):
            total[key] = sum(values)
    return total


class _CpuBook:
    """The CPU counter of a summed group: the latest reading of each live member plus the
    last reading of every member that exited, so the sum only ever grows while the matched
    process lives. (CPU a member spent after its last reading, or a member that lived
    between two scrapes, is not counted.)"""

    def __init__(self, root: tuple[int, float]) -> None:
        self.root = root
        self._last: dict[tuple[int, float], tuple[float, float]] = {}
        self._departed = (0.0, 0.0)

    def update(self, readings: Mapping[tuple[int, float], _Reading]) -> tuple[float, float]:
        for identity in [k for k in self._last if k not in readings]:
            user, system = self._last.pop(identity)
            self._departed = (self._departed[0] + user, self._departed[1] + system)
        for identity, reading in readings.items():
            cpu = reading.get("cpu")
            if cpu is not None:
                self._last[identity] = cpu
        user = self._departed[0] + sum(u for u, _ in self._last.values())
        system = self._departed[1] + sum(s for _, s in self._last.values())
        return user, system


def _by_number(item: tuple[str, int]) -> int:
    return int(item[0])


def _put(family: Metric, labels: dict[str, str], value: float) -> None:
    """One sample (``_total`` for a counter) with these labels."""
    suffix = "_total" if family.type == "counter" else ""
    family.add_sample(family.name + suffix, dict(labels), value)
