"""Python scenarios (``kind: python``): a multi-step flow written as an ``async def``.

    # flows.py, beside the load config (or anywhere on sys.path)
    async def login_flow(client):
        reply = await client.post("/auth/token", json={"user": "soak"}, name="login")
        client.headers["Authorization"] = f"Bearer {reply.json()['token']}"
        created = await client.post("/sessions", name="create")
        sid = created.json()["id"]
        async with client.step("use twice"):
            await client.get(f"/sessions/{sid}")
            await client.get(f"/sessions/{sid}")
        await client.delete(f"/sessions/{sid}", name="delete")

The driver starts one iteration (one call of the function) each time one is due by the
scenario's ``rate`` (open model); the iteration's outcome and latency (from the time it was due)
are the scenario's. Each step is recorded under its name: a request with ``name=`` (unnamed:
``METHOD /path``), or an ``async with client.step(NAME)`` block (requests inside it without a
name belong to it). A step's latency runs from its start to its end (service time).

A request whose reply is not 2xx fails its step and ends the iteration with that outcome
(``http_4xx``, ...) unless ``check=False``; ``reply.json()`` on a reply that is not JSON ends it
as ``protocol_error``. Any other exception the function raises ends it with the class of that
exception (``timeout``, ``closed``, ``error`` ...). Each iteration has its own client: its own
cookie jar and default ``headers`` (a fresh virtual user), over the scenario's shared
connection pool."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client.registry import Collector

from soakwatch.load.config import PythonScenario
from soakwatch.load.outcomes import (
    CUT_SHORT,
    OK,
    OUTCOMES,
    PROTOCOL_ERROR,
    classify_exception,
    classify_status,
)
from soakwatch.load.stats import ScenarioStats

if TYPE_CHECKING:
    import aiohttp
    from prometheus_client.core import Metric

__all__ = [
    "MAX_STEPS",
    "Client",
    "PythonLoad",
    "Reply",
    "StepCollector",
    "StepFailed",
    "new_step",
    "resolve_function",
    "step_summaries",
]

log = logging.getLogger(__name__)

MAX_STEPS = 50  # step names per scenario (a label set); more are counted under OTHER_STEP
OTHER_STEP = "other"
MAX_REPLY_BYTES = 8 << 20  # a reply body is kept up to this size (the rest is read and dropped)

Flow = Callable[["Client"], Awaitable[Any]]


# -- the function -------------------------------------------------------------------------------
def resolve_function(spec: Any, search: Sequence[str | Path] = ()) -> Flow:
    """The ``async def`` named by ``package.module:name``; ValueError with the reason.

    ``search``: folders tried after sys.path (the config file's folder, the current one)."""
    if not isinstance(spec, str):
        raise ValueError(f"expected package.module:name, got {type(spec).__name__}")
    module_name, colon, attribute = spec.strip().partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"expected package.module:name, got {spec!r}")
    for folder in search:
        text = str(folder)
        if text not in sys.path:
            sys.path.append(text)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        reason = str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"cannot import module {module_name!r}: {reason}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not inspect.iscoroutinefunction(target):
        raise ValueError(
            f"{spec!r} is not an async function (expected: async def {attribute}(client))"
        )
    flow: Flow = target
    return flow


# -- what the flow gets ---------------------------------------------------------------------------
class StepFailed(Exception):
    """Ends the iteration with ``outcome`` (raised by a failed step; a flow may raise it too)."""

    def __init__(self, outcome: str, message: str = "") -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} (one of {', '.join(OUTCOMES)})")
        super().__init__(message or outcome)
        self.outcome = outcome


