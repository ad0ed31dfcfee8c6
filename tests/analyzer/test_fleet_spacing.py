"""The sample interval of a fleet's series, read in stacked blocks, is the figure of one median
per series: the same step is chosen for every query, so the fleet's results stay the same."""

from __future__ import annotations

import numpy as np
import pytest

from soakwatch.analyzer import sources
from soakwatch.analyzer.sources import sample_spacing


def one_median_per_series(times: list[np.ndarray]) -> float | None:
    """The definition: each series' median positive spacing, the finest over the series."""
    spacings = []
    for t in times:
        d = np.diff(t)
        d = d[d > 0]
        if d.size:
            spacings.append(float(np.median(d)))
    return min(spacings) if spacings else None


def jittered_fleet(seed: int, count: int) -> list[np.ndarray]:
    """Series of mixed lengths (empty, one sample, even and odd counts), scraped with jitter,
    some with repeated times."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        size = int(rng.choice([0, 1, 2, 3, 4, 40, 41]))
        steps = rng.choice([0.0, 14.9, 15.0, 15.1, 60.0, 0.001, 7.25], size=size)
        out.append(1.7e9 + np.cumsum(steps))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_stacked_spacing_is_the_finest_median_of_each_series(seed: int) -> None:
    fleet = jittered_fleet(seed, count=seed % 25)
    assert sample_spacing(fleet) == one_median_per_series(fleet)


def test_stacked_spacing_is_the_same_across_block_boundaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fleet = jittered_fleet(7, count=300)
    expected = one_median_per_series(fleet)
    for block in (1, 41, 100, 1 << 20):
        monkeypatch.setattr(sources, "SPACING_BLOCK_SAMPLES", block)
        assert sample_spacing(fleet) == expected


def test_a_series_with_repeated_times_counts_only_its_positive_spacings() -> None:
    # the repeated times would give a median of 0 if kept; the other series is coarser
    repeated = np.array([0.0, 0.0, 0.0, 5.0, 10.0])
    coarse = np.array([0.0, 30.0, 60.0, 90.0, 120.0])
    assert sample_spacing([repeated, coarse]) == 5.0
    assert sample_spacing([np.array([3.0, 3.0, 3.0])]) is None
    assert sample_spacing([np.array([3.0]), np.array([])]) is None
