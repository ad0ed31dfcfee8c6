"""The soakwatch exporter: process, connection-pool and probe metrics of services under soak.

Sidecar mode (any language) watches processes from outside; run it with ``soak-exporter``
or build it from a config with :class:`SidecarExporter`. Importing this package stays light:
it never imports numpy, scipy, grafana-client or aiohttp.
"""

from __future__ import annotations

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

__all__ = [
    "CallableMatcher",
    "CmdlineMatcher",
    "ExporterConfig",
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
]
