"""Session churn ("agent spawn"): each operation creates a session over HTTP, uses it and
deletes it, so that leaks tied to the life cycle of server-side objects show up in a soak.

The id of the new session is read from the JSON reply of ``create`` (key ``id_field``) and
replaces ``{id}`` in the URLs and bodies of the ``use`` and ``delete`` calls. When the life
cycle is cut short after the create (the operation's deadline, a dropped connection), the
delete is still sent, best effort, in the background: the driver must not itself leak the
server-side sessions it is there to watch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp

from soakwatch.load.config import HttpCall, SessionScenario
from soakwatch.load.deadlines import within
from soakwatch.load.http import fetch, send
from soakwatch.load.outcomes import OK, PROTOCOL_ERROR, classify_exception, classify_status
from soakwatch.load.stats import ScenarioStats

__all__ = ["SessionLoad"]

log = logging.getLogger(__name__)

MAX_CREATE_REPLY_BYTES = 1 << 20
CLOSE_WAIT_SECONDS = 2.0  # at the end, how long pending late deletes may still run


class SessionLoad:
    """Scenario object: ``operate(n)`` runs one create / use / delete life cycle."""

    def __init__(
        self, scenario: SessionScenario, session: aiohttp.ClientSession, stats: ScenarioStats
    ) -> None:
        self.scenario = scenario
        self._session = session
        self._stats = stats
        self._late_deletes: set[asyncio.Task[None]] = set()

    async def operate(self, n: int) -> str:
        scenario = self.scenario
        status, body = await fetch(self._session, scenario.create, MAX_CREATE_REPLY_BYTES)
        outcome = classify_status(status)
        if outcome != OK:
            return outcome
        try:
            session_id = json.loads(body)[scenario.id_field]
        except (ValueError, TypeError, KeyError):
            return PROTOCOL_ERROR
        if not isinstance(session_id, (str, int)) or isinstance(session_id, bool):
            return PROTOCOL_ERROR
        self._stats.sessions_started += 1
        session_id = str(session_id)
        deleted = scenario.delete is None
        try:
            for call in scenario.use:
                outcome = await send(self._session, _with_id(call, session_id))
                if outcome != OK:
                    break
            if scenario.delete is not None:
                delete = _with_id(scenario.delete, session_id)
                deleted_outcome = await send(self._session, delete)
                deleted = True
                if outcome == OK:
                    outcome = deleted_outcome
        finally:
            if not deleted:  # cancelled by the deadline, or a call raised
                assert scenario.delete is not None
                self._delete_later(_with_id(scenario.delete, session_id))
        return outcome

    def _delete_later(self, call: HttpCall) -> None:
        # Bounded like the operations themselves: a stalled server must not pile tasks up.
        if len(self._late_deletes) >= self.scenario.max_in_flight:
            log.debug("scenario %r: late delete of %s skipped", self.scenario.name, call.url)
            return
        task = asyncio.get_running_loop().create_task(self._delete_quietly(call))
        self._late_deletes.add(task)
        task.add_done_callback(self._late_deletes.discard)

    async def _delete_quietly(self, call: HttpCall) -> None:
        with contextlib.suppress(Exception):
            await within(self.scenario.timeout_seconds, send(self._session, call))

    def classify(self, exc: BaseException) -> str:
        return classify_exception(exc)

    async def close(self) -> None:
        pending = set(self._late_deletes)
        if pending:
            _, late = await asyncio.wait(pending, timeout=CLOSE_WAIT_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._session.close()


def _with_id(call: HttpCall, session_id: str) -> HttpCall:
    body = call.body.replace("{id}", session_id) if call.body is not None else None
    return HttpCall(call.url.replace("{id}", session_id), call.method, call.headers, body)
