"""The load driver's config border: defaults, profiles, flags over files, exact errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from soakwatch.errors import ConfigError
from soakwatch.load.cli import main
from soakwatch.load.config import (
    DatabaseScenario,
    HttpScenario,
    SessionScenario,
    WebSocketScenario,
    load_config,
)

DATA = Path(__file__).parent.parent / "data"

INVALID = [
    (
        "load-invalid-unknown-key.yaml",
        "scenarios[0].timout: unknown key 'timout' (did you mean 'timeout'?)",
    ),
    ("load-invalid-rate-zero.yaml", "scenarios[0].rate: must be greater than 0, got '0/s'"),
    (
        "load-invalid-rate-negative.yaml",
        "scenarios[0].rate: must be greater than 0, got '-5/min'",
    ),
    (
        "load-invalid-url.yaml",
        "scenarios[0].endpoints[0].url: not a valid URL (needs scheme://host): 'htp//nowhere'",
    ),
    (
        "load-invalid-ws-scheme.yaml",
        "scenarios[0].url: URL scheme must be one of ws, wss: 'http://127.0.0.1:8080/ws'",
    ),
    (
        "load-invalid-kind.yaml",
        "scenarios[0].kind: must be one of http, websocket, sessions, redis, postgres, "
        "clickhouse, python, got 'smtp'",
    ),
    ("load-invalid-top-key.yaml", "durration: unknown key 'durration' (did you mean 'duration'?)"),
    (
        "load-invalid-on-failure.yaml",
        "scenarios[0].auth.on_failure: must be one of error, skip, got 'ignore'",
    ),
    ("load-invalid-shard.yaml", "shard: expected i/N with 0 <= i < N, got '4/4'"),
    (
        "load-invalid-redis-command.yaml",
        """scenarios[0].statements: 'SET soak:{n} "unclosed': No closing quotation""",
    ),
]


# Issue 14, bad input: thresholds and Python scenarios, rejected before any traffic is sent.
THRESHOLDS_AND_FUNCTIONS = [
    (
        "load-invalid-threshold-syntax.yaml",
        "thresholds[0]: 'p95<200': a latency needs a number and a unit (us, ms or s), got '200'",
    ),
    (
        "load-invalid-threshold-statistic.yaml",
        "thresholds[0]: 'web:latency<200ms': unknown statistic 'latency' "
        "(one of p50, p90, p95, p99, max, error_ratio, rate)",
    ),
    (
        "load-invalid-threshold-scenario.yaml",
        "thresholds[1]: 'api:error_ratio<0.01': no scenario named 'api' (scenarios: web)",
    ),
    (
        "load-invalid-function-import.yaml",
        "scenarios[0].function: cannot import module 'soak_no_such_module': "
        "No module named 'soak_no_such_module'",
    ),
    (
        "load-invalid-function-not-async.yaml",
        "scenarios[0].function: 'json:dumps' is not an async function "
        "(expected: async def dumps(client))",
    ),
    (
        "load-invalid-function-attribute.yaml",
        "scenarios[0].function: module 'json' has no attribute 'no_such_flow'",
    ),
    (
        "load-invalid-function-shape.yaml",
        "scenarios[0].function: expected package.module:name, got 'json.dumps'",
    ),
]
INVALID += THRESHOLDS_AND_FUNCTIONS


@pytest.mark.parametrize(
    ("name", "message"), THRESHOLDS_AND_FUNCTIONS, ids=[n for n, _ in THRESHOLDS_AND_FUNCTIONS]
)
def test_a_bad_threshold_or_function_is_exit_2_naming_the_file_and_key(
    name: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / name
    assert main(["--config", str(path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"soak load: {path}: {message}"


@pytest.mark.parametrize(("name", "message"), INVALID, ids=[n for n, _ in INVALID])
def test_a_bad_config_file_is_rejected_with_a_message_naming_the_file_and_key(
    name: str, message: str
) -> None:
    path = DATA / name
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: {message}"


@pytest.mark.parametrize(("name", "message"), INVALID[:3], ids=[n for n, _ in INVALID[:3]])
def test_soak_load_exits_2_and_prints_the_config_error(
    name: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / name
    assert main(["--config", str(path), "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == f"soak load: {path}: {message}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--http", "http://127.0.0.1:1/", "--rate", "0/s"],
            "soak load: command line: rate: must be greater than 0, got '0/s'",
        ),
        (
            ["--http", "localhost:8080", "--rate", "5/s"],
            "soak load: command line: url: not a valid URL (needs scheme://host): 'localhost:8080'",
        ),
        (["--http", "http://127.0.0.1:1/"], "soak load: --http needs --rate (e.g. --rate 100/s)"),
        (
            ["--http", "http://127.0.0.1:1/", "--rate", "5/s", "--duration", "soon"],
            "soak load: command line: duration: not a duration: 'soon' "
            "(use e.g. 30s, 15m, 2h, 1h30m)",
        ),
        (
            ["--ws", "ws://127.0.0.1:1/", "--connections", "many"],
            "soak load: command line: connections: expected a number, got 'many'",
        ),
        (
            ["--duration", "5s"],
            "soak load: command line: scenarios: no scenarios: give --http URL, --ws URL or a "
            "--config file with 'scenarios'",
        ),
        (["--bogus"], "soak load: unrecognized arguments: --bogus"),
    ],
)
def test_soak_load_exits_2_on_bad_flags_with_a_message_naming_the_flag_value(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == message


def test_a_full_config_file_becomes_typed_scenarios_with_defaults_filled(tmp_path: Path) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(
        """
