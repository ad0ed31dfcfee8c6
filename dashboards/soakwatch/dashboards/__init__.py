"""Grafana dashboards of soakwatch: the committed JSON models (``soak-overview.json``,
``soak-service.json``), the code that builds them (``build``, needs grafana-foundation-sdk) and
the push to Grafana through grafana-client (``push``). Nothing heavy is imported here."""

__all__: list[str] = []
