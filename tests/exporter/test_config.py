"""The exporter's config border: valid files parse into frozen dataclasses; each kind of
mistake is one small file under tests/data/ and one exact message naming the file and key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from soakwatch.errors import ConfigError
from soakwatch.exporter.cli import main
from soakwatch.exporter.config import (
    ExporterConfig,
    ListenAddress,
    MatchSpec,
    PoolSpec,
    load_config,
    parse_config,
    parse_listen,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
DOC = ROOT / "docs" / "exporter.md"

# file suffix -> (key path, reason); the message is "<file>: <key path>: <reason>"
INVALID = {
    "unknown-top-key": (
        "scrape_interval",
        "unknown key 'scrape_interval' (did you mean 'scan_interval'?)",
    ),
    "unknown-service-key": ("services[0].pool", "unknown key 'pool' (did you mean 'pools'?)"),
    "unknown-match-kind": ("services[0].match.process_name", "unknown key"),
    "match-missing": ("services[0].match", "required key is missing"),
    "match-empty": ("services[0].match", "exactly one of pid, pidfile, cmdline is required"),
    "match-two-kinds": ("services[0].match", "exactly one of pid, pidfile, cmdline is required"),
    "bad-regex": (
        "services[0].match.cmdline",
        "not a valid regular expression: unterminated character set at position 10",
    ),
    "negative-pid": ("services[0].match.pid", "must be at least 1, got -3"),
    "negative-scan-interval": ("scan_interval", "must be at least 0.1, got -5"),
    "bad-scan-interval": (
        "scan_interval",
        "not a duration: 'soon' (use e.g. 30s, 15m, 2h, 1h30m)",
    ),
    "bad-listen": ("listen", "expected host:port (the port is missing), got 'localhost'"),
    "listen-ipv6-no-brackets": (
        "listen",
        "an IPv6 address needs brackets, as in [::1]:9464, got '::1:9464'",
    ),
    "no-services": ("services", "at least one service is required"),
    "services-missing": ("services", "required key is missing"),
    "duplicate-service": ("services[1].name", "duplicate service name 'api'"),
    "service-name-missing": ("services[0].name", "required key is missing"),
    "pool-port-out-of-range": ("services[0].pools[0].port", "must be at most 65535, got 70000"),
    "pool-unknown-key": (
        "services[0].pools[0].hostname",
        "unknown key 'hostname' (did you mean 'host'?)",
    ),
    "duplicate-pool": ("services[0].pools[1].name", "duplicate pool name 'db'"),
    "probe-unknown-kind": (
        "services[0].probes[0].kind",
        "must be one of http, tcp, redis, postgres, clickhouse, got 'gopher'",
    ),
    "probe-url-with-password": ("services[0].probes[0].target", "Port out of range 0-65535"),
}


def test_every_invalid_exporter_file_has_an_expected_message():
    files = {
        p.name[len("exporter-invalid-") : -len(".yaml")]
        for p in DATA.glob("exporter-invalid-*.yaml")
    }
    assert files - {"not-yaml"} == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_an_invalid_config_is_rejected_with_a_message_naming_the_file_and_key(name):
    path = DATA / f"exporter-invalid-{name}.yaml"
    key, reason = INVALID[name]

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(caught.value) == f"{path}: {key}: {reason}"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_the_cli_exits_2_on_an_invalid_config_and_says_why(name, capsys):
    path = DATA / f"exporter-invalid-{name}.yaml"
    key, reason = INVALID[name]

    assert main(["--config", str(path), "--check"]) == 2

    captured = capsys.readouterr()
    assert captured.err == f"soak-exporter: {path}: {key}: {reason}\n"
    assert captured.out == ""


def test_a_file_that_is_not_yaml_is_rejected_naming_the_file(capsys):
    path = DATA / "exporter-invalid-not-yaml.yaml"
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == f"soak-exporter: {path}: not valid YAML at line 2\n"


def test_a_missing_config_file_is_rejected_naming_the_file(tmp_path, capsys):
    path = tmp_path / "nope.yaml"
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"soak-exporter: {path}: cannot read config file: No such file or directory\n"
    )


def test_a_full_config_parses_into_frozen_dataclasses(tmp_path):
    path = tmp_path / "exporter.yaml"
    path.write_text(
        "listen: '[::1]:9555'\n"
        "scan_interval: 2s\n"
        "detail_interval: 1m\n"
        "services:\n"
        "  - name: api\n"
        "    match: {cmdline: 'gunicorn .*app'}\n"
        "    pools:\n"
        "      - {name: postgres, port: 5432, host: 127.0.0.1}\n"
        "      - {name: redis, port: 6379}\n"
        "  - name: worker\n"
        "    match: {pidfile: /run/worker.pid}\n"
        "  - name: legacy\n"
        "    match: {pid: 4242}\n"
    )

    config = load_config(path, environ={})

    assert config.listen == ListenAddress("::1", 9555)
    assert config.scan_interval_seconds == 2.0
    assert config.detail_interval_seconds == 60.0
    api, worker, legacy = config.services
    assert api.match == MatchSpec(cmdline="gunicorn .*app")
    assert api.pools == (
        PoolSpec(name="postgres", port=5432, host="127.0.0.1", addresses=frozenset({"127.0.0.1"})),
        PoolSpec(name="redis", port=6379),
    )
    assert worker.match == MatchSpec(pidfile=Path("/run/worker.pid"))
    assert legacy.match == MatchSpec(pid=4242)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.scan_interval_seconds = 1.0  # type: ignore[misc]


def test_defaults_fill_what_the_file_leaves_out():
    config = parse_config({"services": [{"name": "api", "match": {"pid": 1}}]}, source="t")

    assert config.listen == ListenAddress("127.0.0.1", 9464)
    assert config.scan_interval_seconds == 5.0
    assert config.detail_interval_seconds == 30.0
    assert config.services[0].pools == () and config.services[0].probes == ()


def test_environment_variables_override_the_file_and_bad_ones_name_the_variable():
    config = parse_config({"services": [{"name": "api", "match": {"pid": 1}}]}, source="t")

    changed = config.with_environment(
        {"SOAK_EXPORTER_LISTEN": "0.0.0.0:9999", "SOAK_EXPORTER_SCAN_INTERVAL": "30s"}
    )
    assert changed.listen == ListenAddress("0.0.0.0", 9999)
    assert changed.scan_interval_seconds == 30.0

    with pytest.raises(ConfigError) as caught:
        config.with_environment({"SOAK_EXPORTER_SCAN_INTERVAL": "0s"})
    assert str(caught.value) == (
        "environment: SOAK_EXPORTER_SCAN_INTERVAL: must be at least 0.1 seconds, got '0s'"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ListenAddress("127.0.0.1", 9464)),
        ("[::1]:0", ListenAddress("::1", 0)),
        (":9464", ListenAddress("0.0.0.0", 9464)),
        ("localhost:80", ListenAddress("localhost", 80)),
    ],
)
def test_listen_addresses_parse_ipv4_ipv6_and_names(text, expected):
    assert parse_listen(text) == expected
    assert parse_listen(str(expected)) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:99999", "[nothost]:80", "[::1]80", 9464])
def test_bad_listen_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_listen(text)


def test_a_pool_host_name_is_resolved_once_at_the_border():
    config = parse_config(
        {
            "services": [
                {
                    "name": "api",
                    "match": {"pid": 1},
                    "pools": [{"name": "db", "port": 5432, "host": "localhost"}],
                }
            ]
        },
        source="t",
    )
    assert "127.0.0.1" in config.services[0].pools[0].addresses


def test_the_documented_example_config_is_valid_and_uses_every_key():
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    example = yaml.safe_load(blocks[0])

    config = parse_config(example, source=str(DOC))

    assert isinstance(config, ExporterConfig)
    top_keys = {"listen", "scan_interval", "detail_interval", "services"}
    assert set(example) == top_keys
    service_keys = set().union(*(s.keys() for s in example["services"]))
    assert service_keys == {"name", "match", "pools", "probes"}
    match_keys = set().union(*(s["match"].keys() for s in example["services"]))
    assert match_keys == {"pid", "pidfile", "cmdline", "children"}
    pool_keys = set().union(*(p.keys() for s in example["services"] for p in s.get("pools", [])))
    assert pool_keys == {"name", "port", "host"}
    for key in [*top_keys, *service_keys, *match_keys, *pool_keys]:
        assert f"`{key}`" in DOC.read_text(encoding="utf-8"), f"{key} is not documented"


def test_every_probe_key_and_every_in_process_argument_is_documented():
    import dataclasses
    import inspect

    from soakwatch.exporter.inprocess import start_in_process
    from soakwatch.exporter.probes import KINDS

    doc = DOC.read_text(encoding="utf-8")
    probe_keys = {"name", "kind", "target", "timeout", "interval"}
    for kind in KINDS.values():
        settings_class = kind.parse_settings.__self__  # type: ignore[attr-defined]
        assert dataclasses.is_dataclass(settings_class), settings_class
        probe_keys |= {f.name for f in dataclasses.fields(settings_class)}
    arguments = set(inspect.signature(start_in_process).parameters)
    for key in sorted(probe_keys | arguments):
        assert f"`{key}`" in doc, f"{key} is not documented in {DOC.name}"


def test_children_defaults_to_sum_and_takes_each():
    def match(**extra: object) -> MatchSpec:
        data = {"services": [{"name": "api", "match": {"cmdline": "gunicorn", **extra}}]}
        return parse_config(data, source="t").services[0].match

    assert match().children == "sum"
    assert match(children="each").children == "each"
    assert match(children="each").describe() == "cmdline /gunicorn/, children: each"
    assert match().describe() == "cmdline /gunicorn/"


def test_children_with_another_value_is_a_config_error_naming_the_key(tmp_path):
    path = tmp_path / "exporter.yaml"
    path.write_text(
        "services:\n  - name: api\n    match: {cmdline: gunicorn, children: all}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(caught.value) == (
        f"{path}: services[0].match.children: must be one of sum, each, got 'all'"
    )
