"""A fetched time series, whatever source it came from."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Series", "subject_of"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Series:
    """One series: metric name, labels (without ``__name__``), sample times (Unix seconds,
    ascending) and values."""

    name: str
    labels: Mapping[str, str]
    t: FloatArray
    v: FloatArray

    def between(self, start: float, end: float) -> Series:
        """The samples with start <= t <= end."""
        keep = (self.t >= start) & (self.t <= end)
        return Series(self.name, self.labels, self.t[keep], self.v[keep])

    def finite(self) -> tuple[Series, int]:
        """The series without its NaN and infinite samples, and how many those were. A
        scraped NaN or +Inf is no measurement: not a start time, not a probe outcome."""
        keep = np.isfinite(self.v)
        dropped = int(keep.size - np.count_nonzero(keep))
        if not dropped:
            return self, 0
        return Series(self.name, self.labels, self.t[keep], self.v[keep]), dropped

    def label_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


def subject_of(labels: Mapping[str, str], group_by: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """The subject a series belongs to: its values of the ``group_by`` labels that it has."""
    return tuple((key, labels[key]) for key in group_by if labels.get(key, "") != "")
