"""``soak run``: a whole soak against a service, from availability checks to a verdict and a
report, and ``soak run --demo``. The orchestration layer: it imports every component, and no
component imports it.

One module per concept: ``request`` (RunRequest, RunResult), ``config`` (the soak config
border), ``availability`` (checks through the exporter's probe table), ``children`` (child
processes), ``recorder`` (scrapes into the run directory, the progress line), ``prometheus``
(the one Prometheus launcher), ``localservers`` (Redis, PostgreSQL), ``analysis`` (analyze once,
render three reports), ``grafana`` (annotations), ``execute`` (the run itself), ``cli`` (the
command line) and ``demo`` (the demo and its package data)."""

from __future__ import annotations

from soakwatch.run.analysis import Analysis, analyze_run
from soakwatch.run.availability import AvailabilityError, check_availability
from soakwatch.run.cli import build_request, main
from soakwatch.run.execute import execute
from soakwatch.run.request import RunRequest, RunResult

__all__ = [
    "Analysis",
    "AvailabilityError",
    "RunRequest",
    "RunResult",
    "analyze_run",
    "build_request",
    "check_availability",
    "execute",
    "main",
]
