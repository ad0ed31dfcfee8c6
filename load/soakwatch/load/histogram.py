"""A fixed-size, mergeable latency histogram with HDR-style log-linear buckets.

Values are recorded in whole microseconds. Below ``2 * SUB_BUCKETS`` µs every microsecond has
its own bucket; above, each power of two is split into ``SUB_BUCKETS`` linear sub-buckets, so a
bucket is never wider than 1/SUB_BUCKETS (1.6 %) of its value. The layout is the one of
HdrHistogram (Gil Tene, http://hdrhistogram.org/) with two significant binary digits fewer: the
whole histogram is ``BUCKET_COUNT`` integers, whatever the run length or the request rate, and
two histograms (two shards, two intervals) merge by adding their counts.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BUCKET_COUNT",
    "LAG_BUCKETS",
    "MAX_TRACKABLE_SECONDS",
    "BucketedHistogram",
    "LatencyHistogram",
    "Percentiles",
    "Timings",
]

SUB_BUCKET_BITS = 6
SUB_BUCKETS = 1 << SUB_BUCKET_BITS  # linear sub-buckets per power of two
_LINEAR_LIMIT = 2 * SUB_BUCKETS  # values below this (µs) have a bucket each
MAX_EXPONENT = 36  # 2**36 µs ~ 19 h: anything slower is clamped into the last bucket
BUCKET_COUNT = _LINEAR_LIMIT + (MAX_EXPONENT - SUB_BUCKET_BITS - 1) * SUB_BUCKETS
_MAX_MICROS = (1 << MAX_EXPONENT) - 1
MAX_TRACKABLE_SECONDS = _MAX_MICROS / 1e6


def bucket_index(micros: int) -> int:
    """The bucket of a value in microseconds (clamped to 0 .. _MAX_MICROS)."""
    if micros < _LINEAR_LIMIT:
        return micros if micros > 0 else 0
    if micros > _MAX_MICROS:
        micros = _MAX_MICROS
    shift = micros.bit_length() - SUB_BUCKET_BITS - 1  # micros >> shift is in [64, 128)
    return _LINEAR_LIMIT + (shift - 1) * SUB_BUCKETS + ((micros >> shift) - SUB_BUCKETS)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest microsecond value that fall into bucket ``index``."""
    if index < _LINEAR_LIMIT:
        return index, index
    shift, sub = divmod(index - _LINEAR_LIMIT, SUB_BUCKETS)
    shift += 1
    low = (sub + SUB_BUCKETS) << shift
    return low, low + (1 << shift) - 1


@dataclass(frozen=True)
class Percentiles:
    """Latency figures of one histogram, in seconds (None when nothing was recorded)."""

    count: int
    mean: float | None
    minimum: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    maximum: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "mean": self.mean,
            "min": self.minimum,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "p999": self.p999,
            "max": self.maximum,
        }