class Reply:
    """A reply, read: ``status``, ``headers``, ``body`` (bytes), ``text``, ``json()``."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise StepFailed(PROTOCOL_ERROR, f"the reply of {self.url} is not JSON") from None


class Client:
    """One iteration's HTTP and WebSocket client (aiohttp, with its own cookie jar)."""

    def __init__(self, load: PythonLoad, session: aiohttp.ClientSession, iteration: int) -> None:
        self._load = load
        self.session = session  # aiohttp.ClientSession: cookie_jar, or anything not wrapped
        self.iteration = iteration  # the operation number of the schedule
        self.options: Mapping[str, Any] = load.scenario.options  # the scenario's `options:`
        self.headers: dict[str, str] = {}  # sent with every request of this iteration
        self._inside = 0  # open step() blocks: their unnamed requests are theirs

    def url(self, url: str) -> str:
        base = self._load.scenario.base_url
        if base and "://" not in url:
            return base.rstrip("/") + "/" + url.lstrip("/")
        return url

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Time the block as the step ``name``; an exception fails it (and goes on)."""
        self._inside += 1
        started = time.perf_counter()
        try:
            yield
        except BaseException as exc:
            self._load.record(name, _outcome_of(exc), time.perf_counter() - started, exc)
            raise
        else:
            self._load.record(name, OK, time.perf_counter() - started)
        finally:
            self._inside -= 1

    async def request(
        self,
        method: str,
        url: str,
        *,
        name: str | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> Reply:
        """Send one request (aiohttp's keyword arguments: ``json``, ``data``, ``params``,
        ``headers``, ``auth`` ...) and read its reply. Recorded as the step ``name``."""
        target = self.url(url)
        if self.headers:
            kwargs["headers"] = {**self.headers, **(kwargs.get("headers") or {})}
        step = (
            name if name is not None else (None if self._inside else _default_name(method, target))
        )
        started = time.perf_counter()
        try:
            async with self.session.request(method, target, **kwargs) as response:
                body = await response.content.read(MAX_REPLY_BYTES)
                async for _ in response.content.iter_chunked(65536):
                    pass
                reply = Reply(response.status, response.headers, body, str(response.url))
        except BaseException as exc:
            if step is not None:
                self._load.record(step, _outcome_of(exc), time.perf_counter() - started, exc)
            raise
        outcome = classify_status(reply.status)
        if step is not None:
            self._load.record(step, outcome, time.perf_counter() - started)
        if check and outcome != OK:
            raise StepFailed(outcome, f"{method} {target}: HTTP {reply.status}")
        return reply

    async def get(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Reply:
        return await self.request("DELETE", url, **kwargs)

    @contextlib.asynccontextmanager
    async def websocket(
        self, url: str, *, name: str | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """An aiohttp WebSocket over this client's session (its cookies, ``headers``); the
        handshake is the step ``name`` (default ``WS /path``)."""
        target = self.url(url)
        if self.headers:
            kwargs["headers"] = {**self.headers, **(kwargs.get("headers") or {})}
        step = name if name is not None else (None if self._inside else _default_name("WS", target))
        started = time.perf_counter()
        try:
            ws = await self.session.ws_connect(target, **kwargs)
        except BaseException as exc:
            if step is not None:
                self._load.record(step, _outcome_of(exc), time.perf_counter() - started, exc)
            raise
        if step is not None:
            self._load.record(step, OK, time.perf_counter() - started)
        try:
            yield ws
        finally:
            await ws.close()


def _default_name(method: str, url: str) -> str:
    return f"{method} {urlsplit(url).path or '/'}"


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, StepFailed):
        return exc.outcome
    if not isinstance(exc, Exception):
        return CUT_SHORT  # cancelled: the iteration's deadline or the end of the run
    if "aiohttp" in sys.modules:
        import aiohttp

        if isinstance(exc, aiohttp.WSServerHandshakeError) and exc.status >= 300:
            return classify_status(exc.status)  # a refused handshake, e.g. 401
    return classify_exception(exc)


# -- the scenario object the driver runs ---------------------------------------------------------
class PythonLoad:
    """Scenario object: ``operate(n)`` runs one iteration of the flow; ``steps`` holds a
    ScenarioStats per step name (at most MAX_STEPS, then OTHER_STEP)."""

    def __init__(
        self,
        scenario: PythonScenario,
        stats: ScenarioStats,
        buckets: tuple[float, ...],
        steps: dict[str, ScenarioStats] | None = None,
    ) -> None:
        import aiohttp

        self.scenario = scenario
        self._stats = stats
        self._buckets = buckets
        # The driver's, when it passes them: it reports and merges them (workers) itself.
        self.steps: dict[str, ScenarioStats] = steps if steps is not None else {}
        self._flow = resolve_function(scenario.function, scenario.search_path)
        self._connector = aiohttp.TCPConnector(
            limit=scenario.max_in_flight, limit_per_host=0, ttl_dns_cache=300
        )
        self._warned = False

    def record(
        self, name: str, outcome: str, seconds: float, exc: BaseException | None = None
    ) -> None:
        steps = self.steps
        if name not in steps:
            if len(steps) >= MAX_STEPS:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "scenario %r: more than %d step names; the rest count as %r",
                        self.scenario.name, MAX_STEPS, OTHER_STEP,
                    )  # fmt: skip
                name = OTHER_STEP
            if name not in steps:
                steps[name] = new_step(name, self._buckets)
        stats = steps[name]
        stats.scheduled += 1
        stats.started += 1
        stats.record(outcome, None if outcome == CUT_SHORT else seconds)
        if exc is not None and outcome == "error":
            log.debug("scenario %r step %r: %r", self.scenario.name, name, exc)

    async def operate(self, n: int) -> str:
        import aiohttp

        session = aiohttp.ClientSession(
            connector=self._connector,
            connector_owner=False,
            timeout=aiohttp.ClientTimeout(total=None),  # the iteration has one deadline
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies of IP hosts too (127.0.0.1)
        )
        self._stats.open_connections += 1  # iterations in progress
        try:
            await self._flow(Client(self, session, n))
        except StepFailed as failed:
            return failed.outcome
        finally:
            self._stats.open_connections -= 1
            await session.close()
        return OK

    def classify(self, exc: BaseException) -> str:
        return _outcome_of(exc)

    async def close(self) -> None:
        await self._connector.close()

    # -- reporting ---------------------------------------------------------------------------
    def step_summaries(self) -> dict[str, dict[str, Any]]:
        """The ``steps`` part of the scenario's summary."""
        return step_summaries(self.steps)


