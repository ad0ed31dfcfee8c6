"""Durations ("15s", "2h", "1h30m", "500ms") and rates ("100/s", "5/min") as people type them,
the way Prometheus and k6 spell them."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration", "parse_rate"]

_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|min|s|m|h|d|w)")


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``text``: a number (seconds) or Prometheus-style units, combined ("1h30m").

    Raises ValueError with a short reason; callers wrap it into a ConfigError naming the key."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration, got {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    elif not isinstance(text, str):
        raise ValueError(f"expected a duration, got {type(text).__name__}")
    else:
        raw = text.strip().lower().replace(" ", "")
        try:
            seconds = float(raw)
        except ValueError:
            negative = raw.startswith("-")
            pos = 1 if raw.startswith(("-", "+")) else 0
            seconds = 0.0
            for match in _PART.finditer(raw, pos):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(raw) or pos == 0 or raw in ("-", "+"):
                raise ValueError(
                    f"not a duration: {text!r} (use e.g. 30s, 15m, 2h, 1h30m)"
                ) from None
            if negative:
                # Say why: "-5s" reads like a duration to the person who typed it.
                raise ValueError(
                    f"not a duration: {text!r} (a duration cannot be negative)"
                ) from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"not a finite duration: {text!r}")
    return seconds


def parse_rate(text: str | float | int) -> float:
    """Events per second in ``text``: "100/s", "5/min", "1000/m", "2/h" or a bare number (per s)."""
    if isinstance(text, bool):
        raise ValueError(f"expected a rate, got {text!r}")
    if isinstance(text, (int, float)):
        count = float(text)
        if not math.isfinite(count):
            raise ValueError(f"not a finite rate: {text!r}")
        return count
    if not isinstance(text, str):
        raise ValueError(f"expected a rate, got {type(text).__name__}")
    raw = text.strip().lower().replace(" ", "")
    count_text, slash, per = raw.partition("/")
    try:
        count = float(count_text)
    except ValueError:
        raise ValueError(f"not a rate: {text!r} (use e.g. 100/s, 5/min)") from None
    if not math.isfinite(count):
        raise ValueError(f"not a finite rate: {text!r}")
    if not slash:
        return count
    if not per:  # "5/" is a typo, not "5 per second"
        raise ValueError(f"not a rate: {text!r} (use e.g. 100/s, 5/min)")
    if per[0].isdigit():
        window = parse_duration(per)
    elif per in _UNIT_SECONDS:
        window = _UNIT_SECONDS[per]
    else:
        raise ValueError(f"not a rate: {text!r} (use e.g. 100/s, 5/min)")
    if window <= 0:
        raise ValueError(f"not a rate: {text!r}")
    return count / window


def format_duration(seconds: float) -> str:
    """A short human form: 90 -> "1m30s", 7200 -> "2h"."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"
