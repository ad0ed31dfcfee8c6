"""The run's recorder: scrape every /metrics target, append what it serves to the run
directory's samples, and keep a short window of figures for the progress line."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections import deque
from pathlib import Path

import requests

from soakwatch.durations import format_duration
from soakwatch.errors import SoakwatchError
from soakwatch.run.config import ScrapeTarget
from soakwatch.run.secrets import instance_of

__all__ = [
    "PROGRESS_WINDOW_POINTS",
    "Recorder",
    "RunDirError",
    "progress_line",
    "run_dir_error",
]

log = logging.getLogger(__name__)

PROGRESS_WINDOW_POINTS = 240
BYTES_PER_MB = 1e6
SECONDS_PER_HOUR = 3600.0


# errno values meaning "no room left": the run dir is full, or its quota or file size is
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class RunDirError(SoakwatchError):
    """The run directory cannot be written (full, or gone): recording stops cleanly."""

    def __init__(self, run_dir: Path, exc: OSError) -> None:
        self.errno = exc.errno
        self.full = exc.errno in _FULL
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        what = "is full" if self.full else "cannot be written"
        self.state = "disk_full" if self.full else "run_dir_error"
        self.reason = (
            f"the run directory {what} ({name}: {exc.strerror or exc}); recording stopped, "
            "what was recorded is analyzed"
        )
        super().__init__(f"{self.reason}: {run_dir}")


def run_dir_error(run_dir: Path, exc: BaseException) -> RunDirError | None:
    """A RunDirError when ``exc`` is an OSError of writing the run directory, else None."""
    if isinstance(exc, RunDirError):
        return exc
    if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException):
        return RunDirError(run_dir, exc)
    return None


class Recorder:
    """Scrapes /metrics endpoints and appends their text to the run's samples file."""

    def __init__(self, run_dir: Path, run_id: str, profile: str, timeout: float) -> None:
        from soakwatch.recording import SAMPLES_FILE, SampleWriter

        self.run_dir = run_dir
        # created 0600 before the writer opens it (it may hold what a service exposes)
        os.close(os.open(run_dir / SAMPLES_FILE, os.O_WRONLY | os.O_CREAT, 0o600))
        self.writer = SampleWriter(run_dir)
        self.run_id = run_id
        self.profile = profile
        self.timeout = timeout
        self.targets: list[ScrapeTarget] = []
        # The target that publishes soak_run_info itself (the load driver, given the run id):
        # then its series is the one recorded, and the recorder writes none of its own.
        self.run_info_target: str | None = None
        self.session = requests.Session()
        self.rss: dict[str, deque[tuple[float, float]]] = {}
        self.load_totals: deque[tuple[float, float, float]] = deque(maxlen=PROGRESS_WINDOW_POINTS)
        self.scrapes = 0

    def scrape(self, timestamp: float) -> None:
        """One scrape of every target into the samples. Raises RunDirError when the samples
        cannot be written (a full disk): the caller stops recording."""
        try:
            self._scrape(timestamp)
        except OSError as exc:
            error = run_dir_error(self.run_dir, exc)
            if error is None:
                raise
            raise error from None

    def _scrape(self, timestamp: float) -> None:
        if self.run_info_target is None:
            self.writer.write_sample(
                "soak_run_info", {"run_id": self.run_id, "profile": self.profile}, 1.0, timestamp
            )
        for target in self.targets:
            # host:port, as Prometheus names the target: never the URL's user:password
            labels = {"job": target.name, "instance": instance_of(target.url)}
            try:
                response = self.session.get(target.url, timeout=self.timeout)
                response.raise_for_status()
                self.writer.write_scrape(response.text, timestamp, labels)
            except (requests.RequestException, ValueError) as exc:
                log.info("scrape of %s failed: %s", target.name, exc)
                self.writer.write_sample("up", labels, 0.0, timestamp)
                continue
            self.writer.write_sample("up", labels, 1.0, timestamp)
            self._remember(response.text, timestamp)
        self.scrapes += 1

    def _remember(self, text: str, timestamp: float) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        total = errors = 0.0
        seen_load = False
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "soak_process_resident_memory_bytes":
                    service = sample.labels.get("service", "?")
                    window = self.rss.setdefault(service, deque(maxlen=PROGRESS_WINDOW_POINTS))
                    window.append((timestamp, sample.value))
                elif sample.name == "soak_load_requests_total":
                    seen_load = True
                    total += sample.value
                    if sample.labels.get("outcome") != "ok":
                        errors += sample.value
        if seen_load:
            self.load_totals.append((timestamp, total, errors))

    def close(self) -> None:
        # a full disk fails the last flush too: what was written stays, nothing more is lost
        with contextlib.suppress(OSError, ValueError):
            self.writer.close()
        self.session.close()

    # figures for the progress line
    def load_rate(self) -> tuple[float, float] | None:
        """Requests per second and error share over the last few scrapes."""
        if len(self.load_totals) < 2:
            return None
        first = self.load_totals[max(0, len(self.load_totals) - 6)]
        last = self.load_totals[-1]
        seconds = last[0] - first[0]
        count = last[1] - first[1]
        if seconds <= 0:
            return None
        return count / seconds, ((last[2] - first[2]) / count if count > 0 else 0.0)

    def memory_slopes(self) -> dict[str, float]:
        """Slope of RSS per service in MB/h over the recent window, by the analyzer's robust
        estimator (Theil-Sen, ``soakwatch.analyzer.slopes``) for orientation; the verdict is
        the analyzer's full rule. Empty when the analyzer is not installed."""
        try:
            import numpy as np

            from soakwatch.analyzer.slopes import theil_sen
        except ImportError:
            return {}
        slopes = {}
        for service, points in self.rss.items():
            if len(points) >= 3:
                t, v = np.array(points, dtype=np.float64).T
                try:
                    fit = theil_sen(t, v)
                except ValueError:  # every point at the same instant
                    continue
                slopes[service] = fit.slope * SECONDS_PER_HOUR / BYTES_PER_MB
        return slopes


def progress_line(
    elapsed: float,
    total: float,
    recorder: Recorder,
    *,
    still: tuple[str, float] | None = None,
) -> str:
    """``1m20s/3m | load 46.0/s, 0.0% errors | memory healthy +0.4 MB/h, leaky +921.0 MB/h |
    memory_growth needs 1h10m more``: ``still`` is the rule that needs the run longest and for
    how many more seconds (``soakwatch.run.needs.still_needed``)."""
    parts = [f"{format_duration(min(elapsed, total))}/{format_duration(total)}"]
    rate = recorder.load_rate()
    if rate is not None:
        parts.append(f"load {rate[0]:.1f}/s, {rate[1] * 100:.1f}% errors")
    slopes = recorder.memory_slopes()
    if slopes:
        shown = ", ".join(f"{name} {slope:+.1f} MB/h" for name, slope in sorted(slopes.items()))
        parts.append(f"memory {shown}")
    if still is not None:
        parts.append(f"{still[0]} needs {format_duration(still[1])} more")
    return " | ".join(parts)