duration: 2m
ramp_up: 30s
ramp_down: 10s
shard: 1/3
metrics_listen: 127.0.0.1:0
scenarios:
  - kind: http
    name: api
    rate: 600/min
    endpoints:
      - {url: "http://127.0.0.1:8080/a", weight: 3}
      - {url: "http://127.0.0.1:8080/b", method: POST, body: "{}",
         headers: {Content-Type: application/json}}
  - kind: websocket
    url: ws://127.0.0.1:8080/ws
    connections: 50
    auth: {url: "http://127.0.0.1:8080/token", present_as: query}
  - kind: sessions
    rate: 5/min
    create: {url: "http://127.0.0.1:8080/sessions"}
    use: [{url: "http://127.0.0.1:8080/sessions/{id}"}]
    delete: {url: "http://127.0.0.1:8080/sessions/{id}"}
  - kind: redis
    url: redis://127.0.0.1:6379/0
    rate: 1000/min
    statements: ["SET soak:{n} x", "GET soak:{n}"]
""",
        encoding="utf-8",
    )
    config = load_config(path, environ={})
    assert config.stages.total_seconds == 160.0
    assert config.shard == (1, 3)
    assert config.metrics_listen == ("127.0.0.1", 0)
    http, ws, sessions, redis = config.scenarios
    assert isinstance(http, HttpScenario) and http.name == "api"
    assert http.rate_per_second == 10.0
    assert [e.weight for e in http.endpoints] == [3.0, 1.0]
    assert http.endpoints[1].headers == (("Content-Type", "application/json"),)
    assert http.max_in_flight == 60  # 10/s x 5 s timeout x 1.2 headroom
    assert isinstance(ws, WebSocketScenario) and ws.auth is not None
    assert ws.auth.present_as == "query" and ws.auth.on_failure == "error"
    assert isinstance(sessions, SessionScenario) and sessions.create.method == "POST"
    assert sessions.delete is not None and sessions.delete.method == "DELETE"
    assert isinstance(redis, DatabaseScenario) and redis.statements[1] == "GET soak:{n}"


def test_a_profile_fills_duration_connections_and_rates_that_the_config_leaves_out(
    tmp_path: Path,
) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(
        "scenarios:\n"
        "  - {kind: websocket, url: 'ws://127.0.0.1:1/ws'}\n"
        "  - {kind: sessions, create: {url: 'http://127.0.0.1:1/s'}}\n"
        "  - {kind: postgres, url: 'postgresql://u@127.0.0.1:1/db', statements: [SELECT 1]}\n",
        encoding="utf-8",
    )
    config = load_config(path, profile="staging", environ={})
    ws, sessions, postgres = config.scenarios
    assert config.stages.steady_seconds == 12 * 3600
    assert isinstance(ws, WebSocketScenario) and ws.connections == 500
    assert isinstance(sessions, SessionScenario) and sessions.rate_per_second == 10 / 60
    assert isinstance(postgres, DatabaseScenario) and postgres.rate_per_second == 1000 / 60


def test_flags_override_the_file_and_the_profile(tmp_path: Path) -> None:
    path = tmp_path / "load.yaml"
    path.write_text(
        "duration: 1h\nsummary: a.json\nscenarios: [{kind: http, url: 'http://h/', rate: 1}]\n",
        encoding="utf-8",
    )
    config = load_config(
        path, flags={"duration": "10s", "summary": "b.json"}, profile="ci", environ={}
    )
    assert config.stages.steady_seconds == 10.0
    assert config.summary_path == "b.json"


def test_the_auth_url_comes_from_e2e_auth_service_url_when_set_and_is_validated() -> None:
    scenario = {
        "kind": "websocket",
        "url": "ws://127.0.0.1:1/ws",
        "connections": 1,
        "auth": {"url": "http://127.0.0.1:1/token"},
    }
    config = load_config(
        flag_scenarios=[scenario], environ={"E2E_AUTH_SERVICE_URL": "http://auth.local/t"}
    )
    ws = config.scenarios[0]
    assert isinstance(ws, WebSocketScenario) and ws.auth is not None
    assert ws.auth.url == "http://auth.local/t"
    with pytest.raises(ConfigError) as caught:
        load_config(flag_scenarios=[scenario], environ={"E2E_AUTH_SERVICE_URL": "nope"})
    assert str(caught.value) == (
        "environment: E2E_AUTH_SERVICE_URL: not a valid URL (needs scheme://host): 'nope'"
    )


def test_an_auto_shard_takes_its_index_from_the_environment_or_picks_one_in_range() -> None:
    def shard(environ: dict[str, str]) -> tuple[int, int]:
        scenario = {"kind": "http", "url": "http://h/", "rate": 1}
        config = load_config(flags={"shard": "auto/4"}, flag_scenarios=[scenario], environ=environ)
        return config.shard

    assert shard({"SOAK_SHARD_INDEX": "2", "JOB_COMPLETION_INDEX": "1"}) == (2, 4)
    assert shard({"JOB_COMPLETION_INDEX": "1"}) == (1, 4)
    assert all(0 <= shard({})[0] < 4 for _ in range(20))
    with pytest.raises(ConfigError) as caught:
        shard({"JOB_COMPLETION_INDEX": "4"})
    assert str(caught.value) == "command line: shard: expected i/N with 0 <= i < N, got 'auto/4'"


def test_a_mapping_from_another_config_file_is_checked_with_its_source_named() -> None:
    data = {"scenarios": [{"kind": "websocket", "url": "ws://127.0.0.1:1/"}]}
    with pytest.raises(ConfigError) as caught:
        load_config(data=data, source="soak.yaml: load", environ={})
    assert str(caught.value) == "soak.yaml: load: scenarios[0].connections: required key is missing"
    config = load_config(data=data, source="soak.yaml: load", profile="ci", environ={})
    assert config.scenarios[0].connections == 50  # type: ignore[union-attr]
