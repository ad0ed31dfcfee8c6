"""parse_probe: one item of a service's probes list, validated at the border."""

from __future__ import annotations

from typing import Any

import pytest

from soakwatch.configfile import Section
from soakwatch.errors import ConfigError
from soakwatch.exporter.probes import KINDS, ProbeRunner, ProbeSpec, parse_probe
from soakwatch.exporter.probes.http import HttpProbe
from soakwatch.exporter.probes.postgres import PostgresProbe


def probe_item(**keys: Any) -> Section:
    return Section(keys, source="soak.yaml", path="services[0].probes[1]")


def test_a_probe_gets_the_default_timeout_interval_and_status_classes() -> None:
    spec = parse_probe(probe_item(name="api", kind="http", target="http://127.0.0.1:8080/health"))
    assert spec == ProbeSpec(
        name="api",
        kind="http",
        target="http://127.0.0.1:8080/health",
        timeout_seconds=5.0,
        interval_seconds=15.0,
        settings=HttpProbe(),
    )
    assert spec.settings.accepts(204) and not spec.settings.accepts(301)


def test_kind_specific_keys_are_read_into_the_kinds_settings() -> None:
    spec = parse_probe(
        probe_item(
            name="api",
            kind="http",
            target="https://127.0.0.1/",
            timeout="2s",
            interval="1m",
            expect_status=["2xx", 301],
            body_regex="ok|healthy",
            method="HEAD",
            headers={"X-Probe": "soak"},
            tls_verify=False,
        )
    )
    assert (spec.timeout_seconds, spec.interval_seconds) == (2.0, 60.0)
    settings = spec.settings
    assert settings.expect_status == ((200, 299), (301, 301))
    assert settings.body_regex.pattern == "ok|healthy"
    assert (settings.method, settings.headers, settings.tls_verify) == (
        "HEAD",
        (("X-Probe", "soak"),),
        False,
    )


def test_every_kind_in_the_table_parses_a_minimal_probe() -> None:
    targets = {
        "http": "http://127.0.0.1:1/",
        "tcp": "127.0.0.1:1",
        "redis": "redis://127.0.0.1:6379/0",
        "postgres": "postgresql://soak@127.0.0.1:5432/soak",
        "clickhouse": "127.0.0.1:8123",
    }
    assert set(targets) == set(KINDS)
    for kind, target in targets.items():
        assert parse_probe(probe_item(name=kind, kind=kind, target=target)).kind == kind


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"kind": "ftp", "target": "x:1"},
            "soak.yaml: services[0].probes[1].kind: "
            "must be one of http, tcp, redis, postgres, clickhouse, got 'ftp'",
        ),
        (
            {"kind": "tcp", "target": "x:1", "body_regex": "ok"},
            "soak.yaml: services[0].probes[1].body_regex: unknown key",
        ),
        (
            {"kind": "tcp", "target": "localhost"},
            "soak.yaml: services[0].probes[1].target: "
            "expected host:port (the port is missing), got 'localhost'",
        ),
        (
            {"kind": "http", "target": "ftp://host/"},
            "soak.yaml: services[0].probes[1].target: "
            "URL scheme must be one of http, https: 'ftp://host/'",
        ),
        (
            {"kind": "tcp", "target": "x:1", "timeout": 0},
            "soak.yaml: services[0].probes[1].timeout: must be greater than 0, got 0",
        ),
        (
            {"kind": "tcp", "target": "x:1", "timeout": "20s"},
            "soak.yaml: services[0].probes[1].timeout: must not exceed the interval (15s), got 20s",
        ),
        (
            {"kind": "http", "target": "http://x/", "expect_status": ["ok"]},
            "soak.yaml: services[0].probes[1].expect_status: "
            "expected a status code (100-599) or a class like 2xx, got 'ok'",
        ),
        (
            {"kind": "http", "target": "http://x/", "body_regex": "("},
            "soak.yaml: services[0].probes[1].body_regex: "
            "not a valid regular expression: missing ), unterminated subpattern at position 0",
        ),
        (
            {"kind": "http", "target": "http://x/", "headers": {"Bad Header": "x"}},
            "soak.yaml: services[0].probes[1].headers.Bad Header: not a valid HTTP header",
        ),
        (
            {"kind": "postgres", "target": "x:5432", "sslmode": "prefer"},
            "soak.yaml: services[0].probes[1].sslmode: "
            "must be one of disable, require, got 'prefer'",
        ),
        (
            {"target": "x:1"},
            "soak.yaml: services[0].probes[1].kind: required key is missing",
        ),
    ],
)
def test_a_bad_probe_is_a_config_error_naming_the_file_and_key(
    keys: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probe(probe_item(name="p", **keys))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("postgres", "postgresql://soak:hunter2@127.0.0.1:99999/soak"),
        ("redis", "redis://:hunter2@127.0.0.1:70000/0"),
        ("http", "http://user:hunter2@127.0.0.1:99999/"),
        ("tcp", "user:hunter2@127.0.0.1:1"),
    ],
)
def test_an_error_about_a_target_never_shows_its_password(kind: str, target: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_probe(probe_item(name="p", kind=kind, target=target))
    assert "hunter2" not in str(caught.value)
    assert "services[0].probes[1].target" in str(caught.value)


def test_a_probe_spec_never_shows_its_password() -> None:
    spec = parse_probe(
        probe_item(
            name="db",
            kind="postgres",
            target="postgresql://soak:hunter2@127.0.0.1:5432/soak",
            password="hunter3",
        )
    )
    assert isinstance(spec.settings, PostgresProbe)
    shown = repr(spec) + repr(spec.settings) + spec.shown_target
    assert "hunter2" not in shown and "hunter3" not in shown
    assert spec.shown_target == "postgresql://soak:***@127.0.0.1:5432/soak"


def test_probe_names_must_be_unique_within_a_runner() -> None:
    spec = parse_probe(probe_item(name="same", kind="tcp", target="127.0.0.1:1"))
    with pytest.raises(ValueError, match="unique per service: same"):
        ProbeRunner("api", [spec, spec], registry=None)