def new_step(name: str, buckets: tuple[float, ...]) -> ScenarioStats:
    """The counters of one step."""
    return ScenarioStats(name, "python_step", buckets)


def step_summaries(steps: Mapping[str, ScenarioStats]) -> dict[str, dict[str, Any]]:
    """The ``steps`` part of a Python scenario's summary."""
    return {name: _step_summary(stats) for name, stats in steps.items()}


def _step_summary(stats: ScenarioStats) -> dict[str, Any]:
    completed = stats.completed
    return {
        "completed": completed,
        "errors": stats.errors,
        "error_ratio": stats.errors / completed if completed else 0.0,
        "outcomes": {k: v for k, v in stats.outcomes.items() if v},
        "latency_seconds": stats.histogram.percentiles().as_dict(),
    }


class StepCollector(Collector):
    """``soak_load_step_requests_total{scenario,step,outcome,shard}`` and
    ``soak_load_step_duration_seconds{scenario,step,shard}`` of the Python scenarios."""

    def __init__(
        self,
        steps: Callable[[], Mapping[str, Mapping[str, ScenarioStats]]],
        *,
        shard: tuple[int, int],
    ) -> None:
        self._steps = steps  # scenario name -> step name -> its counters
        self._shard = f"{shard[0]}/{shard[1]}"

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        requests = CounterMetricFamily(
            "soak_load_step_requests",
            "Steps of the Python scenarios by scenario, step and outcome class",
            labels=["scenario", "step", "outcome", "shard"],
        )
        duration = HistogramMetricFamily(
            "soak_load_step_duration_seconds",
            "Time of each step of the Python scenarios, from its start to its end",
            labels=["scenario", "step", "shard"],
        )
        for scenario, steps in list(self._steps().items()):
            for name, stats in list(steps.items()):
                for outcome in OUTCOMES:
                    requests.add_metric(
                        [scenario, name, outcome, self._shard], stats.outcomes[outcome]
                    )
                cumulative = 0
                buckets = []
                for bound, count in zip(
                    (*stats.buckets, float("inf")), stats.bucket_counts, strict=True
                ):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(float(bound))
                    buckets.append((le, float(cumulative)))
                duration.add_metric(
                    [scenario, name, self._shard],
                    buckets=buckets,
                    sum_value=stats.histogram.sum_seconds,
                )
        yield requests
        yield duration
