"""soakwatch's load driver: open-model HTTP, WebSocket, session-churn and database load at set
rates, with bounded memory, its own /metrics and a JSON summary. ``soak load`` is its CLI."""

from __future__ import annotations

from soakwatch.load.config import LoadConfig, load_config
from soakwatch.load.driver import Driver, run_load
from soakwatch.load.histogram import LatencyHistogram
from soakwatch.load.schedule import Schedule, Stages
from soakwatch.load.summary import merge_summaries

__all__ = [
    "Driver",
    "LatencyHistogram",
    "LoadConfig",
    "Schedule",
    "Stages",
    "load_config",
    "merge_summaries",
    "run_load",
]
