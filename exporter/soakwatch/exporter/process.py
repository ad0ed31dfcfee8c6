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
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from soakwatch.exporter.config import DEFAULT_DETAIL_INTERVAL_SECONDS
from soakwatch.exporter.matching import (
    CallableMatcher,
    ProcessFactory,
    ProcessTracker,
    scan_round,
)

__all__ = ["MemoryDetail", "ProcessCollector", "read_smaps_rollup"]

log = logging.getLogger(__name__)

_ERRORS = (psutil.NoSuchProcess, psutil.AccessDenied)
Target = ProcessTracker | Callable[[], "int | None"]


@dataclass(frozen=True)
class MemoryDetail:
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
    every ``detail_interval_seconds`` (0: on every scrape)."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        *,
        registry: CollectorRegistry | None = REGISTRY,
        process_factory: ProcessFactory = psutil.Process,
        detail_interval_seconds: float = DEFAULT_DETAIL_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
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
        self._full_info = hasattr(factory, "memory_full_info")
        self._detail_interval = detail_interval_seconds
        self._clock = clock
        # The one piece of state kept between scrapes: the last costly memory reading per
        # process identity, reused until it is detail_interval_seconds old.
        self._details: dict[tuple[int, float], tuple[float, MemoryDetail]] = {}
        self._details_lock = threading.Lock()
        self._collect_lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    @property
    def trackers(self) -> Mapping[str, ProcessTracker]:
        return self._trackers

    def describe(self) -> Iterable[Metric]:
        return list(self._families().values())

    def _families(self) -> dict[str, Any]:
        labels = ["service"]
        families: dict[str, Any] = {
            "up": GaugeMetricFamily(
                "soak_process_up",
                "1 while a process of the service is running, else 0.",
                labels=labels,
            ),
            "restarts": CounterMetricFamily(
                "soak_process_restarts",
                "Times a new process of the service was picked up after the first one.",
                labels=labels,
            ),
            "rss": GaugeMetricFamily(
                "soak_process_resident_memory_bytes",
                "Resident set size (VmRSS) in bytes.",
                labels=labels,
            ),
            "vms": GaugeMetricFamily(
                "soak_process_virtual_memory_bytes", "Virtual memory size in bytes.", labels=labels
            ),
            "uss": GaugeMetricFamily(
                "soak_process_unique_memory_bytes",
                "Unique set size in bytes: memory freed if the process exited.",
                labels=labels,
            ),
            "pss": GaugeMetricFamily(
                "soak_process_proportional_memory_bytes",
                "Proportional set size in bytes (Linux): shared pages split among sharers.",
                labels=labels,
            ),
            "cpu": CounterMetricFamily(
                "soak_process_cpu_seconds",
                "CPU time spent by the process, by mode.",
                labels=[*labels, "mode"],
            ),
            "threads": GaugeMetricFamily(
                "soak_process_threads", "Number of OS threads.", labels=labels
            ),
            "start": GaugeMetricFamily(
                "soak_process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                labels=labels,
            ),
        }
        if self._fd_method == "num_fds":
            families["fds"] = GaugeMetricFamily(
                "soak_process_open_fds", "Number of open file descriptors.", labels=labels
            )
        elif self._fd_method == "num_handles":
            families["fds"] = GaugeMetricFamily(
                "soak_process_handles", "Number of open handles.", labels=labels
            )
        return families

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        # one scrape at a time: psutil's oneshot cache is per process object, not per thread
        with self._collect_lock, scan_round():
            for service, tracker in self._trackers.items():
                self._collect_service(service, tracker, families)
        for family in families.values():
            if family.samples:
                yield family

    def _collect_service(self, service: str, tracker: ProcessTracker, fam: dict[str, Any]) -> None:
        labels = [service]
        process = tracker.current()  # first: it may pick up a restarted process
        fam["restarts"].add_metric(labels, tracker.restarts)
        if process is None:
            fam["up"].add_metric(labels, 0)
            return
        alive = True

        def group(read: Callable[[], None]) -> None:
            nonlocal alive
            try:
                read()
            except psutil.NoSuchProcess:  # includes ZombieProcess
                alive = False
            except psutil.AccessDenied:
                pass

        def memory() -> None:
            info = process.memory_info()
            fam["rss"].add_metric(labels, info.rss)
            fam["vms"].add_metric(labels, info.vms)

        def cpu() -> None:
            times = process.cpu_times()
            fam["cpu"].add_metric([service, "user"], times.user)
            fam["cpu"].add_metric([service, "system"], times.system)

        def threads() -> None:
            fam["threads"].add_metric(labels, process.num_threads())

        def fds() -> None:
            if self._fd_method is not None:
                fam["fds"].add_metric(labels, getattr(process, self._fd_method)())

        def start() -> None:
            fam["start"].add_metric(labels, process.create_time())

        def detail() -> None:
            reading = self._memory_detail(process)
            if reading is not None:
                fam["uss"].add_metric(labels, reading.unique_bytes)
                if reading.proportional_bytes is not None:
                    fam["pss"].add_metric(labels, reading.proportional_bytes)

        with process.oneshot():
            for read in (memory, cpu, threads, fds, start, detail):
                if not alive:
                    break
                group(read)
        fam["up"].add_metric(labels, 1 if alive else 0)

    def _memory_detail(self, process: Any) -> MemoryDetail | None:
        identity = (process.pid, process.create_time())
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
                live = {t.identity for t in self._trackers.values()}
                for key in [k for k in self._details if k not in live]:
                    del self._details[key]
                self._details[identity] = (now, reading)
        return reading
