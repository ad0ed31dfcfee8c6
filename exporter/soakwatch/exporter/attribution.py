"""Where a Python service's memory grows: allocation sites sampled with ``tracemalloc``.

``start_in_process(..., attribution=True)`` runs an :class:`AllocationSampler`. Tracing every
allocation all the time costs several times the CPU of an allocation-heavy loop, so the sampler
traces in short *windows* spread over the run (``window_seconds`` every ``interval_seconds``,
by default 1 s a minute) and looks at what the window's allocations left alive:

- at the middle and at the end of each window it takes a snapshot, which holds only the blocks
  allocated since the window opened and still alive (``tracemalloc.stop()`` forgets the rest);
- per site, ``S(end) - S(middle)`` is what the second half of the window added and kept. Blocks
  a request holds for a moment are in flight at both instants in equal measure and cancel; the
  bytes a leak keeps do not: they are the leak's rate times half the window. That rate, times the
  time since the previous window, is added to the site's running total.

The total per site is served as ``soak_allocation_site_bytes{service, site, function}``: an
estimate of the bytes the site kept since the exporter started. Its robust slope over the run
(the analyzer's, as for memory itself) is the site's growth. Only the top ``top`` sites by
that total are served (10 by default) and at most ``KEEP_FACTOR * top`` are remembered, so the
cardinality and the memory stay bounded over days; no snapshot is kept past its window.

A site is ``FILE:LINE`` with FILE relative to the service's ``root`` (by default the folder of
the ``__main__`` module, else the working directory): for each block the traceback is walked
from the allocating frame outwards and the first frame in the service's own code names the site
(the standard library, site-packages and soakwatch are skipped), so a label never carries a
path outside ``root``. An allocation without such a frame in its ``frames`` innermost frames is
not attributed. ``function`` is the enclosing function (``Class.method``) read from the source.

``soak_allocation_attribution_up{service}`` is 1 while sampling works, 0 when it cannot
(tracemalloc missing, already traced by someone else, or a failing window); the reason is
logged once as a warning and the analyzer notes it in the verdict.
"""

from __future__ import annotations

import ast
import functools
import importlib
import logging
import os
import sys
import sysconfig
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the exporter's own families (they register in prometheus-client registries too), so a
# sidecar reading a Go service's pprof through site_families never imports prometheus-client
from soakwatch.exporter.exposition import Collector, GaugeMetricFamily, Metric
from soakwatch.exporter.exposition import Registry as CollectorRegistry

__all__ = [
    "DEFAULT_FRAMES",
    "DEFAULT_INTERVAL_SECONDS",
    "DEFAULT_TOP",
    "DEFAULT_WINDOW_SECONDS",
    "SITE_METRIC",
    "UP_METRIC",
    "AllocationSampler",
    "AttributionConfig",
    "SiteNamer",
    "site_families",
]

log = logging.getLogger(__name__)

SITE_METRIC = "soak_allocation_site_bytes"
UP_METRIC = "soak_allocation_attribution_up"
DEFAULT_FRAMES = 3
DEFAULT_TOP = 10
DEFAULT_WINDOW_SECONDS = 1.0
DEFAULT_INTERVAL_SECONDS = 60.0
# sites remembered beyond the served top N, so one that climbs slowly is not forgotten
KEEP_FACTOR = 4
# soakwatch's own code: every portion of the namespace package (exporter/soakwatch,
# run/soakwatch, src/soakwatch, ... in a checkout; one folder in site-packages)
_OWN_DIRS = tuple(
    sorted({str(Path(p).resolve()) for p in importlib.import_module("soakwatch").__path__})
)
_THIS_FILE = __file__  # soakwatch's own code is never a site


@dataclass(frozen=True)
class AttributionConfig:
    """How ``start_in_process(attribution=...)`` samples. ``root``: the service's own code
    (sites are paths relative to it); None: the folder of ``__main__``, else the working
    directory. ``frames``: the traceback depth tracemalloc records (the cost grows with it)."""

    frames: int = DEFAULT_FRAMES
    top: int = DEFAULT_TOP
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    root: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.frames <= 100:
            raise ValueError(f"attribution frames must be 1..100, got {self.frames!r}")
        if self.top < 1:
            raise ValueError(f"attribution top must be >= 1, got {self.top!r}")
        if not 0 < self.window_seconds < self.interval_seconds:
            raise ValueError(
                "attribution needs 0 < window_seconds < interval_seconds, got "
                f"{self.window_seconds!r} and {self.interval_seconds!r}"
            )


