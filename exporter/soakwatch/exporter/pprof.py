"""Where a Go service's memory grows: its own ``net/http/pprof`` heap profile, read at intervals.

A sidecar service with ``pprof: http://127.0.0.1:6060`` (or the full ``.../debug/pprof/heap``
URL) is read every ``interval`` (15 s by default) as ``/debug/pprof/heap?debug=1``: the text form,
with in-use objects and bytes per stack and symbolized frames, so no protobuf is needed::

    heap profile: 8: 393728 [9: 393872] @ heap/1048576
    6: 393216 [6: 393216] @ 0x670b9e 0x670b8b ...
    #	0x670b9d	main.keep+0x3d		/src/app/main.go:24
    #	0x670b8a	main.leak+0x2a		/src/app/main.go:32
    ...

The counts are the runtime's samples (one per ``MemProfileRate`` bytes allocated on average,
half the number after ``heap/``); each record is unsampled as ``go tool pprof`` does, by
``1 / (1 - exp(-size / rate))`` with ``size`` its mean object size. The profile is as of the
last completed garbage collection. Each stack is charged to its innermost frame in the
service's own packages (``packages``, by default ``main``): the site is that frame's
``FILE:LINE`` (relative to ``root`` when given, else the file's base name, so no build path
leaks into a label) and the function its Go name. In-use bytes are summed per site and the top
``top`` sites by growth since the first reading are served as
``soak_allocation_site_bytes{service, site, function}``, the same series as the Python sampler,
so the analyzer takes the same robust slope of each.

A target that does not answer, or answers without a heap profile, is a warning in the log
(once per change) and ``soak_allocation_attribution_up 0``; the exporter carries on.
"""

from __future__ import annotations

import http.client
import logging
import math
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from soakwatch.configfile import Section
from soakwatch.exporter.attribution import DEFAULT_TOP, KEEP_FACTOR, site_families
from soakwatch.exporter.exposition import Collector, Metric, merge_families
from soakwatch.exporter.exposition import Registry as CollectorRegistry

__all__ = [
    "DEFAULT_PPROF_INTERVAL_SECONDS",
    "HeapRecord",
    "PprofCollector",
    "PprofSpec",
    "heap_url",
    "parse_heap_profile",
    "sites_of",
]

log = logging.getLogger(__name__)

DEFAULT_PPROF_INTERVAL_SECONDS = 15.0
FETCH_TIMEOUT_SECONDS = 10.0
MAX_PROFILE_BYTES = 64 << 20

_HEADER = re.compile(r"^heap profile: \d+: \d+ \[\d+: \d+\] @ heap/(\d+)")
_RECORD = re.compile(r"^(\d+): (\d+) \[(\d+): (\d+)\] @")
_FRAME = re.compile(r"^#\t0x[0-9a-f]+\t(\S+?)(?:\+0x[0-9a-f]+)?\t+(.+):(\d+)\s*$")


