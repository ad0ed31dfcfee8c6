"""The run directory's sample recording: what a local ``soak run`` scraped, so that the analyzer
works with no Prometheus server at all.

Format of ``<run dir>/samples.om``: one sample per line in OpenMetrics sample syntax,
``name{label="value",...} value timestamp_seconds``, appended scrape by scrape (so one series'
samples are interleaved with the others'). Lines starting with ``#`` are comments and ignored. A
last line without its newline (a run killed mid-write) is ignored, and so is a line that is not
UTF-8 (a torn write, a bad disk block): the reader counts it in :class:`SkippedLines` and judges
the rest. Values may be ``NaN``, ``+Inf`` and ``-Inf``, as scraped. :func:`export_openmetrics`
turns a recording into a grouped OpenMetrics file that ``promtool tsdb create-blocks-from
openmetrics`` imports into any Prometheus.

The writer only needs prometheus-client; numpy is imported by the reader when it is called.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from soakwatch.errors import SourceError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "SAMPLES_FILE",
    "SampleWriter",
    "SeriesKey",
    "SkippedLines",
    "export_openmetrics",
    "format_sample",
    "iter_samples",
    "read_samples",
    "series_labels",
]

log = logging.getLogger(__name__)

SAMPLES_FILE = "samples.om"
HEADER = "# soakwatch samples v1: name{labels} value timestamp_seconds\n"

# (metric name, sorted (label, value) pairs): hashable and the same for the same series
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]

_SERIES = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\Z")
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = re.compile(r"\\(.)")


def _samples_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path if path.suffix == ".om" else path / SAMPLES_FILE


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def format_sample(name: str, labels: Iterable[tuple[str, str]], value: float, ts: float) -> str:
    """One sample line (without the newline) in OpenMetrics syntax."""
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
    series = f"{name}{{{inner}}}" if inner else name
    return f"{series} {_format_value(value)} {_format_value(round(ts, 3))}"


def series_labels(key: SeriesKey) -> dict[str, str]:
    """The labels of a series key as a dict (the metric name is not included)."""
    return dict(key[1])


class SampleWriter:
    """Appends scrapes to ``samples.om`` of a run directory (created if missing).

    ``path`` is the run directory, or the ``.om`` file itself."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = _samples_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file: TextIO | None = self.path.open("a", encoding="utf-8", newline="\n")
        if new:
            self._file.write(HEADER)
            self._file.flush()

    def write_scrape(
        self,
        text_exposition: str,
        timestamp: float,
        extra_labels: Mapping[str, str] | None = None,
    ) -> int:
        """Parse a /metrics response (Prometheus text format) and append all its samples at
        ``timestamp`` (seconds), with ``extra_labels`` added (e.g. instance, job). A scraped label
        of the same name is kept as ``exported_<name>``, as Prometheus does. Returns the number
        of samples written. Raises ValueError when the text does not parse."""
        from prometheus_client.parser import text_string_to_metric_families

        extra = dict(extra_labels or {})
        lines = []
        for family in text_string_to_metric_families(text_exposition):
            for sample in family.samples:
                labels = dict(sample.labels)
                for key, value in extra.items():
                    if key in labels and labels[key] != value:
                        labels[f"exported_{key}"] = labels[key]
                    labels[key] = value
                lines.append(
                    format_sample(sample.name, sorted(labels.items()), sample.value, timestamp)
                )
        self._write_lines(lines)
        return len(lines)

    def write_sample(
        self, name: str, labels: Mapping[str, str], value: float, timestamp: float
    ) -> None:
        """Append one sample, e.g. ``up`` = 0 for a failed scrape."""
        self._write_lines([format_sample(name, sorted(labels.items()), value, timestamp)])

    def _write_lines(self, lines: list[str]) -> None:
        if self._file is None:
            raise ValueError("SampleWriter is closed")
        if lines:
            # one write per scrape keeps a killed run's file to at most one partial line
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> SampleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_labels(text: str, where: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        found = _LABEL_PAIR.match(text, pos)
        if not found:
            raise SourceError(f"{where}: bad labels {text!r}")
        pairs.append((found.group(1), _unescape(found.group(2))))
        pos = found.end()
    return tuple(sorted(pairs))


@dataclass
class SkippedLines:
    """The lines of a recording the reader left out because they are not UTF-8 text."""

    count: int = 0
    first_line: int | None = None  # the number (from 1) of the first one

    def add(self, number: int) -> None:
        self.count += 1
        if self.first_line is None:
            self.first_line = number

    def describe(self) -> str:
        """``"2 lines not UTF-8 skipped (the first is line 7)"``, or "" when none was."""
        if not self.count:
            return ""
        lines = "line" if self.count == 1 else "lines"
        return f"{self.count} {lines} not UTF-8 skipped (the first is line {self.first_line})"


def iter_samples(
    run_dir: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    skipped: SkippedLines | None = None,
) -> Iterator[tuple[SeriesKey, float, float]]:
    """Each (series key, timestamp seconds, value) of a recording, in file order.

    ``names`` limits the result to those metric names. A line that is not UTF-8 is left out
    and counted in ``skipped`` (a run cut short by a crash is still judged on what it holds);
    another malformed line, other than a truncated last one, raises SourceError naming the
    file and line."""
    path = _samples_path(run_dir)
    wanted = set(names) if names is not None else None
    counted = skipped if skipped is not None else SkippedLines()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"cannot read samples: {path}: {exc.strerror}") from None
    # one parse per distinct series text: a run repeats the same few series every scrape
    keys: dict[str, SeriesKey | None] = {}
    with handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):
                break  # a run killed mid-write: the partial last line is not a sample
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                counted.add(number)
                continue
            if line[0] == "#" or not line.strip():
                continue
            parts = line.rsplit(None, 2)
            if len(parts) != 3:
                raise SourceError(f"{path}:{number}: not a sample line")
            series_text, value_text, ts_text = parts
            if series_text in keys:
                key = keys[series_text]
            else:
                key = keys[series_text] = _series_key(series_text, wanted, f"{path}:{number}")
            if key is None:
                continue
            try:
                sample = key, float(ts_text), float(value_text)
            except ValueError:
                bad = ts_text if not _is_float(ts_text) else value_text
                raise SourceError(f"{path}:{number}: not a number: {bad!r}") from None
            yield sample
    if counted.count:
        log.warning("%s: %s", path, counted.describe())


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _series_key(text: str, wanted: set[str] | None, where: str) -> SeriesKey | None:
    """The key of ``name{labels}`` (None when its name is not wanted)."""
    found = _SERIES.match(text)
    if not found:
        raise SourceError(f"{where}: not a sample line")
    name, label_text = found.groups()
    if wanted is not None and name not in wanted:
        return None
    return name, _parse_labels(label_text or "", where)


