"""The soakwatch exporter: process, connection-pool and probe metrics of services under soak.

Sidecar mode (any language) watches processes from outside; run it with ``soak-exporter``
or build it from a config with :class:`SidecarExporter`. In-process mode (Python services):
``start_in_process(port=..., service=...)``, loaded on first use. Importing this package stays
light: it never imports numpy, scipy, grafana-client or aiohttp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from soakwatch.exporter.config import (
    ExporterConfig,
    ListenAddress,
    MatchSpec,
    PoolSpec,
    ServiceConfig,
    load_config,
    parse_config,
)
from soakwatch.exporter.matching import (
    CallableMatcher,
    CmdlineMatcher,
    PidfileMatcher,
    PidMatcher,
    ProcessTracker,
)
from soakwatch.exporter.pools import PoolCollector
from soakwatch.exporter.process import ProcessCollector
from soakwatch.exporter.server import MetricsServer, SidecarExporter, serve_metrics

if TYPE_CHECKING:
    # Type checkers see the lazy names below as what they are; at run time they load on use.
    from soakwatch.exporter.inprocess import InProcessExporter, start_in_process

__all__ = [
    "CallableMatcher",
    "CmdlineMatcher",
    "ExporterConfig",
    "InProcessExporter",
    "ListenAddress",
    "MatchSpec",
    "MetricsServer",
    "PidMatcher",
    "PidfileMatcher",
    "PoolCollector",
    "PoolSpec",
    "ProcessCollector",
    "ProcessTracker",
    "ServiceConfig",
    "SidecarExporter",
    "load_config",
    "parse_config",
    "serve_metrics",
    "start_in_process",
]

# The in-process mode is imported on first use: a sidecar never needs its GC hooks.
_IN_PROCESS = ("InProcessExporter", "start_in_process")


def __getattr__(name: str) -> Any:
    if name in _IN_PROCESS:
        return getattr(importlib.import_module("soakwatch.exporter.inprocess"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