def default_root() -> Path:
    """The folder of the ``__main__`` module's file, else the working directory."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file:
        return Path(main_file).resolve().parent
    return Path.cwd().resolve()


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {
        str(Path(p).resolve())
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := paths.get(key))
    }
    return (*sorted(found), *_OWN_DIRS)


class SiteNamer:
    """Turns a frame's absolute file name into a site path relative to ``root``, or None when
    the frame is not the service's own code. Answers are cached (bounded by the files seen)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._root_text = str(self.root) + os.sep
        # library folders that hold the root itself (a service inside site-packages, or the
        # demo's sample service inside soakwatch) do not hide the service's own files
        self._libraries = tuple(
            d + os.sep for d in _library_dirs() if not self._root_text.startswith(d + os.sep)
        )
        self._cache: dict[str, str | None] = {}

    def relative(self, filename: str) -> str | None:
        try:
            return self._cache[filename]
        except KeyError:
            pass
        name: str | None = None
        if not filename.startswith("<"):
            full = os.path.realpath(filename)
            own = full.startswith(self._root_text)
            library = any(full.startswith(d) for d in self._libraries) or any(
                part in ("site-packages", "dist-packages")
                for part in Path(full).parts[len(self.root.parts) :]
            )
            if own and not library:
                name = Path(os.path.relpath(full, self.root)).as_posix()
        if len(self._cache) < 10_000:
            self._cache[filename] = name
        return name


@functools.lru_cache(maxsize=256)
def _functions_of(filename: str) -> tuple[tuple[int, int, str], ...]:
    """(first line, last line, qualified name) of every function in a source file."""
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError, ValueError):
        return ()
    found: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return tuple(found)


def function_at(filename: str, lineno: int) -> str:
    """The innermost function enclosing ``lineno`` (``Class.method``), or ``<module>``."""
    best = ("<module>", -1)
    for first, last, name in _functions_of(filename):
        if first <= lineno <= last and first > best[1]:
            best = (name, first)
    return best[0]


def _stacks(snapshot: Any) -> Iterator[tuple[tuple[tuple[str, int], ...], int]]:
    """(frames innermost first as (file, line), size) of every block of a snapshot. CPython
    keeps them as plain tuples in ``traces._traces``: read those (tens of thousands per window,
    and a ``Trace`` object each costs ten times more); otherwise the public objects."""
    raw = getattr(snapshot.traces, "_traces", None)
    if isinstance(raw, list) and (not raw or (isinstance(raw[0], tuple) and len(raw[0]) >= 3)):
        for entry in raw:
            yield entry[2], entry[1]
        return
    for trace in snapshot.traces:
        yield tuple((f.filename, f.lineno) for f in reversed(trace.traceback)), trace.size


def site_families(
    service: str, sites: Iterable[tuple[str, str, float]], up: bool, worker: str | None = None
) -> Iterator[Metric]:
    """The two families every attribution source serves (Python and Go alike)."""
    keys = ["service", "site", "function"] + (["worker"] if worker is not None else [])
    extra = [worker] if worker is not None else []
    family = GaugeMetricFamily(
        SITE_METRIC,
        "Bytes kept by an allocation site (top sites by growth); its slope is the site's growth",
        labels=keys,
    )
    for site, function, value in sites:
        family.add_metric([service, site, function, *extra], value)
    yield family
    state = GaugeMetricFamily(
        UP_METRIC,
        "1 while allocation sites are sampled, 0 when they cannot be (see the exporter log)",
        labels=["service", *(["worker"] if worker is not None else [])],
    )
    state.add_metric([service, *extra], 1.0 if up else 0.0)
    yield state


