"""soakwatch: soak testing with evidence.

Components (each folder of the repository imports under this namespace; see the README):
``soakwatch.exporter`` (exporter/), ``soakwatch.load`` (load/), ``soakwatch.analyzer``
(analyzer/), ``soakwatch.rules`` (rules/), ``soakwatch.dashboards`` (dashboards/).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
