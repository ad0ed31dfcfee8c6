"""Where the numbers come from, behind one small interface: a :class:`Source` returns the
series a PromQL series selector picks over a time range. The rules never know which source
answered.

- :class:`PrometheusSource`: the standard Prometheus HTTP API (``/api/v1/query_range``), so
  Prometheus, Thanos, Mimir and VictoriaMetrics all serve.
- :class:`RunDirSource`: the samples a local ``soak run`` recorded (:mod:`soakwatch.recording`).

The step of a range query comes from the data: given ``min_step_seconds=None`` (what
soak-analyze does without ``--step``), :class:`PrometheusSource` first reads a few minutes of
raw samples of the query (an instant query of a range vector, ``metric[10m]``, which
Prometheus and VictoriaMetrics both answer with the stored samples) and queries at their
spacing; :func:`sample_spacing` gives the same figure for any fetched series.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import orjson
import requests
import urllib3

from soakwatch.analyzer.series import Series
from soakwatch.configfile import env_override, redact_url
from soakwatch.durations import parse_duration
from soakwatch.errors import SourceError
from soakwatch.rules.model import MetricSelector

__all__ = [
    "PrometheusSource",
    "RunDirSource",
    "Source",
    "choose_step",
    "decode_answer",
    "sample_spacing",
]

log = logging.getLogger(__name__)

MAX_POINTS_PER_SERIES = 11_000  # Prometheus rejects range queries beyond this per series
DEFAULT_MIN_STEP_SECONDS = 15.0
# How far back the raw samples that give the step are read, at the end of the range (then at
# its middle and its start, when the series have none there).
STEP_PROBE_SECONDS = 600.0
MAX_CHUNKS = 4
DEFAULT_BACKOFF_SECONDS = 0.5
# The first retry's delay (each later one doubles), for every PrometheusSource not given one:
# soak-analyze and soak run read it, and tests against a closed port make it short.
BACKOFF_VARIABLE = "SOAK_PROMETHEUS_BACKOFF"
VALUES_KEY = b'"values":['
# the characters that make a JSON number other than an integer (found by memchr: a regular
# expression's character class took as long as orjson's reading of the numbers)
_FRACTION_MARKS = (b".", b"e", b"E")
FloatArray = npt.NDArray[np.float64]
# the samples stacked at once by sample_spacing (8 MB of times, as many of spacings)
SPACING_BLOCK_SAMPLES = 1 << 20
Samples = tuple[FloatArray, FloatArray]


class Source(Protocol):
    """Anything that returns the series for a selector over [start, end] (Unix seconds)."""

    @property
    def description(self) -> str:
        """What the report names as its source, read after the fetches (so it may say what
        the source left out)."""
        ...

    def fetch(
        self,
        selector: MetricSelector,
        start: float,
        end: float,
        *,
        suffix: str = "",
        step_seconds: float | None = None,
    ) -> list[Series]:
        """All series matching ``selector`` (metric name + ``suffix``, e.g. ``_bucket``).

        ``step_seconds``: the coarsest sampling the caller can use (None: the finest the source
        offers); a source that returns raw samples may ignore it. Values are as stored, NaN
        and infinities included (the analysis sets those aside). Raises SourceError when the
        data cannot be read; an absent metric is an empty list. Must be safe to call from
        several threads at once."""
        ...


def sample_spacing(times: Iterable[npt.NDArray[np.float64]]) -> float | None:
    """The sample interval of series sampled at ``times`` (one array per series): the median
    spacing of each series' samples, the finest over the series (None when no series has two
    samples).

    Series of the same length (a fleet's, read over the same minutes) are stacked and their
    medians taken in one call per block of rows: the same figures as one ``np.median`` per
    series (the same middle values, averaged the same way), without numpy's per-call cost
    (1,000 x 48 h: 13,000 series of raw samples, 0.47 of the analysing process' CPU-s)."""
    spacings = []
    by_size: dict[int, list[FloatArray]] = {}
    for t in times:
        if t.size > 1:
            by_size.setdefault(t.size, []).append(t)
    for size, group in by_size.items():
        rows = max(1, SPACING_BLOCK_SAMPLES // size)
        for first in range(0, len(group), rows):
            d = np.diff(np.stack(group[first : first + rows]), axis=1)
            increasing = (d > 0).all(axis=1)
            if increasing.any():
                spacings.append(float(np.median(d[increasing], axis=1).min()))
            # repeated times: each such series on its own, its positive spacings only
            for row in d[~increasing]:
                row = row[row > 0]
                if row.size:
                    spacings.append(float(np.median(row)))
    return min(spacings) if spacings else None


def _parse_numbers(flat: bytes) -> FloatArray:
    """``1700000000,123.4,1700000015,NaN`` as float64. orjson reads plain numbers without a
    Python float per sample surviving; NaN, +Inf and integers beyond a double (not JSON
    numbers for orjson) go through numpy's own float parsing, which the same text gives the
    same doubles (both round correctly).

    Text without a decimal point or an exponent holds only integers (the usual answer: byte
    sizes, counts, whole-second times), which numpy reads from orjson's list as int64 in C
    and converts in one pass, each rounded to the nearest double as ``float()`` rounds it
    (``np.fromiter`` of the list: 0.61 ms for one series of 11,000 samples, so 0.41 ms)."""
    if not flat:
        return np.empty(0, dtype=np.float64)
    try:
        numbers = orjson.loads(b"[" + flat + b"]")
        if not any(mark in flat for mark in _FRACTION_MARKS):
            with contextlib.suppress(OverflowError):  # beyond int64: float() of each, below
                return np.array(numbers, dtype=np.int64).astype(np.float64)
        return np.fromiter(numbers, dtype=np.float64, count=len(numbers))
    except (orjson.JSONDecodeError, TypeError, OverflowError):
        return np.array(flat.split(b","), dtype=np.float64)


def decode_answer(content: bytes) -> tuple[Any, list[Samples] | None]:
    """A Prometheus HTTP API answer: its JSON, and for a matrix the (times, values) arrays of
    each result in order, read straight from the bytes of its ``"values"`` array (the answer's
    JSON then holds empty ``values``); None when the answer is not a matrix or its values do
    not read so, and then the JSON holds them as the server sent them.

    Why not one ``json.loads``: a Python list and two objects per sample are 85-90 % of a
    fetch's time (issue 16); the ``values`` of a matrix are only ``[time,"value"]`` pairs, and
    ``"values":[`` cannot occur inside a JSON string (its quotes would be escaped)."""
    skeleton: list[bytes] = []
    # where each values array lies (cut out one at a time below, not all held as copies)
    segments: list[tuple[int, int]] = []
    done = 0
    at = content.find(VALUES_KEY)
    while at >= 0:
        begin = at + len(VALUES_KEY)
        end = begin if content[begin : begin + 1] == b"]" else content.find(b"]]", begin) + 1
        if end <= 0:
            return orjson.loads(content), None
        skeleton.append(content[done:begin])
        segments.append((begin, end))
        done = end
        at = content.find(VALUES_KEY, end)
    if not segments:
        return orjson.loads(content), None
    skeleton.append(content[done:])
    body = orjson.loads(b"".join(skeleton))
    data = body.get("data") if isinstance(body, dict) else None
    items = data.get("result") if isinstance(data, dict) else None
    if (
        data is None
        or data.get("resultType") != "matrix"
        or not isinstance(items, list)
        or len(items) != len(segments)
        or not all(isinstance(item, dict) and item.get("values") == [] for item in items)
    ):
        return orjson.loads(content), None
    samples = []
    for begin, end in segments:
        try:
            flat = _parse_numbers(content[begin:end].translate(None, b'[]"'))
        except ValueError:
            return orjson.loads(content), None
        if flat.size % 2:
            return orjson.loads(content), None
        pairs = flat.reshape(-1, 2)
        samples.append((pairs[:, 0].copy(), pairs[:, 1].copy()))
    return body, samples


def _samples_of(data: Any, decoded: list[Samples] | None) -> list[Samples]:
    """The (times, values) of each result of a matrix answer, decoded or from its JSON."""
    if decoded is not None:
        return decoded
    out = []
    for item in data["result"]:
        values = item.get("values") or []
        t = np.fromiter((float(p[0]) for p in values), dtype=np.float64, count=len(values))
        v = np.fromiter((float(p[1]) for p in values), dtype=np.float64, count=len(values))
        out.append((t, v))
    return out


def choose_step(
    start: float,
    end: float,
    min_step: float = DEFAULT_MIN_STEP_SECONDS,
    max_points: int = MAX_POINTS_PER_SERIES,
) -> float:
    """The query step: the scrape-like ``min_step`` unless the range would need more than
    ``MAX_CHUNKS`` queries of ``max_points`` points per series; whole seconds."""
    span = max(end - start, 0.0)
    return float(max(min_step, math.ceil(span / (MAX_CHUNKS * (max_points - 1)))))


class PrometheusSource:
    """The Prometheus HTTP API through requests: range queries split to stay under the
    points-per-series limit, retries with exponential backoff on 5xx, 429, timeouts and
    connection errors, optional bearer token, basic auth and CA bundle. ``min_step_seconds``:
    the finest query step; None reads it from the data (:meth:`sample_seconds`, whole seconds,
    at least 1 s; 15 s when the store holds too few samples to tell). ``backoff_seconds``:
    the delay before the first retry, doubling after each (default: ``SOAK_PROMETHEUS_BACKOFF``
    from the environment, else 0.5 s). ``compression``: ask for gzip answers (default: yes,
    except from a server on the loopback interface)."""

    def __init__(
        self,
        url: str,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        timeout_seconds: float = 30.0,
        retries: int = 3,
        backoff_seconds: float | None = None,
        min_step_seconds: float | None = DEFAULT_MIN_STEP_SECONDS,
        max_points_per_series: int = MAX_POINTS_PER_SERIES,
        compression: bool | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.description = f"prometheus {redact_url(self.url)}"
        self.timeout_seconds = timeout_seconds
        self.retries = retries
        if backoff_seconds is None:
            backoff_seconds = env_override(
                BACKOFF_VARIABLE, parse_duration, DEFAULT_BACKOFF_SECONDS
            )
        self.backoff_seconds = backoff_seconds
        self.min_step_seconds = min_step_seconds
        self.max_points_per_series = max_points_per_series
        self.session = session or requests.Session()
        if bearer_token:
            self.session.headers["Authorization"] = f"Bearer {bearer_token}"
        if basic_auth:
            self.session.auth = basic_auth
        if ca_bundle:
            self.session.verify = str(ca_bundle)
        if compression is None:
            # gzip costs Prometheus about 2 s per 15 MB answer; worth it over a network, not
            # over the loopback interface
            compression = urlsplit(self.url).hostname not in ("localhost", "127.0.0.1", "::1")
        if not compression:
            self.session.headers["Accept-Encoding"] = "identity"
        self.requests_made = 0
        self._count_lock = threading.Lock()
        # query -> its sample interval as read from the store (None: could not tell), and
        # query -> the step its range queries used
        self._spacing: dict[str, float | None] = {}
        self.steps: dict[str, float] = {}
        # (size, first, last) -> a read-only times array that series of the same step share
        self._times: weakref.WeakValueDictionary[tuple[int, float, float], FloatArray] = (
            weakref.WeakValueDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        """What a worker process of :func:`soakwatch.analyzer.analyze` receives: the settings,
        with the session's headers, auth and CA bundle but not its open connections."""
        state = dict(self.__dict__)
        del state["_count_lock"], state["_times"]
        session = state.pop("session")
        state["_session_settings"] = (dict(session.headers), session.auth, session.verify)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        headers, auth, verify = state.pop("_session_settings")
        self.__dict__.update(state)
        self._count_lock = threading.Lock()
        self._times = weakref.WeakValueDictionary()
        self.session = requests.Session()
        self.session.headers.clear()
        self.session.headers.update(headers)
        self.session.auth = auth
        self.session.verify = verify

    def share_sample_seconds(
        self,
        selector: MetricSelector,
        like: MetricSelector,
        start: float,
        end: float,
        *,
        suffix: str = "",
    ) -> None:
        """Fetches of ``selector`` (a shard of ``like``'s series) use the sample interval read
        for ``like``, so a shard is read at the step the whole fleet would be."""
        if self.min_step_seconds is not None:
            return
        spacing = self.sample_seconds(like, start, end, suffix=suffix)
        with self._count_lock:
            self._spacing[selector.promql(suffix=suffix)] = spacing

    def label_values(
        self, label: str, selectors: Iterable[str], start: float, end: float
    ) -> list[str]:
        """The values of ``label`` on the series of ``selectors`` (PromQL series selectors)
        over [start, end], sorted (``/api/v1/label/<label>/values``); the store may include
        series whose samples lie just outside the range (Prometheus answers per block)."""
        data, _samples = self._get(
            f"/api/v1/label/{label}/values",
            {"match[]": sorted(set(selectors)), "start": f"{start:.3f}", "end": f"{end:.3f}"},
        )
        return sorted(str(value) for value in data or [])

    def _get(self, path: str, params: dict[str, Any]) -> tuple[Any, list[Samples] | None]:
        """The ``data`` of a successful answer, and the samples of a matrix read from its bytes
        (:func:`decode_answer`; None: they are in the data's JSON)."""
        url = f"{self.url}{path}"
        shown = redact_url(self.url)
        last_problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            try:
                with self._count_lock:
                    self.requests_made += 1
                with self.session.get(
                    url, params=params, timeout=self.timeout_seconds, stream=True
                ) as response:
                    # the body in one read of the connection (decompressed when gzip):
                    # .content reads it 10 kB at a time and iter_content(None) chunk by
                    # chunk, each a copy (13.8 MB from Prometheus: 32-43 ms of CPU with
                    # iter_content, 12-21 ms so)
                    content = response.raw.read(decode_content=True)
            except (requests.exceptions.SSLError, urllib3.exceptions.SSLError) as exc:
                raise SourceError(f"TLS error talking to {shown}: {exc}") from None
            except (
                requests.ConnectionError,
                requests.Timeout,
                # the body broke off, or stalled past the timeout, read from the connection
                urllib3.exceptions.HTTPError,
            ) as exc:
                last_problem = f"{type(exc).__name__}"
                log.warning("request to %s failed (%s), attempt %d", shown, exc, attempt + 1)
                continue
            if response.status_code >= 500 or response.status_code == 429:
                last_problem = f"HTTP {response.status_code}"
                log.warning("%s answered %s, attempt %d", shown, last_problem, attempt + 1)
                continue
            try:
                body, samples = decode_answer(content)
            except ValueError:
                raise SourceError(
                    f"{shown} answered HTTP {response.status_code} without JSON: is this the "
                    "Prometheus HTTP API?"
                ) from None
            if (
                response.status_code != 200
                or not isinstance(body, dict)
                or body.get("status") != "success"
            ):
                error = (body.get("error") if isinstance(body, dict) else None) or (
                    f"HTTP {response.status_code}"
                )
                raise SourceError(f"{shown} rejected {params.get('query')!r}: {error}")
            return body["data"], samples
        raise SourceError(
            f"cannot read from {shown}: {last_problem} after {self.retries + 1} attempts"
        )

    def sample_seconds(
        self, selector: MetricSelector, start: float, end: float, *, suffix: str = ""
    ) -> float | None:
        """The sample interval the store holds for the selector's series (the finest median
        spacing of their raw samples over the last STEP_PROBE_SECONDS before ``end``; before
        the middle or the start of the range when none are there); None when no series has
        two samples there. Read once per query and source."""
        query = selector.promql(suffix=suffix)
        with self._count_lock:
            if query in self._spacing:
                return self._spacing[query]
        lookback = max(min(STEP_PROBE_SECONDS, end - start), 60.0)
        found = None
        for at in (end, (start + end) / 2, start + lookback):
            data, decoded = self._get(
                "/api/v1/query", {"query": f"{query}[{lookback:.0f}s]", "time": f"{at:.3f}"}
            )
            if data.get("resultType") != "matrix":
                break
            found = sample_spacing(t for t, _v in _samples_of(data, decoded))
            if found is not None:
                break
        with self._count_lock:
            self._spacing[query] = found
        return found

    def fetch(
        self,
        selector: MetricSelector,
        start: float,
        end: float,
        *,
        suffix: str = "",
        step_seconds: float | None = None,
    ) -> list[Series]:
        query = selector.promql(suffix=suffix)
        min_step = self.min_step_seconds
        if min_step is None:
            spacing = self.sample_seconds(selector, start, end, suffix=suffix)
            min_step = max(1.0, float(round(spacing))) if spacing else DEFAULT_MIN_STEP_SECONDS
        step = choose_step(start, end, min_step, self.max_points_per_series)
        if step_seconds is not None:
            step = max(step, float(math.ceil(step_seconds)))
        with self._count_lock:
            self.steps[query] = step
        chunk = step * (self.max_points_per_series - 1)
        ranges = []
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(chunk_start + chunk, end)
            ranges.append((chunk_start, chunk_end))
            chunk_start = chunk_end + step

        def query_chunk(bounds: tuple[float, float]) -> tuple[Any, list[Samples] | None]:
            return self._get(
                "/api/v1/query_range",
                {
                    "query": query,
                    "start": f"{bounds[0]:.3f}",
                    "end": f"{bounds[1]:.3f}",
                    "step": f"{step:g}",
                },
            )

        # one after the other: parallelism comes from the analysis' processes (analyze(jobs=))
        parts: dict[tuple[tuple[str, str], ...], tuple[str, list[Samples]]] = {}
        for bounds in ranges:  # in time order
            data, decoded = query_chunk(bounds)
            if data.get("resultType") != "matrix":
                raise SourceError(f"unexpected result type {data.get('resultType')!r}")
            for item, samples in zip(data["result"], _samples_of(data, decoded), strict=True):
                metric = dict(item["metric"])
                name = metric.pop("__name__", selector.metric + suffix)
                key = tuple(sorted(metric.items()))
                parts.setdefault(key, (name, []))[1].append(samples)
        result = []
        for key, (name, chunks) in parts.items():
            if len(chunks) == 1:
                t, v = chunks[0]
            else:
                t = np.concatenate([c[0] for c in chunks])
                v = np.concatenate([c[1] for c in chunks])
            if not t.size:
                continue
            # the store answers in time order: sort (and drop repeated times, the last kept)
            # only when it did not, instead of copying every series twice more
            if not np.all(t[1:] > t[:-1]):
                order = np.argsort(t, kind="stable")
                t, v = t[order], v[order]
                keep = np.append(t[1:] != t[:-1], True)
                t, v = t[keep], v[keep]
            result.append(Series(name, dict(key), self._shared_times(t), v))
        return result

    def _shared_times(self, t: FloatArray) -> FloatArray:
        """``t``, or an equal array already handed out: series read at one step mostly have
        the same times, and sharing them halves what a fleet's series (and the report's
        evidence) hold. Shared arrays are read-only."""
        key = (int(t.size), float(t[0]), float(t[-1]))
        with self._count_lock:
            known = self._times.get(key)
            if known is not None and np.array_equal(known, t):
                return known
            t.flags.writeable = False
            self._times[key] = t
        return t


class RunDirSource:
    """The samples a local run recorded in its directory (read once, on first use). Lines of
    the recording that are not UTF-8 are left out, counted in ``skipped`` and named in the
    description."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        from soakwatch.recording import SkippedLines

        self.run_dir = Path(run_dir)
        self.skipped = SkippedLines()
        self._series: dict[str, list[Series]] | None = None
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        left_out = self.skipped.describe()
        return f"run directory {self.run_dir}" + (f" ({left_out})" if left_out else "")

    def _load(self) -> dict[str, list[Series]]:
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> dict[str, list[Series]]:
        if self._series is None:
            from soakwatch.recording import read_samples

            by_name: dict[str, list[Series]] = {}
            samples = read_samples(self.run_dir, skipped=self.skipped)
            for (name, labels), (t, v) in samples.items():
                by_name.setdefault(name, []).append(Series(name, dict(labels), t, v))
            self._series = by_name
        return self._series

    def time_range(self) -> tuple[float, float]:
        """First and last sample time of the recording; SourceError when it holds none."""
        series = [s for group in self._load().values() for s in group if s.t.size]
        if not series:
            raise SourceError(f"no samples recorded in {self.run_dir}")
        return min(float(s.t[0]) for s in series), max(float(s.t[-1]) for s in series)

    def sample_seconds(
        self, selector: MetricSelector, start: float, end: float, *, suffix: str = ""
    ) -> float | None:
        """The recorded sample interval of the selector's series over [start, end]: the finest
        median spacing (None when no series has two samples there)."""
        return sample_spacing(s.t for s in self.fetch(selector, start, end, suffix=suffix))

    def fetch(
        self,
        selector: MetricSelector,
        start: float,
        end: float,
        *,
        suffix: str = "",
        step_seconds: float | None = None,
    ) -> list[Series]:
        found = []
        for series in self._load().get(selector.metric + suffix, []):
            if selector.matches(series.labels):
                inside = series.between(start, end)
                if inside.t.size:
                    found.append(inside)
        return found
