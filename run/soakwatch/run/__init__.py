"""``soak run``: a whole soak against a service, from availability checks to a verdict and a
report, and ``soak run --demo``. The orchestration layer: it imports every component, and no
component imports it."""

from __future__ import annotations

from soakwatch.run.core import (
    AvailabilityError,
    RunRequest,
    RunResult,
    analyze_run,
    check_availability,
    execute,
    main,
)

__all__ = [
    "AvailabilityError",
    "RunRequest",
    "RunResult",
    "analyze_run",
    "check_availability",
    "execute",
    "main",
]
