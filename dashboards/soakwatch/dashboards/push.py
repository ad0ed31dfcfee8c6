"""Put the dashboards into a Grafana folder and mark soak runs on them, through grafana-client.

Kept thin on purpose: find or create the folder, upsert each dashboard (``overwrite``), add an
annotation. Anything Grafana refuses becomes a :class:`~soakwatch.errors.SourceError` naming
the call and Grafana's answer (credentials never appear in it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from soakwatch.configfile import redact_url
from soakwatch.errors import SourceError

__all__ = [
    "DEFAULT_FOLDER_TITLE",
    "DEFAULT_FOLDER_UID",
    "Pushed",
    "annotate_run",
    "connect",
    "ensure_folder",
    "mark_run",
    "push_dashboards",
]

log = logging.getLogger(__name__)

DEFAULT_FOLDER_TITLE = "Soak"
DEFAULT_FOLDER_UID = "soakwatch"
RUN_TAG = "soakwatch"


@dataclass(frozen=True)
class Pushed:
    """One dashboard as Grafana stored it."""

    uid: str
    title: str
    url: str
    version: int


def connect(grafana_url: str, *, token: str | None = None, timeout_seconds: float = 10.0) -> Any:
    """A ``GrafanaApi`` for ``grafana_url`` (user:password may be in the URL; a token wins)."""
    from grafana_client.api import GrafanaApi

    try:
        return GrafanaApi.from_url(grafana_url, credential=token, timeout=timeout_seconds)
    except (ValueError, TypeError) as exc:
        raise SourceError(f"bad Grafana URL {redact_url(grafana_url)}: {exc}") from None


class _NoFolder(Exception):
    pass


@contextmanager
def _calling(what: str) -> Iterator[None]:
    from grafana_client.client import GrafanaException

    try:
        yield
    except GrafanaException as exc:
        raise SourceError(f"Grafana refused to {what}: {exc.message}") from None
    except OSError as exc:  # connection refused, DNS, TLS
        raise SourceError(f"cannot reach Grafana to {what}: {exc}") from None


def ensure_folder(
    api: Any, *, uid: str = DEFAULT_FOLDER_UID, title: str = DEFAULT_FOLDER_TITLE
) -> str:
    """The uid of the folder ``uid``, created with ``title`` when Grafana has none."""
    from grafana_client.client import GrafanaClientError

    try:
        with _calling(f"read folder {uid!r}"):
            try:
                found = api.folder.get_folder(uid)
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise
                raise _NoFolder from None
    except _NoFolder:
        pass
    else:
        return str(found["uid"])
    with _calling(f"create folder {title!r}"):
        created = api.folder.create_folder(title, uid=uid)
    log.info("created Grafana folder %s (%s)", title, uid)
    return str(created["uid"])


def push_dashboards(
    api: Any,
    dashboards: Sequence[Mapping[str, Any]],
    *,
    folder_uid: str,
    message: str = "soak dashboards push",
) -> list[Pushed]:
    """Create or replace each dashboard (by its uid) in the folder."""
    pushed = []
    for dashboard in dashboards:
        body = {**dashboard, "id": None}  # Grafana matches by uid; a stale id would conflict
        with _calling(f"save dashboard {dashboard.get('uid')!r}"):
            answer = api.dashboard.update_dashboard(
                {"dashboard": body, "folderUid": folder_uid, "overwrite": True, "message": message}
            )
        pushed.append(
            Pushed(
                uid=str(answer.get("uid", dashboard.get("uid"))),
                title=str(dashboard.get("title", "")),
                url=str(answer.get("url", "")),
                version=int(answer.get("version", 0)),
            )
        )
    return pushed


def annotate_run(
    api: Any,
    run_id: str,
    *,
    start_seconds: float,
    end_seconds: float | None = None,
    text: str | None = None,
    tags: Sequence[str] = (),
) -> int:
    """Mark a run on every dashboard (an organisation-wide annotation tagged ``soakwatch`` and
    the run id, which the dashboards' "Soak runs" annotation query shows). A run still going
    gets a point at its start; with ``end_seconds`` a region. Returns the annotation id."""
    with _calling(f"annotate run {run_id!r}"):
        answer = api.annotations.add_annotation(
            time_from=int(start_seconds * 1000),
            time_to=int(end_seconds * 1000) if end_seconds is not None else None,
            tags=[RUN_TAG, run_id, *tags],
            text=text or f"soak run {run_id}",
        )
    return int(answer.get("id", 0))


def mark_run(
    grafana_url: str,
    run_id: str,
    *,
    start_seconds: float,
    end_seconds: float | None = None,
    text: str | None = None,
    token: str | None = None,
) -> int:
    """One call for ``soak run``: connect (token from the argument or ``SOAK_GRAFANA_TOKEN``)
    and :func:`annotate_run`. Raises SourceError; a run should log it and go on."""
    api = connect(grafana_url, token=token or os.environ.get("SOAK_GRAFANA_TOKEN") or None)
    return annotate_run(
        api, run_id, start_seconds=start_seconds, end_seconds=end_seconds, text=text
    )
