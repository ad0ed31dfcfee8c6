"""The load driver's configuration: read once at the border (YAML file, command-line flags,
profile defaults) into frozen dataclasses. Behind ``load_config`` nothing re-checks a value.

File shape (every key documented in docs/load.md)::

    duration: 10m          # steady stage; ramp_up / ramp_down around it
    scenarios:
      - kind: http         # http | websocket | sessions | redis | postgres | clickhouse | python
        rate: 100/s
        endpoints: [{url: "http://127.0.0.1:8080/", weight: 3}]
    thresholds: ["p95<200ms", "http:error_ratio<0.01"]
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from soakwatch.addresses import parse_address
from soakwatch.configfile import Section, check_one_credential
from soakwatch.errors import ConfigError
from soakwatch.load.schedule import Stages
from soakwatch.load.thresholds import Threshold, parse_threshold
from soakwatch.profiles import Profile, resolve_profile

__all__ = [
    "AuthSettings",
    "DatabaseScenario",
    "HttpCall",
    "HttpScenario",
    "LoadConfig",
    "PythonScenario",
    "SessionScenario",
    "WebSocketScenario",
    "load_config",
    "parse_listen",
    "parse_run_id",
    "parse_shard",
]

HTTP_SCHEMES = ("http", "https")
WS_SCHEMES = ("ws", "wss")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DATABASE_KINDS = ("redis", "postgres", "clickhouse")
DATABASE_SCHEMES = {
    "redis": ("redis", "rediss", "unix"),
    "postgres": ("postgresql", "postgres"),
    "clickhouse": ("http", "https"),
}
# Prometheus buckets (seconds) for soak_load_request_duration_seconds: 1 ms .. 30 s.
DEFAULT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass(frozen=True)
class HttpCall:
    """One HTTP request: where, how, and what to send."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class HttpScenario:
    name: str
    rate_per_second: float
    endpoints: tuple[HttpCall, ...]
    timeout_seconds: float
    max_in_flight: int
    kind: str = "http"


@dataclass(frozen=True)
class AuthSettings:
    """Fetch a token from ``url`` before each connection and present it."""

    url: str
    method: str = "POST"
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    token_field: str = "token"  # JSON key of the token in the reply; "" = the whole body
    present_as: str = "header"  # header | query
    header: str = "Authorization"
    header_prefix: str = "Bearer "
    query_param: str = "token"
    on_failure: str = "error"  # when the auth service is down at start: error | skip
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class WebSocketScenario:
    name: str
    url: str
    connections: int
    interval_seconds: float
    message: str
    timeout_seconds: float
    reconnect_delay_seconds: float
    auth: AuthSettings | None
    kind: str = "websocket"


@dataclass(frozen=True)
class SessionScenario:
    name: str
    rate_per_second: float
    create: HttpCall
    use: tuple[HttpCall, ...]
    delete: HttpCall | None
    id_field: str
    timeout_seconds: float
    max_in_flight: int
    kind: str = "sessions"


@dataclass(frozen=True)
class DatabaseScenario:
    name: str
    kind: str  # redis | postgres | clickhouse
    url: str
    rate_per_second: float
    statements: tuple[str, ...]
    key_space: int
    pool_size: int
    timeout_seconds: float
    max_in_flight: int


@dataclass(frozen=True)
class PythonScenario:
    """``kind: python``: iterations of an ``async def`` flow (soakwatch.load.python)."""

    name: str
    rate_per_second: float
    function: str  # package.module:name, checked importable and async when read
    base_url: str | None
    options: Mapping[str, Any]
    timeout_seconds: float
    max_in_flight: int
    search_path: tuple[str, ...] = ()  # folders tried after sys.path: the config's, the cwd
    kind: str = "python"


Scenario = HttpScenario | WebSocketScenario | SessionScenario | DatabaseScenario | PythonScenario
RateScenario = HttpScenario | SessionScenario | DatabaseScenario | PythonScenario