def heap_url(url: str) -> str:
    """The text heap profile of a pprof target: a base URL gets ``/debug/pprof/heap``, and the
    query is ``debug=1``. Raises ValueError for a URL that is not http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL of a Go service's pprof, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/heap"):
        path = f"{path}/debug/pprof/heap"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "debug=1", ""))


@dataclass(frozen=True)
class PprofSpec:
    """A Go service's heap profile to read: ``pprof: URL`` or ``pprof: {url, interval, top,
    packages, root}`` on a sidecar service."""

    url: str
    interval_seconds: float = DEFAULT_PPROF_INTERVAL_SECONDS
    top: int = DEFAULT_TOP
    packages: tuple[str, ...] = ("main",)
    root: str | None = None

    @classmethod
    def from_value(cls, section: Section, key: str) -> PprofSpec:
        raw = section.raw(key)
        if isinstance(raw, str):
            return cls(url=section.convert(key, heap_url))
        inner = section.section(key)
        url = inner.convert("url", heap_url)
        interval = inner.duration("interval", DEFAULT_PPROF_INTERVAL_SECONDS, minimum=1.0)
        top = inner.number("top", DEFAULT_TOP, minimum=1, maximum=100, integer=True)
        packages = inner.string_list("packages", ("main",))
        root = inner.string("root", None)
        inner.finish()
        return cls(url=url, interval_seconds=interval, top=int(top), packages=packages, root=root)


@dataclass(frozen=True)
class HeapRecord:
    """One stack of the profile: unsampled in-use bytes and its frames, innermost first, as
    (function, file, line)."""

    inuse_bytes: float
    frames: tuple[tuple[str, str, int], ...]


def _unsample(objects: int, size: int, rate: int) -> float:
    if objects == 0 or size == 0 or rate <= 0:
        return float(size)
    mean = size / objects
    return size / (1.0 - math.exp(-mean / rate))


def parse_heap_profile(text: str) -> list[HeapRecord]:
    """The records of a ``?debug=1`` heap profile. Raises ValueError when ``text`` is not one
    (no ``heap profile:`` header)."""
    lines = text.splitlines()
    header = _HEADER.match(lines[0]) if lines else None
    if header is None:
        first = lines[0][:80] if lines else ""
        raise ValueError(f"not a Go heap profile (first line {first!r})")
    rate = int(header.group(1)) // 2
    records: list[HeapRecord] = []
    current: tuple[int, int] | None = None
    frames: list[tuple[str, str, int]] = []

    def close() -> None:
        if current is not None:
            records.append(HeapRecord(_unsample(*current, rate), tuple(frames)))

    for line in lines[1:]:
        if line.startswith("# runtime.MemStats"):
            break
        record = _RECORD.match(line)
        if record:
            close()
            current, frames = (int(record.group(1)), int(record.group(2))), []
            continue
        frame = _FRAME.match(line)
        if frame and current is not None:
            frames.append((frame.group(1), frame.group(2), int(frame.group(3))))
    close()
    return records


def _in_packages(function: str, packages: tuple[str, ...]) -> bool:
    # "main.keep", "main.(*Cache).Put", "example.com/app/cache.(*Cache).Put"
    return any(function.startswith(package + ".") for package in packages)


def _site_path(path: str, root: str | None) -> str | None:
    if root is None:
        return PurePosixPath(path).name
    base = root.rstrip("/") + "/"
    return path[len(base) :] if path.startswith(base) else None


def sites_of(
    records: Iterable[HeapRecord], packages: tuple[str, ...] = ("main",), root: str | None = None
) -> dict[tuple[str, str], float]:
    """In-use bytes per (site, function): each record at its innermost frame in ``packages``
    (records without one are left out)."""
    out: dict[tuple[str, str], float] = {}
    for record in records:
        for function, path, line in record.frames:
            if _in_packages(function, packages):
                site = _site_path(path, root)
                if site is not None:
                    key = (f"{site}:{line}", function)
                    out[key] = out.get(key, 0.0) + record.inuse_bytes
                break
    return out


class PprofCollector(Collector):
    """Reads each Go service's heap profile every interval from a daemon thread and serves the
    top sites per service (see the module)."""

    def __init__(
        self, targets: dict[str, PprofSpec], *, registry: CollectorRegistry | None = None
    ) -> None:
        self.targets = dict(targets)
        self._lock = threading.Lock()
        self._latest: dict[str, dict[tuple[str, str], float]] = {s: {} for s in self.targets}
        self._first: dict[str, dict[tuple[str, str], float]] = {s: {} for s in self.targets}
        self._up: dict[str, bool] = dict.fromkeys(self.targets, False)
        self._problem: dict[str, str | None] = dict.fromkeys(self.targets)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        if registry is not None:
            registry.register(self)

    def start(self) -> None:
        for service in self.targets:
            thread = threading.Thread(
                target=self._loop, args=(service,), name=f"soak-pprof-{service}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=FETCH_TIMEOUT_SECONDS + 1)
        self._threads = []

    def _loop(self, service: str) -> None:
        spec = self.targets[service]
        while True:
            self.read(service)
            if self._stopping.wait(spec.interval_seconds):
                return

    def read(self, service: str) -> bool:
        """One reading of ``service``'s profile; False (and a warning) when it fails."""
        spec = self.targets[service]
        try:
            sites = sites_of(parse_heap_profile(_fetch(spec.url)), spec.packages, spec.root)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            if self._problem[service] != problem:
                log.warning(
                    "allocation attribution for %s: no Go heap profile at %s (%s); is "
                    "net/http/pprof imported and served there?",
                    service,
                    spec.url,
                    problem,
                )
            with self._lock:
                self._problem[service], self._up[service] = problem, False
            return False
        with self._lock:
            if self._problem[service] is not None:
                log.warning("allocation attribution for %s: heap profile readable again", service)
            self._problem[service], self._up[service] = None, True
            first = self._first[service]
            for key, value in sites.items():
                first.setdefault(key, value)
            self._latest[service] = sites
            self._bound(service, spec.top)
        return True

    def _bound(self, service: str, top: int) -> None:
        first, latest = self._first[service], self._latest[service]
        if len(first) > KEEP_FACTOR * top:
            ranked = sorted(first, key=lambda k: latest.get(k, 0.0) - first[k], reverse=True)
            self._first[service] = {k: first[k] for k in ranked[: KEEP_FACTOR * top]}

    def top_sites(self, service: str) -> list[tuple[str, str, float]]:
        """(site, function, in-use bytes) of the served sites, by growth since the first
        reading, at most ``top``."""
        spec = self.targets[service]
        with self._lock:
            first, latest = self._first[service], self._latest[service]
            ranked = sorted(
                (k for k in latest if k in first),
                key=lambda k: latest[k] - first[k],
                reverse=True,
            )
            return [(s, f, latest[(s, f)]) for s, f in ranked[: spec.top]]

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from merge_families(
            family for service in self.targets for family in self._families(service)
        )

    def _families(self, service: str) -> Iterable[Metric]:
        with self._lock:
            up = self._up[service]
        return site_families(service, self.top_sites(service), up)


def _fetch(url: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    response: Any
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        body: bytes = response.read(MAX_PROFILE_BYTES + 1)
    if len(body) > MAX_PROFILE_BYTES:
        raise ValueError(f"the heap profile is larger than {MAX_PROFILE_BYTES} bytes")
    return body.decode("utf-8")
