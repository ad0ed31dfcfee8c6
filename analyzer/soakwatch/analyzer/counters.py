"""Counter arithmetic (pure numpy), with Prometheus's reset semantics: a counter that goes
down was reset to zero by a restart, so the new value is all increase since the reset."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["counter_increase"]

FloatArray = npt.NDArray[np.float64]


def counter_increase(t: FloatArray, v: FloatArray, start: float, end: float) -> float:
    """How much the counter rose between the samples at or after ``start`` and at or before
    ``end``, counting through resets. Unlike PromQL ``increase()`` nothing is extrapolated to
    the range edges: the figure is what the samples show. 0 with fewer than two samples."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    inside = (t >= start) & (t <= end) & np.isfinite(v)
    values = v[inside]
    if values.size < 2:
        return 0.0
    after = values[1:]
    d = after - values[:-1]  # np.diff's figures without its fixed cost
    return float(np.where(d >= 0, d, after).sum())