def read_samples(
    run_dir: str | os.PathLike[str],
    names: Iterable[str] | None = None,
    *,
    skipped: SkippedLines | None = None,
) -> dict[SeriesKey, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
    """Every series of a recording: key -> (timestamps in seconds, values), sorted by time,
    one value per timestamp (the last one written wins). Lines left out are counted in
    ``skipped``, as :func:`iter_samples` says."""
    import numpy as np

    times: dict[SeriesKey, list[float]] = {}
    values: dict[SeriesKey, list[float]] = {}
    for key, ts, value in iter_samples(run_dir, names, skipped=skipped):
        if key not in times:
            times[key] = []
            values[key] = []
        times[key].append(ts)
        values[key].append(value)
    result = {}
    for key, ts_list in times.items():
        t = np.asarray(ts_list, dtype=np.float64)
        v = np.asarray(values[key], dtype=np.float64)
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        if t.size > 1 and np.any(t[1:] == t[:-1]):
            keep = np.append(t[1:] != t[:-1], True)
            t, v = t[keep], v[keep]
        result[key] = (t, v)
    return result


def export_openmetrics(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Write the recording as one OpenMetrics file, grouped by metric and series, each series in
    time order, ending in ``# EOF``: the input of ``promtool tsdb create-blocks-from openmetrics``.
    Every metric is declared ``unknown`` (the recording keeps sample names, not family types),
    which Prometheus stores exactly like the scraped series. Returns the number of samples."""
    series = read_samples(run_dir)
    by_name: dict[str, list[SeriesKey]] = {}
    for key in series:
        by_name.setdefault(key[0], []).append(key)
    count = 0
    out = Path(out_path)
    with out.open("w", encoding="utf-8", newline="\n") as handle:
        for name in sorted(by_name):
            handle.write(f"# TYPE {name} unknown\n")
            for key in sorted(by_name[name]):
                t, v = series[key]
                handle.writelines(
                    format_sample(name, key[1], float(value), float(ts)) + "\n"
                    for ts, value in zip(t, v, strict=True)
                )
                count += t.size
        handle.write("# EOF\n")
    return count
