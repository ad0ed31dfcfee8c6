"""Dispersion figures (pure numpy)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["coefficient_of_variation"]

FloatArray = npt.NDArray[np.float64]


def coefficient_of_variation(values: FloatArray) -> float:
    """Sample standard deviation (n - 1) divided by the mean. A constant series gives 0 (a pool
    that sits at zero does not vary); NaN with fewer than two values or a mean of 0 with spread."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan
    spread = float(np.std(v, ddof=1))
    if spread == 0:
        return 0.0
    mean = float(np.mean(v))
    if mean == 0:
        return math.nan
    return spread / abs(mean)
