"""The config border (configfile, durations, profiles) and the console: every bad value is
rejected with a message naming the file (or variable) and the key path, secrets never echo,
and output never raises on a narrow console encoding."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from soakwatch.configfile import Section, check_url, env_override, redact_url
from soakwatch.console import safe_text
from soakwatch.durations import format_duration, parse_duration, parse_rate
from soakwatch.errors import ConfigError, SoakwatchError
from soakwatch.profiles import PROFILES, resolve_profile

DATA = Path(__file__).parent / "data"
SECRET = "hunter2"


# -- a small schema, parsed the way the components parse theirs -----------------------------
@dataclass(frozen=True)
class ProbeSettings:
    kind: str
    url: str | None
    timeout_seconds: float

    @classmethod
    def from_section(cls, section: Section) -> ProbeSettings:
        probe = cls(
            kind=section.string("kind", choices=("http", "tcp")),
            url=section.url("url", None, schemes=("http", "https")),
            timeout_seconds=section.duration("timeout", 5.0),
        )
        section.finish()
        return probe


@dataclass(frozen=True)
class ServiceSettings:
    name: str
    probes: tuple[ProbeSettings, ...]

    @classmethod
    def from_section(cls, section: Section) -> ServiceSettings:
        service = cls(
            name=section.string("name"),
            probes=tuple(ProbeSettings.from_section(s) for s in section.sections("probes")),
        )
        section.finish()
        return service


@dataclass(frozen=True)
class ExampleConfig:
    interval_seconds: float
    rate_per_second: float
    enabled: bool
    prometheus_url: str | None
    services: tuple[ServiceSettings, ...]

    @classmethod
    def load(cls, path: Path) -> ExampleConfig:
        section = Section.load(path)
        config = cls(
            interval_seconds=section.duration("interval", 15.0),
            rate_per_second=section.rate("rate", 1.0),
            enabled=section.boolean("enabled", True),
            prometheus_url=section.url("prometheus_url", None, schemes=("http", "https")),
            services=tuple(ServiceSettings.from_section(s) for s in section.sections("services")),
        )
        section.finish()
        return config


INVALID_FILES = {
    "unknown-top-key": "intervall: unknown key",
    "unknown-probe-key": (
        "services[0].probes[0].timout: unknown key 'timout' (did you mean 'timeout'?)"
    ),
    "negative-interval": "interval: not a duration: '-5s' (a duration cannot be negative)",
    "negative-interval-number": "interval: must be greater than 0, got -5",
    "interval-words": (
        "interval: not a duration: 'fifteen seconds' (use e.g. 30s, 15m, 2h, 1h30m)"
    ),
    "interval-list": "interval: expected a duration, got list",
    "zero-rate": "rate: must be greater than 0, got '0/s'",
    "url-without-host": (
        "prometheus_url: not a valid URL (needs scheme://host): 'http://admin:***@:9090'"
    ),
    "url-bad-port": "prometheus_url: not a valid URL: 'http://admin:***@prometheus:99999'",
    "url-scheme": (
        "prometheus_url: URL scheme must be one of http, https: 'ftp://admin:***@prometheus/'"
    ),
    "boolean": "enabled: expected true or false, got 'yes'",
    "not-a-mapping": "expected a mapping, got list",
    "service-not-a-mapping": "services[0]: expected a mapping, got str",
    "service-without-name": "services[0].name: required key is missing",
    "probe-kind": "services[0].probes[0].kind: must be one of http, tcp, got 'ftp'",
    "duplicate-key": "not valid YAML at line 3: duplicate key 'interval'",
    "not-yaml": "not valid YAML at line 2",
    "not-utf8": "not UTF-8 text at line 2 (byte 0xe9)",
}


# Files of the real loaders (below), not of the example schema.
LOADER_FILES = ("invalid-typo-", "invalid-credentials-")


def test_every_invalid_file_has_an_expected_message() -> None:
    on_disk = {
        p.name[len("invalid-") : -len(".yaml")]
        for p in DATA.glob("invalid-*.yaml")
        if not p.name.startswith(LOADER_FILES)
    }
    assert on_disk == set(INVALID_FILES)
    loader_files = {p.name for p in DATA.glob("invalid-*.yaml") if p.name.startswith(LOADER_FILES)}
    assert loader_files == {f"invalid-typo-{name}.yaml" for name in TYPOS} | {
        f"invalid-credentials-{name}.yaml" for name in DOUBLE_CREDENTIALS
    }


@pytest.mark.parametrize(("name", "expected"), sorted(INVALID_FILES.items()))
def test_an_invalid_file_is_rejected_with_a_message_naming_the_file_and_key_path(
    name: str, expected: str
) -> None:
    path = DATA / f"invalid-{name}.yaml"
    with pytest.raises(ConfigError) as caught:
        ExampleConfig.load(path)
    assert str(caught.value) == f"{path}: {expected}"
    assert caught.value.source == str(path)
    assert caught.value.exit_code == 2
    # Nor in a printed traceback: chained exceptions could carry the raw value along.
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_a_valid_file_parses_into_typed_values(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "interval: 1m30s\nrate: 5/min\nenabled: false\n"
        "prometheus_url: http://127.0.0.1:9090\n"
        "services:\n  - name: api\n    probes:\n      - {kind: tcp, timeout: 500ms}\n"
    )
    config = ExampleConfig.load(path)
    assert config == ExampleConfig(
        interval_seconds=90.0,
        rate_per_second=5 / 60,
        enabled=False,
        prometheus_url="http://127.0.0.1:9090",
        services=(ServiceSettings("api", (ProbeSettings("tcp", None, 0.5),)),),
    )


def test_a_merge_key_may_be_overridden_without_counting_as_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base {kind: http, timeout: 1s}\nprobe:\n  <<: *base\n  kind: tcp\n")
    section = Section.load(path)
    assert section.section("probe").string("kind") == "tcp"


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        Section.load(path)
    assert str(caught.value) == f"{path}: cannot read config file: No such file or directory"


# -- hostile input (issue 13) -------------------------------------------------------------
def load_with(loader: str) -> Callable[[Path], Any]:
    """The real loader of one kind of config file, as its CLI calls it."""
    if loader == "rules":
        from soakwatch.rules import load_rules

        return load_rules
    if loader == "exporter":
        from soakwatch.exporter.config import load_config as load_exporter

        return lambda path: load_exporter(path, environ={})
    if loader == "load":
        from soakwatch.load.config import load_config as load_load

        return lambda path: load_load(path, environ={})
    from soakwatch.run.config import load_run_config

    return load_run_config


# loader -> the message of its invalid-typo-<loader>.yaml: a misspelt required key
TYPOS = {
    "rules": "rules.memory_growth.treshold: unknown key 'treshold' (did you mean 'threshold'?)",
    "exporter": "services[0].mach: unknown key 'mach' (did you mean 'match'?)",
    "load": "scenarios[0].rat: unknown key 'rat' (did you mean 'rate'?)",
    "run": "checks[0].targt: unknown key 'targt' (did you mean 'target'?)",
}


@pytest.mark.parametrize(("loader", "message"), sorted(TYPOS.items()))
def test_a_misspelt_required_key_is_called_unknown_with_a_suggestion_in_every_config_file(
    loader: str, message: str
) -> None:
    path = DATA / f"invalid-typo-{loader}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_with(loader)(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_misspelt_optional_key_gets_the_suggestion_too_even_when_only_asked_about() -> None:
    section = Section({"duraton": "1m", "rate": 1}, source="t.yaml")
    assert "duration" not in section  # the reader asks, the file does not give it
    section.number("rate")
    with pytest.raises(ConfigError) as caught:
        section.finish()
    assert str(caught.value) == "t.yaml: duraton: unknown key 'duraton' (did you mean 'duration'?)"


def test_a_missing_required_key_without_a_look_alike_is_still_missing() -> None:
    section = Section({"description": "x"}, source="t.yaml")
    with pytest.raises(ConfigError) as caught:
        section.number("threshold")
    assert str(caught.value) == "t.yaml: threshold: required key is missing"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e308", 1e308),
        ("1E3", 1000.0),
        (".5", 0.5),
        ("+1.0e-3", 0.001),
        ("1.0e3", 1000.0),
        ("-2E-2", -0.02),
        (".inf", float("inf")),
        ("'1e3'", 1000.0),  # quoted: a number all the same
    ],
)
def test_a_number_in_any_yaml_float_spelling_is_a_number(
    tmp_path: Path, text: str, value: float
) -> None:
    path = tmp_path / "n.yaml"
    path.write_text(f"threshold: {text}\n")
    assert Section.load(path).number("threshold") == value


def test_a_threshold_of_1e308_loads_into_the_rules_model(tmp_path: Path) -> None:
    from soakwatch.rules import load_rules

    path = tmp_path / "rules.yaml"
    typo = (DATA / "invalid-typo-rules.yaml").read_text()
    path.write_text(typo.replace("treshold: 2", "threshold: 1e308"))
    assert load_rules(path).rules["memory_growth"].threshold == 1e308


@pytest.mark.parametrize(
    ("text", "accessor", "message"),
    [
        ("1e", "number", "v: expected a number, got '1e'"),
        ("e3", "number", "v: expected a number, got 'e3'"),
        ("nan", "number", "v: expected a number, got 'nan'"),
        (".nan", "number", "v: must be a number, got NaN"),
        ("1e3", "small", "v: must be at most 10, got 1000"),
        (".inf", "small", "v: must be at most 10, got inf"),
        (".inf", "whole", "v: expected a whole number, got inf"),
        (".nan", "whole", "v: expected a whole number, got nan"),
        ("1" * 400, "number", "v: 111111111111... is out of range"),
        ("1e3", "duration", None),
        ("2.5E1", "rate", None),
        (".inf", "duration", "v: not a finite duration: inf"),
    ],
)
def test_numbers_from_text_keep_their_range_checks_and_non_numbers_stay_errors(
    text: str, accessor: str, message: str | None
) -> None:
    import yaml

    section = Section(yaml.safe_load(f"v: {text}"), source="t.yaml")
    read: dict[str, Callable[[], object]] = {
        "number": lambda: section.number("v"),
        "small": lambda: section.number("v", maximum=10),
        "whole": lambda: section.number("v", integer=True),
        "duration": lambda: section.duration("v"),
        "rate": lambda: section.rate("v"),
    }
    if message is None:
        assert read[accessor]() in (1000.0, 25.0)
        return
    with pytest.raises(ConfigError) as caught:
        read[accessor]()
    assert str(caught.value) == f"t.yaml: {message}"


NESTED = 1000


def nested_file(tmp_path: Path, levels: int = NESTED) -> Path:
    """A config nested ``levels`` deep, block mappings and flow lists mixed, as a generator
    gone wrong (or a fuzzer) writes it."""
    half = levels // 2
    block = "".join(f"{'  ' * i}k{i}:\n" for i in range(half))
    flow = "  " * half + "[" * (levels - half) + "]" * (levels - half) + "\n"
    path = tmp_path / "nested.yaml"
    path.write_text(block + flow)
    return path


# command line of each CLI reading the file given last
CLIS = {
    "exporter": ["soak-exporter", "--check", "--config"],
    "load": ["soak", "load", "--config"],
    "rules": ["soak-analyze", "--list-rules", "--rules"],
    "run": ["soak", "run", "--config"],
}


@pytest.mark.parametrize("cli", sorted(CLIS))
def test_a_config_nested_1000_levels_deep_is_exit_2_naming_the_file_in_every_cli(
    tmp_path: Path, cli: str
) -> None:
    path = nested_file(tmp_path)
    program, *args = CLIS[cli]
    done = subprocess.run(
        [str(Path(sys.executable).parent / program), *args, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    prog = program if program != "soak" else f"soak {args[0]}"
    assert (done.returncode, done.stderr) == (
        2,
        f"{prog}: {path}: not valid YAML at line 101: nested deeper than 100 levels\n",
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &a [1, *a]\n", "not valid YAML at line 1: alias *a refers to a value that holds it"),
        (
            "a: &a\n  b: *a\n",
            "not valid YAML at line 2: alias *a refers to a value that holds it",
        ),
        (
            "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 6)),
            "not valid YAML at line 5: more than 100000 values once its aliases are expanded",
        ),
        (
            "m0: &m0 {x: 1}\n" + "".join(f"m{i}: &m{i} {{<<: *m{i - 1}}}\n" for i in range(1, 150)),
            "not valid YAML at line 101: nested deeper than 100 levels (through aliases)",
        ),
        ("n: " + "9" * 5000 + "\n", "not valid YAML: a value cannot be read"),
    ],
    ids=["recursive-list", "recursive-mapping", "billion-laughs", "merge-chain", "huge-integer"],
)
def test_hostile_yaml_is_a_config_error_before_any_value_is_built(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Section.load(path)
    assert str(caught.value) == f"{path}: {problem}"


def test_a_config_100_levels_deep_is_still_read(tmp_path: Path) -> None:
    section = Section.load(nested_file(tmp_path, levels=100))
    assert section.keys() == ["k0"]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("https://u:hunter2@127.0.0.1:1/", "'https://u:***@127.0.0.1:1/'"),
        ("postgresql://db/soak?password=hunter2", "'postgresql://db/soak?password=***'"),
        ("u:hunter2@127.0.0.1:5432", "'u:***@127.0.0.1:5432'"),
    ],
)
def test_a_url_with_a_password_under_a_key_that_wants_something_else_is_shown_redacted(
    value: str, shown: str
) -> None:
    section = Section({"interval": value}, source="t.yaml")
    with pytest.raises(ConfigError) as caught:
        section.duration("interval")
    assert str(caught.value) == (
        f"t.yaml: interval: not a duration: {shown} (use e.g. 30s, 15m, 2h, 1h30m)"
    )


# loader -> the message of its invalid-credentials-<loader>.yaml
DOUBLE_CREDENTIALS = {
    "exporter": (
        "services[0].probes[0].target: credentials in the URL and "
        "services[0].probes[0].headers.Authorization both given; use one"
    ),
    "load": (
        "scenarios[0].endpoints[1].url: credentials in the URL and "
        "scenarios[0].endpoints[1].headers.authorization both given; use one"
    ),
}


@pytest.mark.parametrize(("loader", "message"), sorted(DOUBLE_CREDENTIALS.items()))
def test_credentials_in_the_url_and_an_authorization_header_are_an_error_naming_both(
    loader: str, message: str
) -> None:
    path = DATA / f"invalid-credentials-{loader}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_with(loader)(path)
    assert str(caught.value) == f"{path}: {message}"
    assert SECRET not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize("loader", sorted(DOUBLE_CREDENTIALS))
def test_credentials_in_the_url_alone_or_a_header_alone_are_accepted(
    tmp_path: Path, loader: str
) -> None:
    text = (DATA / f"invalid-credentials-{loader}.yaml").read_text()
    for kept in (
        text.replace("soak:hunter2@", ""),  # the header alone
        "\n".join(line for line in text.splitlines() if "headers:" not in line),  # URL alone
    ):
        path = tmp_path / "ok.yaml"
        path.write_text(kept)
        load_with(loader)(path)


def test_the_load_scenario_with_one_url_is_checked_for_double_credentials_too() -> None:
    from soakwatch.load.config import load_config

    data = {
        "scenarios": [
            {
                "kind": "http",
                "rate": "1/s",
                "url": "http://u:hunter2@127.0.0.1/",
                "headers": {"Authorization": "Bearer x"},
            }
        ]
    }
    with pytest.raises(ConfigError) as caught:
        load_config(data=data, source="soak.yaml", environ={})
    assert str(caught.value) == (
        "soak.yaml: scenarios[0].url: credentials in the URL and scenarios[0].headers."
        "Authorization both given; use one"
    )


# -- URLs and secrets ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:9090/api", "http://127.0.0.1:9090/api"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("postgresql://soak:hunter2@db:5432/soak", "postgresql://soak:***@db:5432/soak"),
        ("http://user:p@ss:hunter2@host/", "http://user:***@host/"),
        ("http://user:hunter2@[::1]:99999/", "http://user:***@[::1]:99999/"),
        ("http://user@host/", "http://user@host/"),
        (
            "postgresql://db/soak?sslmode=require&password=hunter2",
            "postgresql://db/soak?sslmode=require&password=***",
        ),
        ("http://u:hunter2@[::1/", "<unparseable url>"),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_bad_port_in_a_url_with_a_password_is_an_error_that_hides_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        check_url("http://admin:hunter2@host:port/", fail=ValueError)
    assert str(caught.value) == "not a valid URL: 'http://admin:***@host:port/'"


# -- durations and rates ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("2min", 120.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        (" 1 m ", 60.0),
        ("2.5", 2.5),
        (30, 30.0),
        ("-5", -5.0),  # a bare number passes here; the caller's range check rejects it
    ],
)
def test_parse_duration_reads_prometheus_style_units(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a duration: '' (use e.g. 30s, 15m, 2h, 1h30m)"),
        ("1h30", "not a duration: '1h30' (use e.g. 30s, 15m, 2h, 1h30m)"),
        ("-", "not a duration: '-' (use e.g. 30s, 15m, 2h, 1h30m)"),
        ("-5s", "not a duration: '-5s' (a duration cannot be negative)"),
        ("5 parsecs", "not a duration: '5 parsecs' (use e.g. 30s, 15m, 2h, 1h30m)"),
        ("nan", "not a finite duration: 'nan'"),
        ("inf", "not a finite duration: 'inf'"),
        (True, "expected a duration, got True"),
        ([1], "expected a duration, got list"),
    ],
)
def test_parse_duration_rejects_what_is_not_a_finite_duration(text: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("100/s", 100.0), ("5/min", 5 / 60), ("1000/m", 1000 / 60), ("60/2s", 30.0), ("7", 7.0)],
)
def test_parse_rate_reads_events_per_time_unit(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5/", "not a rate: '5/' (use e.g. 100/s, 5/min)"),
        ("5/fortnight", "not a rate: '5/fortnight' (use e.g. 100/s, 5/min)"),
        ("many/s", "not a rate: 'many/s' (use e.g. 100/s, 5/min)"),
        ("5/0s", "not a rate: '5/0s'"),
        ("inf/s", "not a finite rate: 'inf/s'"),
        (float("inf"), "not a finite rate: inf"),
        ({"per": "s"}, "expected a rate, got dict"),
    ],
)
def test_parse_rate_rejects_malformed_and_infinite_rates(text: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_rate(text)  # type: ignore[arg-type]
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.25, "250ms"), (90, "1m30s"), (7200, "2h"), (90061, "1d1h1m1s")]
)
def test_format_duration_gives_the_short_human_form(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    if seconds >= 1:
        assert parse_duration(text) == seconds


# -- profiles and environment overrides ------------------------------------------------------
def test_environment_overrides_replace_profile_values() -> None:
    profile = resolve_profile(
        "ci",
        environ={
            "SOAK_TEST_DURATION_HOURS": "0.5",
            "SOAK_SAMPLING_INTERVAL": "10s",
            "SOAK_MAX_CONNECTIONS": "20",
            "SOAK_SESSION_SPAWNS_PER_MINUTE": "",  # empty means unset
        },
    )
    assert profile.duration_seconds == 1800.0
    assert profile.sampling_interval_seconds == 10.0
    assert profile.max_concurrent_connections == 20
    assert profile.session_spawns_per_minute == PROFILES["ci"].session_spawns_per_minute


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SOAK_TEST_DURATION_HOURS", "-1", "must be between 0 and 720 hours, got '-1'"),
        ("SOAK_TEST_DURATION_HOURS", "1000", "must be between 0 and 720 hours, got '1000'"),
        ("SOAK_TEST_DURATION_HOURS", "two", "expected a number, got 'two'"),
        ("SOAK_TEST_DURATION_HOURS", "nan", "expected a finite number, got 'nan'"),
        ("SOAK_SAMPLING_INTERVAL", "-5s", "not a duration: '-5s' (a duration cannot be negative)"),
        ("SOAK_SAMPLING_INTERVAL", "0", "must be greater than 0, got '0'"),
        ("SOAK_MAX_CONNECTIONS", "many", "expected a whole number, got 'many'"),
        ("SOAK_MAX_CONNECTIONS", "0", "must be a whole number greater than 0, got '0'"),
        ("SOAK_DB_OPS_PER_MINUTE", "inf", "expected a finite number, got 'inf'"),
        ("SOAK_SESSION_SPAWNS_PER_MINUTE", "-3", "must be greater than 0, got '-3'"),
    ],
)
def test_a_bad_environment_override_is_an_error_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_profile("staging", environ={variable: value})
    assert str(caught.value) == f"environment: {variable}: {message}"
    assert caught.value.key == variable


def test_env_override_reads_os_environ_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOAKWATCH_TEST_LIMIT", "12")
    assert env_override("SOAKWATCH_TEST_LIMIT", int, 3) == 12
    monkeypatch.delenv("SOAKWATCH_TEST_LIMIT")
    assert env_override("SOAKWATCH_TEST_LIMIT", int, 3) == 3


def test_an_unknown_profile_is_a_config_error_listing_the_choices() -> None:
    with pytest.raises(SoakwatchError) as caught:
        resolve_profile("weekend")
    assert str(caught.value) == (
        "profile: unknown profile 'weekend' (choose from ci, staging, production, demo)"
    )


# -- the console -----------------------------------------------------------------------------
NARROW_TEXT = "memory ✓ slope → 1.2 MB/h ± 0.1 µs 💥"


def test_safe_text_replaces_what_a_narrow_stream_cannot_encode() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    assert safe_text(NARROW_TEXT, stream) == "memory ? slope ? 1.2 MB/h ± 0.1 µs ?"
    assert safe_text("plain", stream) == "plain"
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert safe_text("µ ✓", ascii_stream) == "? ?"


def _run_python(code: str, encoding: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTHONUTF8": "0"}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False
    )


def test_console_output_under_cp1252_replaces_characters_without_raising() -> None:
    code = (
        "from soakwatch import console; "
        f"console.out({NARROW_TEXT!r}); console.error({NARROW_TEXT!r}); "
        f"console.status({NARROW_TEXT!r}, final=True)"
    )
    result = _run_python(code, "cp1252")
    assert result.returncode == 0, result.stderr.decode("cp1252", errors="replace")
    expected = "memory ? slope ? 1.2 MB/h ± 0.1 µs ?\n".encode("cp1252")
    assert result.stdout.replace(b"\r\n", b"\n") == expected
    assert result.stderr.replace(b"\r\n", b"\n") == expected * 2


def test_plain_print_under_cp1252_does_raise_which_is_why_the_console_module_exists() -> None:
    result = _run_python(f"print({NARROW_TEXT!r})", "cp1252")
    assert result.returncode != 0
    assert b"UnicodeEncodeError" in result.stderr


# -- the accessors' types, as a type checker sees them -------------------------------------
TYPED_CALLS = """
from typing import Literal
from soakwatch.configfile import MISSING, Section

