"""Histogram quantiles as PromQL computes them, counter increases through resets, and the
coefficient of variation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soakwatch.analyzer.counters import counter_increase
from soakwatch.analyzer.quantiles import histogram_quantile
from soakwatch.analyzer.variation import coefficient_of_variation

INF = math.inf


def test_the_quantile_interpolates_linearly_inside_its_bucket() -> None:
    bounds = np.array([0.1, 0.5, 1.0, INF])
    counts = np.array([10.0, 60.0, 100.0, 100.0])
    # rank 95 of 100 lies in (0.5, 1.0] holding 40: 0.5 + 0.5 * 35 / 40
    assert histogram_quantile(0.95, bounds, counts) == pytest.approx(0.9375)
    assert histogram_quantile(0.05, bounds, counts) == pytest.approx(0.05)


def test_a_rank_in_the_inf_bucket_returns_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, np.array([0.1, 1.0, INF]), np.array([1.0, 2.0, 10.0])) == 1.0


def test_bucket_order_does_not_matter_and_non_monotonic_counts_are_raised() -> None:
    bounds = np.array([INF, 1.0, 0.5])
    counts = np.array([10.0, 9.0, 10.0])  # le=0.5 above le=1: a scrape race
    assert histogram_quantile(0.5, bounds, counts) == pytest.approx(0.25)


def test_no_observations_or_no_inf_bucket_gives_nan() -> None:
    assert math.isnan(histogram_quantile(0.5, np.array([1.0, INF]), np.array([0.0, 0.0])))
    assert math.isnan(histogram_quantile(0.5, np.array([1.0, 2.0]), np.array([1.0, 2.0])))


def test_counter_increase_counts_through_a_reset_and_stays_inside_the_range() -> None:
    t = np.arange(6.0) * 10
    v = np.array([100.0, 110.0, 120.0, 5.0, 15.0, 30.0])
    assert counter_increase(t, v, 0, 50) == pytest.approx(20 + 5 + 10 + 15)
    assert counter_increase(t, v, 10, 20) == pytest.approx(10)
    assert counter_increase(t, v, 45, 50) == 0.0


def test_coefficient_of_variation_of_a_constant_pool_is_zero() -> None:
    assert coefficient_of_variation(np.full(10, 8.0)) == 0.0
    assert coefficient_of_variation(np.zeros(10)) == 0.0
    assert coefficient_of_variation(np.array([9.0, 11.0])) == pytest.approx(math.sqrt(2) / 10)
    assert math.isnan(coefficient_of_variation(np.array([1.0])))
