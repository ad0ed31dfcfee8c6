"""HTTP scenario: one request per scheduled operation, endpoints picked by weight."""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate

import aiohttp

from soakwatch.load.config import AuthSettings, HttpCall, HttpScenario
from soakwatch.load.outcomes import classify_exception, classify_status

__all__ = ["HttpLoad", "WeightedPicker", "drain", "fetch", "new_session", "send"]

GOLDEN = 0.6180339887498949  # low-discrepancy sequence: endpoints interleave evenly


class WeightedPicker:
    """Picks item ``n`` of a weighted list deterministically (no RNG state, even spread)."""

    def __init__(self, weights: list[float]) -> None:
        total = sum(weights)
        self._bounds = [w / total for w in accumulate(weights)]

    def index(self, n: int) -> int:
        return min(bisect_right(self._bounds, (n * GOLDEN) % 1.0), len(self._bounds) - 1)


def new_session(limit: int) -> aiohttp.ClientSession:
    """A client session whose connector holds up to ``limit`` connections (0: no limit).

    Timeouts are the driver's job (one deadline around the whole operation)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),  # no per-response state kept across a long run
        auto_decompress=True,
    )


async def drain(response: aiohttp.ClientResponse) -> None:
    """Read and discard the body in chunks: memory stays bounded whatever the reply size."""
    async for _ in response.content.iter_chunked(65536):
        pass


async def send(session: aiohttp.ClientSession, call: HttpCall) -> str:
    """One request; the outcome class of its reply."""
    async with session.request(
        call.method, call.url, headers=call.headers or None, data=call.body
    ) as response:
        await drain(response)
        return classify_status(response.status)


async def fetch(
    session: aiohttp.ClientSession, call: HttpCall | AuthSettings, limit: int
) -> tuple[int, bytes]:
    """One request whose reply is read (a session id, a token): its status and at most
    ``limit`` bytes of its body."""
    async with session.request(
        call.method, call.url, headers=call.headers or None, data=call.body
    ) as response:
        return response.status, await response.content.read(limit)


class HttpLoad:
    """Scenario object: ``operate(n)`` sends the n-th request of the schedule."""

    def __init__(self, scenario: HttpScenario, session: aiohttp.ClientSession) -> None:
        self.scenario = scenario
        self._session = session
        self._picker = WeightedPicker([e.weight for e in scenario.endpoints])

    async def operate(self, n: int) -> str:
        endpoints = self.scenario.endpoints
        call = endpoints[self._picker.index(n)] if len(endpoints) > 1 else endpoints[0]
        return await send(self._session, call)

    def classify(self, exc: BaseException) -> str:
        return classify_exception(exc)

    async def close(self) -> None:
        await self._session.close()
