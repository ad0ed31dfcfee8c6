"""The soak profiles and their environment overrides; the table is docs/profiles.md."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from soakwatch.configfile import env_override
from soakwatch.durations import parse_duration
from soakwatch.errors import ConfigError

__all__ = ["PROFILES", "Profile", "resolve_profile"]


@dataclass(frozen=True)
class Profile:
    """How long a soak runs and how hard it pushes."""

    name: str
    duration_seconds: float
    sampling_interval_seconds: float
    max_concurrent_connections: int
    session_spawns_per_minute: float
    db_operations_per_minute: float


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", 2 * 3600.0, 30.0, 50, 5.0, 1000.0),
    "staging": Profile("staging", 12 * 3600.0, 60.0, 500, 10.0, 1000.0),
    "production": Profile("production", 48 * 3600.0, 60.0, 500, 10.0, 1000.0),
    # Short enough to watch, steep enough to judge: the README's demo.
    "demo": Profile("demo", 180.0, 2.0, 20, 30.0, 600.0),
}


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _positive_hours(text: str) -> float:
    hours = _number(text)
    if not 0 < hours <= 24 * 30:
        raise ValueError(f"must be between 0 and 720 hours, got {text!r}")
    return hours * 3600.0


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be greater than 0, got {text!r}")
    return seconds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"must be a whole number greater than 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise ValueError(f"must be greater than 0, got {text!r}")
    return value


def resolve_profile(name: str, environ: Mapping[str, str] | None = None) -> Profile:
    """The named profile with environment overrides applied, each validated by name.

    Overrides: SOAK_TEST_DURATION_HOURS, SOAK_SAMPLING_INTERVAL, SOAK_MAX_CONNECTIONS,
    SOAK_SESSION_SPAWNS_PER_MINUTE, SOAK_DB_OPS_PER_MINUTE."""
    try:
        base = PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile {name!r} (choose from {', '.join(PROFILES)})", key="profile"
        ) from None
    return dataclasses.replace(
        base,
        duration_seconds=env_override(
            "SOAK_TEST_DURATION_HOURS", _positive_hours, base.duration_seconds, environ
        ),
        sampling_interval_seconds=env_override(
            "SOAK_SAMPLING_INTERVAL", _positive_duration, base.sampling_interval_seconds, environ
        ),
        max_concurrent_connections=env_override(
            "SOAK_MAX_CONNECTIONS", _positive_int, base.max_concurrent_connections, environ
        ),
        session_spawns_per_minute=env_override(
            "SOAK_SESSION_SPAWNS_PER_MINUTE",
            _positive_float,
            base.session_spawns_per_minute,
            environ,
        ),
        db_operations_per_minute=env_override(
            "SOAK_DB_OPS_PER_MINUTE", _positive_float, base.db_operations_per_minute, environ
        ),
    )