class AllocationSampler(Collector):
    """Samples allocation sites in windows from a daemon thread and serves the top sites (see
    the module). ``start()`` / ``stop()``; ``window()`` runs one window at once (tests)."""

    def __init__(
        self,
        service: str,
        config: AttributionConfig | None = None,
        *,
        registry: CollectorRegistry | None = None,
        worker: str | None = None,
    ) -> None:
        self.service = service
        self.config = config or AttributionConfig()
        self.worker = worker
        root = self.config.root if self.config.root is not None else default_root()
        self.namer = SiteNamer(root)
        #: (site, function) -> estimated bytes kept since start
        self.totals: dict[tuple[str, str], float] = {}
        self.windows = 0
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_close = time.monotonic()
        self._tracemalloc: Any = None
        try:
            import tracemalloc
        except ImportError:
            self._unavailable("this interpreter has no tracemalloc module")
        else:
            self._tracemalloc = tracemalloc
        if registry is not None:
            registry.register(self)

    @property
    def available(self) -> bool:
        return self.problem is None

    def _unavailable(self, reason: str) -> None:
        if self.problem is None:
            log.warning("allocation attribution for %s is off: %s", self.service, reason)
        self.problem = reason

    def start(self) -> None:
        if self._tracemalloc is None or self._thread is not None:
            return
        if self._tracemalloc.is_tracing():
            self._unavailable(
                "tracemalloc is already tracing (PYTHONTRACEMALLOC or the service itself); "
                "soakwatch does not take it over"
            )
            return
        self._last_close = time.monotonic()
        self._thread = threading.Thread(
            target=self._loop, name="soak-allocation-sampler", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.window_seconds + 5)
            self._thread = None

    def _loop(self) -> None:
        # the first window opens a short while after the start, then every interval
        first = min(self.config.interval_seconds / 2, 5.0)
        wait = first
        while not self._stopping.wait(wait):
            began = time.monotonic()
            try:
                self.window()
            except Exception as exc:  # sampling never takes the service down
                self._unavailable(f"a sampling window failed: {type(exc).__name__}: {exc}")
                return
            if self.problem is not None:
                return
            wait = max(0.0, self.config.interval_seconds - (time.monotonic() - began))

    def window(self) -> None:
        """Trace one window and add what its second half kept to the site totals."""
        tm = self._tracemalloc
        if tm is None or self.problem is not None:
            return
        if tm.is_tracing():
            self._unavailable("tracemalloc was started by someone else")
            return
        half = self.config.window_seconds / 2
        try:
            tm.start(self.config.frames)
        except Exception as exc:  # e.g. an interpreter whose tracemalloc cannot trace
            self._unavailable(f"tracemalloc cannot start: {type(exc).__name__}: {exc}")
            return
        try:
            if self._stopping.wait(half):
                return
            # the snapshots are taken while tracing and read after it stopped: reading them
            # while tracing would trace the reading, and slow the service down with it
            first = tm.take_snapshot()
            opened_half = time.monotonic()
            if self._stopping.wait(half):
                return
            second = tm.take_snapshot()
            closed = time.monotonic()
        finally:
            tm.stop()
        middle, end = self._by_site(first), self._by_site(second)
        del first, second
        span = max(closed - opened_half, 1e-3)
        since = closed - self._last_close
        self._last_close = closed
        with self._lock:
            for key in middle.keys() | end.keys():
                kept = end.get(key, 0) - middle.get(key, 0)
                if kept:
                    self.totals[key] = self.totals.get(key, 0.0) + kept / span * since
            self._bound()
            self.windows += 1

    def _by_site(self, snapshot: Any) -> dict[tuple[str, str], int]:
        """Bytes per (site, function) of a snapshot, each block at its innermost own frame."""
        by_stack: dict[tuple[tuple[str, int], ...], int] = {}
        for stack, size in _stacks(snapshot):
            by_stack[stack] = by_stack.get(stack, 0) + size
        out: dict[tuple[str, str], int] = {}
        namer = self.namer
        for stack, size in by_stack.items():  # innermost frame first
            if any(filename == _THIS_FILE for filename, _ in stack):
                continue  # the sampler's own work
            for filename, lineno in stack:
                site = namer.relative(filename)
                if site is not None:
                    function = function_at(str(self.namer.root / site), lineno)
                    key = (f"{site}:{lineno}", function)
                    out[key] = out.get(key, 0) + size
                    break
        return out

    def _bound(self) -> None:
        keep = KEEP_FACTOR * self.config.top
        if len(self.totals) > keep:
            ranked = sorted(self.totals.items(), key=lambda kv: kv[1], reverse=True)
            self.totals = dict(ranked[:keep])

    def top_sites(self) -> list[tuple[str, str, float]]:
        """The served sites: (site, function, bytes kept), largest first, at most ``top``."""
        with self._lock:
            ranked = sorted(self.totals.items(), key=lambda kv: kv[1], reverse=True)
        return [(s, f, v) for (s, f), v in ranked[: self.config.top] if v > 0]

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield from site_families(self.service, self.top_sites(), self.available, self.worker)
