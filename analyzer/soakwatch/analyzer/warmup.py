"""Warm-up detection (pure numpy).

A service that fills caches at start grows fast, then levels off; judging its memory slope over
the whole run would call that a leak. The warm-up is cut with the Marginal Standard Error Rule
of simulation output analysis (MSER, White 1997; Franklin & White 2008), applied to residuals
from the steady state instead of to the raw values. The steady state is the Theil-Sen line
through the second half of the points; with r the residuals from it, the cut ``d`` minimises

    sum over i >= d of (r_i - mean(r_d..))^2 / (n - d)^2

Detrending matters: plain MSER truncates a steady linear leak as if it were warm-up (the
variance around a constant keeps falling as the trend is cut away), while around the tail's
line a steady leak leaves only noise, whose statistic grows as points are dropped, so nothing is
cut (a cut must also lower the statistic by a fifth, so noise alone cuts nothing).
Fitting the line to the tail only (not to each candidate remainder) keeps the curved end of
a cache-fill ramp from being absorbed into the slope.
The cut is capped at ``max_fraction`` of the points, as MSER's users do (half the data).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from soakwatch.analyzer.slopes import theil_sen

__all__ = ["SIGNIFICANT_DROP", "warmup_end"]

# a cut must lower the MSER statistic to this fraction of its uncut value
SIGNIFICANT_DROP = 0.8

FloatArray = npt.NDArray[np.float64]


def warmup_end(x: FloatArray, y: FloatArray, *, max_fraction: float = 0.5) -> int:
    """Index of the first point after the warm-up (0: no warm-up). Needs 8 points."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.size
    if n < 8 or max_fraction <= 0:
        return 0
    # residuals from the robust line through the second half (the steady state, if any)
    half = n // 2
    fit = theil_sen(x[half:] - x[half], y[half:])
    r = y - fit.slope * (x - x[half])
    m = np.arange(n, 0, -1, dtype=np.float64)
    sr = np.cumsum(r[::-1])[::-1]
    srr = np.cumsum((r * r)[::-1])[::-1]
    sse = np.maximum(srr - sr * sr / m, 0.0)
    last = int(min(np.floor(max_fraction * n), n - 4))
    statistic = sse[: last + 1] / m[: last + 1] ** 2
    best = int(np.argmin(statistic))
    # noise alone lets MSER shave a few points off; a real warm-up lowers the statistic a lot
    if statistic[best] > SIGNIFICANT_DROP * statistic[0]:
        return 0
    if best < 3:
        return best
    # with few points the tail's line extrapolates badly into the first half, and a steady
    # leak can look like warm-up: keep the cut only when the part before it has a clearly
    # different slope (its interval and the tail's do not overlap)
    early = theil_sen(x[: best + 1], y[: best + 1])
    later = theil_sen(x[best:], y[best:])
    if early.lower > later.upper or early.upper < later.lower:
        return best
    return 0
