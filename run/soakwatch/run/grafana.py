"""Grafana annotations of a run (``soak run --grafana-url``): a point at the start, a region
from start to end once the verdict is known, both tagged ``soakwatch`` and the run id.
Grafana down or refusing is a warning: a soak never dies for a missing annotation."""

from __future__ import annotations

import logging
import os

from soakwatch.configfile import redact_url

__all__ = ["GRAFANA_TOKEN_VARIABLE", "mark_run_in_grafana"]

log = logging.getLogger(__name__)

GRAFANA_TOKEN_VARIABLE = "SOAK_GRAFANA_TOKEN"  # as `soak dashboards push`


def mark_run_in_grafana(
    url: str, run_id: str, start: float, end: float | None, text: str
) -> str | None:
    """Annotate the run in the Grafana at ``url``; the annotation's id, or None (logged as a
    warning, the token never shown) when Grafana could not be told."""
    token = os.environ.get(GRAFANA_TOKEN_VARIABLE) or None
    try:
        from soakwatch.dashboards.push import mark_run

        return str(
            mark_run(url, run_id, start_seconds=start, end_seconds=end, text=text, token=token)
        )
    except Exception as exc:  # SourceError, a bad answer, grafana-client missing: all alike
        reason = str(exc) or type(exc).__name__
        if token:
            reason = reason.replace(token, "***")
        log.warning(
            "Grafana annotation of run %s at %s failed (the run goes on): %s",
            run_id,
            redact_url(url),
            reason,
        )
        return None
