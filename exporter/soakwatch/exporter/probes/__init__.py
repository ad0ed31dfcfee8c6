"""Health probes: one module per protocol (``http``, ``tcp``, ``redis``, ``postgres``,
``clickhouse``), one kind table (``kinds.KINDS``), one runner that owns the deadline and the
``soak_probe_*`` series.

    from soakwatch.exporter.probes import ProbeRunner, parse_probe
    specs = [parse_probe(item) for item in service_section.sections("probes")]
    runner = ProbeRunner("api", specs)   # registers itself in the default registry
    runner.start()
"""

from __future__ import annotations

from soakwatch.exporter.probes.kinds import KINDS, parse_probe
from soakwatch.exporter.probes.runner import ProbeResult, ProbeRunner
from soakwatch.exporter.probes.spec import ProbeKind, ProbeSpec

__all__ = ["KINDS", "ProbeKind", "ProbeResult", "ProbeRunner", "ProbeSpec", "parse_probe"]