@dataclass(frozen=True)
class LoadConfig:
    stages: Stages
    scenarios: tuple[Scenario, ...]
    shard: tuple[int, int] = (0, 1)
    summary_path: str | None = None
    metrics_listen: tuple[str, int] | None = None
    status_interval_seconds: float = 5.0
    summary_interval_seconds: float = 60.0
    stop_grace_seconds: float = 5.0
    profile: str | None = None
    buckets: tuple[float, ...] = field(default=DEFAULT_BUCKETS)
    run_id: str | None = None  # published as soak_run_info{run_id,profile,shard} 1 while running
    thresholds: tuple[Threshold, ...] = ()  # soakwatch.load.thresholds: the config's, then flags'


# -- small parsers (ValueError with a reason; Section.convert names the key) ----------------
def parse_shard(text: Any, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"i/N"`` with 0 <= i < N, or ``"auto/N"``: i from SOAK_SHARD_INDEX, else
    JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job), else a random i (replicas that
    cannot know their index, e.g. ``docker compose --scale``: the rates still add up)."""
    env = os.environ if environ is None else environ
    index_text, sep, count_text = str(text).partition("/")
    if index_text == "auto" and sep:
        for name in ("SOAK_SHARD_INDEX", "JOB_COMPLETION_INDEX"):
            if env.get(name):
                index_text = env[name]
                break
        else:
            with contextlib.suppress(ValueError):  # a bad N is reported below
                index_text = str(random.randrange(max(int(count_text), 1)))
    try:
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"expected i/N (e.g. 0/4), got {text!r}") from None
    if not sep or count < 1 or not 0 <= index < count:
        raise ValueError(f"expected i/N with 0 <= i < N, got {text!r}")
    return index, count


def parse_listen(text: Any) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"[::1]:PORT"`` or ``":PORT"`` (every IPv4 interface), by the one
    grammar of ``soakwatch.addresses``; port 0 picks a free one."""
    address = parse_address(text, any_host="0.0.0.0", allow_port_zero=True)
    return address.host, address.port


def parse_run_id(text: Any) -> str:
    """A run id: printable text without spaces, at most 128 characters (it becomes a label
    value, a Grafana tag and part of a dashboard link)."""
    if not isinstance(text, (str, int)) or isinstance(text, bool):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    value = str(text)
    if not value or len(value) > 128 or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError(f"expected 1 to 128 printable characters without spaces, got {value!r}")
    return value


def _headers(section: Section, key: str) -> tuple[tuple[str, str], ...]:
    headers = section.section(key)
    return tuple((name, headers.string(name)) for name in headers.keys())  # noqa: SIM118 (Section has no __iter__)


