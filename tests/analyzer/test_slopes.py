"""Slope estimators on series whose true slope is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from soakwatch.analyzer.slopes import least_squares_slope, theil_sen, window_aggregate


def test_theil_sen_with_one_block_equals_scipy_theilslopes_with_its_interval() -> None:
    rng = np.random.default_rng(7)
    x = np.arange(60.0)
    y = 3.0 * x + rng.normal(0, 10, x.size)
    fit = theil_sen(x, y, confidence=0.9)
    reference = stats.theilslopes(y, x, alpha=0.9)
    assert fit.slope == pytest.approx(reference.slope)
    assert (fit.lower, fit.upper) == pytest.approx((reference.low_slope, reference.high_slope))
    assert fit.lower < 3.0 < fit.upper


def test_blocks_share_the_slope_but_not_the_level() -> None:
    x = np.arange(40.0)
    y = 0.5 * x + np.where(x >= 20, 1000.0, 0.0)  # a restart-like jump at x = 20
    assert theil_sen(x, y).slope > 10  # across the jump the slope is wrong
    fit = theil_sen(x, y, blocks=[slice(0, 20), slice(20, 40)])
    assert fit.slope == pytest.approx(0.5)
    assert fit.intercepts == pytest.approx((0.0, 1000.0))
    assert fit.pairs == 2 * (20 * 19 // 2)


def test_theil_sen_ignores_a_few_huge_outliers_that_move_least_squares() -> None:
    x = np.arange(100.0)
    y = np.zeros(100)
    y[[10, 50, 90]] = 1e6
    y[95:] = 5e5
    assert theil_sen(x, y).slope == pytest.approx(0.0, abs=1e-9)
    assert least_squares_slope(x, y) > 1000


def test_theil_sen_without_any_pair_is_an_error() -> None:
    with pytest.raises(ValueError, match="no pair"):
        theil_sen(np.array([1.0]), np.array([2.0]))


def test_window_aggregate_takes_the_minimum_or_median_per_window() -> None:
    t = np.arange(0.0, 60.0, 10.0)  # 0..50
    y = np.array([5.0, 1.0, 3.0, 9.0, 7.0, 8.0])
    centres, minima = window_aggregate(t, y, 30.0, "min")
    assert centres.tolist() == [15.0, 45.0] and minima.tolist() == [1.0, 7.0]
    assert window_aggregate(t, y, 30.0, "median")[1].tolist() == [3.0, 8.0]
