"""The latency histogram: fixed size, bounded relative error, exact merges."""

from __future__ import annotations

import random
import sys

import pytest

from soakwatch.load.histogram import BUCKET_COUNT, LatencyHistogram, bucket_bounds, bucket_index


def test_every_microsecond_value_falls_in_the_bucket_whose_bounds_contain_it() -> None:
    previous_high = -1
    for index in range(BUCKET_COUNT):
        low, high = bucket_bounds(index)
        assert low == previous_high + 1  # buckets tile the range without gaps
        assert bucket_index(low) == index == bucket_index(high)
        assert high - low <= max(low, 1) / 64  # at most 1/64 of the value wide
        previous_high = high


def test_percentiles_of_a_uniform_spread_are_within_the_bucket_resolution() -> None:
    hist = LatencyHistogram()
    for micros in range(1, 100_001):  # 1 µs .. 100 ms, uniform
        hist.record(micros / 1e6)
    figures = hist.percentiles()
    assert figures.count == 100_000
    for quantile, value in ((0.5, figures.p50), (0.95, figures.p95), (0.99, figures.p99)):
        assert value is not None
        assert abs(value - quantile * 0.1) <= quantile * 0.1 / 64 + 1e-6
    assert figures.maximum == 0.1 and figures.minimum == 1e-6
    assert figures.mean is not None and abs(figures.mean - 0.0500005) < 1e-9


def test_the_histogram_does_not_grow_with_the_number_of_values() -> None:
    hist = LatencyHistogram()
    size_before = sys.getsizeof(hist._counts)
    rng = random.Random(7)
    for _ in range(200_000):
        hist.record(rng.lognormvariate(-5, 2))
    hist.record(1e9)  # beyond the range: clamped, not an error
    assert sys.getsizeof(hist._counts) == size_before
    assert len(hist._counts) == BUCKET_COUNT
    assert hist.count == 200_001


def test_merging_two_histograms_equals_recording_everything_into_one() -> None:
    rng = random.Random(1)
    values = [rng.expovariate(100) for _ in range(20_000)]
    whole, first, second = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for i, value in enumerate(values):
        whole.record(value)
        (first if i % 2 else second).record(value)
    merged = LatencyHistogram.merged([first, second])
    assert merged._counts == whole._counts
    assert merged.percentiles().p99 == whole.percentiles().p99
    assert merged.sum_seconds == pytest.approx(whole.sum_seconds)


def test_a_histogram_survives_its_json_form_for_merging_shards_later() -> None:
    hist = LatencyHistogram()
    for value in (0.001, 0.002, 0.5, 3.0):
        hist.record(value)
    copy = LatencyHistogram.from_dict(hist.to_dict())
    assert copy.percentiles() == hist.percentiles()
    assert hist.count_at_or_below(0.0025) == 2


def test_an_empty_histogram_reports_no_percentiles_rather_than_zero() -> None:
    figures = LatencyHistogram().percentiles()
    assert figures.count == 0 and figures.p99 is None and figures.mean is None
