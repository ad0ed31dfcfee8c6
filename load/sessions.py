"""Session churn ("agent spawn"): each operation creates a session over HTTP, uses it and
deletes it, so that leaks tied to the life cycle of server-side objects show up in a soak.

The id of the new session is read from the JSON reply of ``create`` (key ``id_field``) and
replaces ``{id}`` in the URLs and bodies of the ``use`` and ``delete`` calls."""

from __future__ import annotations

import json

import aiohttp
from soakwatch.load.config import HttpCall, SessionScenario
from soakwatch.load.http import send
from soakwatch.load.outcomes import OK, PROTOCOL_ERROR, classify_exception, classify_status
from soakwatch.load.stats import ScenarioStats

__all__ = ["SessionLoad"]

MAX_CREATE_REPLY_BYTES = 1 << 20


class SessionLoad:
    """Scenario object: ``operate(n)`` runs one create / use / delete life cycle."""

    def __init__(
        self, scenario: SessionScenario, session: aiohttp.ClientSession, stats: ScenarioStats
    ) -> None:
        self.scenario = scenario
        self._session = session
        self._stats = stats

    async def operate(self, n: int) -> str:
        scenario = self.scenario
        create = scenario.create
        async with self._session.request(
            create.method, create.url, headers=create.headers or None, data=create.body
        ) as response:
            body = await response.content.read(MAX_CREATE_REPLY_BYTES)
            outcome = classify_status(response.status)
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
        for call in scenario.use:
            outcome = await send(self._session, _with_id(call, session_id), None)
            if outcome != OK:
                break
        if scenario.delete is not None:
            deleted = await send(self._session, _with_id(scenario.delete, session_id), None)
            if outcome == OK:
                outcome = deleted
        return outcome

    def classify(self, exc: BaseException) -> str:
        return classify_exception(exc)

    async def close(self) -> None:
        await self._session.close()


def _with_id(call: HttpCall, session_id: str) -> HttpCall:
    body = call.body.replace("{id}", session_id) if call.body is not None else None
    return HttpCall(call.url.replace("{id}", session_id), call.method, call.headers, body)