section = Section({}, source="t")
choices: tuple[Literal["a", "b"], ...] = ("a", "b")
reveal_type(section.string("k"))
reveal_type(section.string("k", None))
reveal_type(section.string("k", "x"))
reveal_type(section.string("k", choices=choices))
reveal_type(section.string("k", None, choices=choices))
reveal_type(section.string("k", None if choices else MISSING))
reveal_type(section.boolean("k"))
reveal_type(section.boolean("k", None))
reveal_type(section.number("k"))
reveal_type(section.number("k", 2, integer=True))
reveal_type(section.number("k", integer=True))
reveal_type(section.number("k", None))
reveal_type(section.duration("k"))
reveal_type(section.duration("k", 5.0))
reveal_type(section.duration("k", None))
reveal_type(section.rate("k"))
reveal_type(section.url("k", None))
reveal_type(section.string_list("k"))
reveal_type(section.string_list("k", ()))
reveal_type(section.convert("k", int))
reveal_type(section.convert("k", int, None))
wrong_type: int = section.string("k")
wrong_default = section.duration("k", "30s")
"""

EXPECTED_TYPES = [
    "str",
    "str | None",
    "str",
    "Literal['a'] | Literal['b']",
    "Literal['a'] | Literal['b'] | None",
    "str | None",
    "bool",
    "bool | None",
    "float",
    "int",
    "int",
    "float | None",
    "float",
    "float",
    "float | None",
    "float",
    "str | None",
    "tuple[str, ...]",
    "tuple[str, ...]",
    "int",
    "int | None",
]


def type_check(tmp_path: Path, code: str) -> tuple[list[str], list[str]]:
    """The revealed types and the error lines of ``mypy --strict`` over ``code``."""
    from mypy import api as mypy_api  # in the test extra: a CI without it must fail, not skip

    snippet = tmp_path / "snippet.py"
    snippet.write_text(code, encoding="utf-8")
    stdout, _stderr, _status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--follow-imports",
            "silent",
            str(snippet),
        ]
    )
    revealed = [
        line.split('Revealed type is "', 1)[1].rstrip('"').replace("builtins.", "")
        for line in stdout.splitlines()
        if "Revealed type is" in line
    ]
    return revealed, [line for line in stdout.splitlines() if ": error:" in line]


def test_accessors_give_a_type_checker_the_type_of_the_value_and_reject_a_wrong_one(
    tmp_path: Path,
) -> None:
    revealed, errors = type_check(tmp_path, TYPED_CALLS)

    assert revealed == EXPECTED_TYPES
    assert [error.split(": error:")[0].rsplit(":", 1)[1] for error in errors] == ["28", "29"]
    assert errors[0].endswith("[assignment]")  # a str is not an int
    assert '"duration"' in errors[1]  # a duration's default is seconds, not "30s"


def test_the_lazy_exporter_names_are_visible_to_a_type_checker(tmp_path: Path) -> None:
    revealed, errors = type_check(
        tmp_path,
        "import soakwatch.exporter\n"
        "from soakwatch.exporter import start_in_process\n"
        "reveal_type(start_in_process(port=0).stop)\n"
        "reveal_type(soakwatch.exporter.InProcessExporter)\n",
    )

    assert errors == []
    assert revealed[0] == "def ()"
    assert revealed[1].endswith("-> soakwatch.exporter.inprocess.InProcessExporter")