def _url_and_headers(
    section: Section, schemes: tuple[str, ...]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``url`` and ``headers`` of a request, never credentials in both."""
    url = section.url("url", schemes=schemes)
    headers = _headers(section, "headers")
    check_one_credential(section, "url", url, "headers", (name for name, _ in headers))
    return url, headers


def _call(section: Section, *, default_method: str, schemes: tuple[str, ...]) -> HttpCall:
    url, headers = _url_and_headers(section, schemes)
    call = HttpCall(
        url=url,
        method=section.string("method", default_method, choices=METHODS),
        headers=headers,
        body=section.string("body", None),
        weight=section.number("weight", 1.0, exclusive_minimum=0.0),
    )
    section.finish()
    return call


def _in_flight(section: Section, rate: float, timeout: float) -> int:
    # Enough slots for every request of one timeout window, plus headroom.
    default = min(20_000, max(16, math.ceil(rate * timeout * 1.2)))
    value: int = section.number("max_in_flight", default, minimum=1, integer=True)
    return value


def _http(section: Section, name: str) -> HttpScenario:
    rate = section.rate("rate")
    timeout = section.duration("timeout", 5.0)
    if "url" in section:
        url, headers = _url_and_headers(section, HTTP_SCHEMES)
        endpoints: tuple[HttpCall, ...] = (
            HttpCall(
                url=url,
                method=section.string("method", "GET", choices=METHODS),
                headers=headers,
                body=section.string("body", None),
            ),
        )
    else:
        endpoints = tuple(
            _call(s, default_method="GET", schemes=HTTP_SCHEMES)
            for s in section.sections("endpoints", required=True)
        )
        if not endpoints:
            raise section.error("endpoints", "needs at least one endpoint")
    return HttpScenario(name, rate, endpoints, timeout, _in_flight(section, rate, timeout))


def _auth(section: Section, environ: Mapping[str, str]) -> AuthSettings:
    url, headers = _url_and_headers(section, HTTP_SCHEMES)
    if environ.get("E2E_AUTH_SERVICE_URL"):
        name = "E2E_AUTH_SERVICE_URL"
        url = Section({name: environ[name]}, source="environment").url(name, schemes=HTTP_SCHEMES)
    auth = AuthSettings(
        url=url,
        method=section.string("method", "POST", choices=METHODS),
        body=section.string("body", None),
        headers=headers,
        token_field=section.string("token_field", "token"),
        present_as=section.string("present_as", "header", choices=("header", "query")),
        header=section.string("header", "Authorization"),
        header_prefix=section.string("header_prefix", "Bearer "),
        query_param=section.string("query_param", "token"),
        on_failure=section.string("on_failure", "error", choices=("error", "skip")),
        timeout_seconds=section.duration("timeout", 5.0),
    )
    section.finish()
    return auth


def _websocket(
    section: Section, name: str, profile: Profile | None, environ: Mapping[str, str]
) -> WebSocketScenario:
    default_connections = profile.max_concurrent_connections if profile else None
    connections = section.number(
        "connections",
        default_connections if default_connections is not None else _required(),
        minimum=1,
        integer=True,
    )
    auth = None
    if "auth" in section:
        auth = _auth(section.section("auth"), environ)
        if environ.get("SKIP_AUTH_TESTS", "").lower() in ("1", "true", "yes"):
            auth = replace(auth, on_failure="skip", url="skip://SKIP_AUTH_TESTS")
    return WebSocketScenario(
        name=name,
        url=section.url("url", schemes=WS_SCHEMES),
        connections=connections,
        interval_seconds=section.duration("interval", 1.0),
        message=section.string("message", "ping"),
        timeout_seconds=section.duration("timeout", 5.0),
        reconnect_delay_seconds=section.duration("reconnect_delay", 1.0),
        auth=auth,
    )


def _required() -> Any:
    from soakwatch.configfile import MISSING

    return MISSING


def _sessions(section: Section, name: str, profile: Profile | None) -> SessionScenario:
    default_rate = profile.session_spawns_per_minute / 60.0 if profile else _required()
    rate = section.rate("rate", default_rate)
    timeout = section.duration("timeout", 10.0)
    create = _call(section.section("create", required=True), default_method="POST",
                   schemes=HTTP_SCHEMES)  # fmt: skip
    use = tuple(
        _call(s, default_method="GET", schemes=HTTP_SCHEMES) for s in section.sections("use")
    )
    delete = None
    if "delete" in section:
        delete = _call(section.section("delete"), default_method="DELETE", schemes=HTTP_SCHEMES)
    else:
        section.raw("delete", None)
    return SessionScenario(
        name=name,
        rate_per_second=rate,
        create=create,
        use=use,
        delete=delete,
        id_field=section.string("id_field", "id"),
        timeout_seconds=timeout,
        max_in_flight=_in_flight(section, rate, timeout),
    )


def _database(section: Section, name: str, kind: str, profile: Profile | None) -> DatabaseScenario:
    default_rate = profile.db_operations_per_minute / 60.0 if profile else _required()
    rate = section.rate("rate", default_rate)
    timeout = section.duration("timeout", 5.0)
    statements = section.string_list("statements")
    if not statements:
        raise section.error("statements", "needs at least one statement")
    if kind == "redis":
        for statement in statements:
            try:
                words = shlex.split(statement)
            except ValueError as exc:
                raise section.error("statements", f"{statement!r}: {exc}") from None
            if not words:
                raise section.error("statements", "a Redis command line is empty")
    return DatabaseScenario(
        name=name,
        kind=kind,
        url=section.url("url", schemes=DATABASE_SCHEMES[kind]),
        rate_per_second=rate,
        statements=statements,
        key_space=section.number("key_space", 1000, minimum=1, integer=True),
        pool_size=section.number("pool_size", 4, minimum=1, maximum=1000, integer=True),
        timeout_seconds=timeout,
        max_in_flight=_in_flight(section, rate, timeout),
    )


def _python(section: Section, name: str, search_path: tuple[str, ...]) -> PythonScenario:
    from soakwatch.load.python import resolve_function

    rate = section.rate("rate")
    timeout = section.duration("timeout", 30.0)
    function = section.string("function")
    try:
        resolve_function(function, search_path)  # before any traffic: importable, async
    except ValueError as exc:
        raise section.error("function", str(exc)) from None
    base_url = section.url("base_url", None, schemes=HTTP_SCHEMES)
    options = section.raw("options", {})
    if not isinstance(options, Mapping):
        raise section.error("options", f"expected a mapping, got {type(options).__name__}")
    return PythonScenario(
        name=name,
        rate_per_second=rate,
        function=function,
        base_url=base_url,
        options=dict(options),
        timeout_seconds=timeout,
        max_in_flight=_in_flight(section, rate, timeout),
        search_path=search_path,
    )


SCENARIO_KINDS = ("http", "websocket", "sessions", *DATABASE_KINDS, "python")


def _scenario(
    section: Section,
    profile: Profile | None,
    environ: Mapping[str, str],
    taken: set[str],
    search_path: tuple[str, ...] = (),
) -> Scenario:
    kind = section.string("kind", choices=SCENARIO_KINDS)
    name = section.string("name", kind)
    if name in taken:
        raise section.error("name", f"duplicate scenario name {name!r}")
    taken.add(name)
    scenario: Scenario
    if kind == "http":
        scenario = _http(section, name)
    elif kind == "websocket":
        scenario = _websocket(section, name, profile, environ)
    elif kind == "sessions":
        scenario = _sessions(section, name, profile)
    elif kind == "python":
        scenario = _python(section, name, search_path)
    else:
        scenario = _database(section, name, kind, profile)
    section.finish()
    return scenario


def _top(section: Section, environ: Mapping[str, str]) -> dict[str, Any]:
    """The top-level keys present in ``section``, as LoadConfig/Stages field values."""
    values: dict[str, Any] = {}
    if "duration" in section:
        values["steady_seconds"] = section.duration("duration")
    if "ramp_up" in section:
        values["ramp_up_seconds"] = section.duration("ramp_up", exclusive_minimum=None, minimum=0)
    if "ramp_down" in section:
        values["ramp_down_seconds"] = section.duration(
            "ramp_down", exclusive_minimum=None, minimum=0
        )
    if "shard" in section:
        values["shard"] = section.convert("shard", lambda v: parse_shard(v, environ))
    if "summary" in section:
        values["summary_path"] = section.string("summary")
    if "metrics_listen" in section:
        values["metrics_listen"] = section.convert("metrics_listen", parse_listen)
    if "status_interval" in section:
        values["status_interval_seconds"] = section.duration("status_interval")
    if "summary_interval" in section:
        values["summary_interval_seconds"] = section.duration("summary_interval")
    if "stop_grace" in section:
        values["stop_grace_seconds"] = section.duration("stop_grace", minimum=0,
                                                        exclusive_minimum=None)  # fmt: skip
    if "buckets" in section:
        values["buckets"] = section.convert("buckets", _buckets)
    if "run_id" in section:
        values["run_id"] = section.convert("run_id", parse_run_id)
    return values


# A threshold and where it was written (source, key path), for the scenario check at the end.
_Placed = tuple[Threshold, str, str]


def _thresholds(section: Section) -> list[_Placed]:
    """``thresholds:``, a list of expressions or ``{threshold, abort_on_fail, abort_grace}``."""
    items = section.raw("thresholds", [])
    if not isinstance(items, list):
        raise section.error("thresholds", f"expected a list, got {type(items).__name__}")
    placed: list[_Placed] = []
    for index, item in enumerate(items):
        key = f"thresholds[{index}]"
        if isinstance(item, Mapping):
            entry = Section(item, source=section.source, path=section.key_path(key))
            threshold = entry.convert("threshold", parse_threshold)
            threshold = replace(
                threshold,
                abort_on_fail=entry.boolean("abort_on_fail", False),
                abort_grace_seconds=entry.duration(
                    "abort_grace", 0.0, minimum=0, exclusive_minimum=None
                ),
            )
            entry.finish()
        else:
            try:
                threshold = parse_threshold(item)
            except ValueError as exc:
                raise section.error(key, str(exc)) from None
        placed.append((threshold, section.source, section.key_path(key)))
    return placed


def _check_threshold_scenarios(placed: Sequence[_Placed], scenarios: Sequence[Scenario]) -> None:
    names = [scenario.name for scenario in scenarios]
    for threshold, source, key in placed:
        if threshold.scenario is not None and threshold.scenario not in names:
            raise ConfigError(
                f"{threshold.text!r}: no scenario named {threshold.scenario!r} "
                f"(scenarios: {', '.join(names)})",
                source=source,
                key=key,
            )


def _buckets(value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of seconds")
    try:
        buckets = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("expected a list of numbers (seconds)") from None
    if any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        raise ValueError("bucket bounds must be positive and strictly increasing")
    return buckets


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    flag_scenarios: Sequence[Mapping[str, Any]] | None = None,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    data: Mapping[str, Any] | None = None,
    source: str = "load config",
) -> LoadConfig:
    """Build the config: profile defaults, then the file at ``path`` (or the mapping ``data``,
    named ``source`` in errors), then ``flags`` (top-level keys as in the file) and
    ``flag_scenarios`` (scenario mappings built from flags).

    Raises ConfigError naming the file (or "command line") and the key path."""
    env = os.environ if environ is None else environ
    resolved = resolve_profile(profile, env) if profile else None
    base = LoadConfig(
        stages=Stages(0.0, resolved.duration_seconds if resolved else 60.0, 0.0),
        scenarios=(),
        profile=profile,
    )
    values: dict[str, Any] = {}
    scenarios: list[Scenario] = []
    placed: list[_Placed] = []
    taken: set[str] = set()
    # A python scenario's module may sit beside the config file, or in the current folder.
    search = tuple(dict.fromkeys([str(Path(path).resolve().parent)] if path is not None else []))
    search = (*search, os.getcwd())
    if path is not None or data is not None:
        section = Section.load(path) if path is not None else Section(data, source=source)
        values.update(_top(section, env))
        placed += _thresholds(section)
        for item in section.sections("scenarios"):
            scenarios.append(_scenario(item, resolved, env, taken, search))
        section.finish()
    if flags:
        section = Section(dict(flags), source="command line")
        values.update(_top(section, env))
        placed += _thresholds(section)
        section.finish()
    for mapping in flag_scenarios or ():
        section = Section(dict(mapping), source="command line")
        scenarios.append(_scenario(section, resolved, env, taken, search))
    if not scenarios:
        raise ConfigError(
            "no scenarios: give --http URL, --ws URL or a --config file with 'scenarios'",
            source=str(path)
            if path is not None
            else (source if data is not None else "command line"),
            key="scenarios",
        )
    _check_threshold_scenarios(placed, scenarios)
    values["thresholds"] = tuple(threshold for threshold, _, _ in placed)
    stages = replace(
        base.stages,
        **{k: values.pop(k) for k in list(values) if k.endswith("_seconds") and k in (
            "ramp_up_seconds", "steady_seconds", "ramp_down_seconds")},
    )  # fmt: skip
    return replace(base, stages=stages, scenarios=tuple(scenarios), **values)