class LatencyHistogram:
    """Counts of latencies in ``BUCKET_COUNT`` fixed buckets, plus count, sum, min and max."""

    __slots__ = ("_counts", "count", "max_micros", "min_micros", "sum_seconds")

    def __init__(self) -> None:
        self._counts = [0] * BUCKET_COUNT
        self.count = 0
        self.sum_seconds = 0.0
        self.min_micros = 0
        self.max_micros = 0

    def record(self, seconds: float) -> None:
        """Add one latency. Negative values (clock steps) count as zero."""
        micros = int(seconds * 1_000_000.0) if seconds > 0 else 0
        self._counts[bucket_index(micros)] += 1
        if self.count == 0 or micros < self.min_micros:
            self.min_micros = micros
        if micros > self.max_micros:
            self.max_micros = micros
        self.count += 1
        self.sum_seconds += seconds if seconds > 0 else 0.0

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts into this histogram (shards, intervals)."""
        if other.count == 0:
            return
        counts = self._counts
        for index, value in enumerate(other._counts):
            if value:
                counts[index] += value
        self.min_micros = (
            other.min_micros if self.count == 0 else min(self.min_micros, other.min_micros)
        )
        self.max_micros = max(self.max_micros, other.max_micros)
        self.count += other.count
        self.sum_seconds += other.sum_seconds

    def value_at_quantile(self, quantile: float) -> float | None:
        """The latency (seconds) below which ``quantile`` of the recorded values fall.

        Reports the upper end of the bucket that holds the rank (as HdrHistogram does, never
        optimistic), capped by the largest value seen."""
        if self.count == 0:
            return None
        quantile = min(max(quantile, 0.0), 1.0)
        rank = max(1, int(quantile * self.count + 0.999999999))
        seen = 0
        for index, value in enumerate(self._counts):
            if value:
                seen += value
                if seen >= rank:
                    high = min(bucket_bounds(index)[1], self.max_micros)
                    return max(high, self.min_micros) / 1e6
        return self.max_micros / 1e6  # pragma: no cover - counts always add up to count

    def count_at_or_below(self, seconds: float) -> int:
        """How many recorded values are at most ``seconds`` (bucket resolution)."""
        limit = int(seconds * 1_000_000.0)
        total = 0
        for index, value in enumerate(self._counts):
            if value:
                if bucket_bounds(index)[1] > limit:
                    break
                total += value
        return total

    def percentiles(self) -> Percentiles:
        if self.count == 0:
            return Percentiles(0, None, None, None, None, None, None, None, None)
        return Percentiles(
            count=self.count,
            mean=self.sum_seconds / self.count,
            minimum=self.min_micros / 1e6,
            p50=self.value_at_quantile(0.50),
            p90=self.value_at_quantile(0.90),
            p95=self.value_at_quantile(0.95),
            p99=self.value_at_quantile(0.99),
            p999=self.value_at_quantile(0.999),
            maximum=self.max_micros / 1e6,
        )

    # -- serialisation: sparse, so that shards' summaries merge ----------------------------
    def to_dict(self) -> dict[str, object]:
        return {
            "layout": f"log-linear/us/sub{SUB_BUCKETS}/exp{MAX_EXPONENT}",
            "count": self.count,
            "sum_seconds": self.sum_seconds,
            "min_us": self.min_micros,
            "max_us": self.max_micros,
            "buckets": {str(i): c for i, c in enumerate(self._counts) if c},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LatencyHistogram:
        """Rebuild a histogram written by ``to_dict`` (ValueError on another layout)."""
        if data.get("layout") != f"log-linear/us/sub{SUB_BUCKETS}/exp{MAX_EXPONENT}":
            raise ValueError(f"unknown histogram layout {data.get('layout')!r}")
        hist = cls()
        buckets = data.get("buckets", {})
        if not isinstance(buckets, Mapping):
            raise ValueError("histogram buckets must be a mapping")
        for key, value in buckets.items():
            hist._counts[int(key)] = int(value)
        hist.count = int(data.get("count", 0))  # type: ignore[call-overload]
        hist.sum_seconds = float(data.get("sum_seconds", 0.0))  # type: ignore[arg-type]
        hist.min_micros = int(data.get("min_us", 0))  # type: ignore[call-overload]
        hist.max_micros = int(data.get("max_us", 0))  # type: ignore[call-overload]
        return hist

    @classmethod
    def merged(cls, histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
        total = cls()
        for hist in histograms:
            total.merge(hist)
        return total


# Prometheus buckets (seconds) of soak_load_schedule_lag_seconds: the driver's own lag is
# normally well under a millisecond, so the buckets start at 50 µs.
LAG_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class BucketedHistogram:
    """A ``LatencyHistogram`` plus the counts of Prometheus buckets (exact at their bounds):
    the figures for the summary and the series for /metrics from one ``record``."""

    __slots__ = ("bounds", "bucket_counts", "histogram")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.histogram = LatencyHistogram()
        self.bucket_counts = [0] * (len(bounds) + 1)  # non-cumulative, +Inf last

    def record(self, seconds: float) -> None:
        self.histogram.record(seconds)
        self.bucket_counts[bisect_left(self.bounds, seconds)] += 1

    def merge(self, other: BucketedHistogram) -> None:
        self.histogram.merge(other.histogram)
        for index, count in enumerate(other.bucket_counts):
            self.bucket_counts[index] += count

    def to_dict(self) -> dict[str, object]:
        return {"histogram": self.histogram.to_dict(), "bucket_counts": list(self.bucket_counts)}

    @classmethod
    def from_dict(cls, bounds: tuple[float, ...], data: Mapping[str, Any]) -> BucketedHistogram:
        made = cls(bounds)
        made.histogram = LatencyHistogram.from_dict(data["histogram"])
        counts = [int(c) for c in data["bucket_counts"]]
        if len(counts) != len(made.bucket_counts):
            raise ValueError("bucket counts do not match the bounds")
        made.bucket_counts = counts
        return made


class Timings:
    """The driver's own timing of one scenario, beside its latency (due -> reply):
    ``lag`` (due -> sent: the driver's scheduling delay) and ``service`` (sent -> reply)."""

    __slots__ = ("lag", "service")

    def __init__(self, service_bounds: tuple[float, ...]) -> None:
        self.lag = BucketedHistogram(LAG_BUCKETS)
        self.service = BucketedHistogram(service_bounds)
