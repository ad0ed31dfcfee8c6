"""The one ``host:port`` grammar (soakwatch.addresses), and the components that parse with it:
the exporter's listen address and probe targets, soak load's metrics_listen."""

from __future__ import annotations

from typing import Any

import pytest

from soakwatch.addresses import Address, parse_address
from soakwatch.exporter.config import parse_listen as exporter_listen
from soakwatch.exporter.probes.spec import split_host_port
from soakwatch.load.config import parse_listen as load_listen


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("127.0.0.1:9102", {}, Address("127.0.0.1", 9102)),
        ("localhost:80", {}, Address("localhost", 80)),
        ("[::1]:9102", {}, Address("::1", 9102)),
        ("  db.internal:5432 ", {}, Address("db.internal", 5432)),
        (":9102", {"any_host": "0.0.0.0"}, Address("0.0.0.0", 9102)),
        ("host:0", {"allow_port_zero": True}, Address("host", 0)),
        ("[::1]:0", {"allow_port_zero": True}, Address("::1", 0)),
        ("redis.local", {"default_port": 6379}, Address("redis.local", 6379)),
        ("[::1]", {"default_port": 6379}, Address("::1", 6379)),
        ("redis.local:6380", {"default_port": 6379}, Address("redis.local", 6380)),
    ],
)
def test_the_grammar_accepts_names_ipv4_bracketed_ipv6_and_what_the_caller_allows(
    text: str, options: dict[str, Any], expected: Address
) -> None:
    assert parse_address(text, **options) == expected
    assert parse_address(str(expected), **options) == expected


@pytest.mark.parametrize(
    ("text", "options", "message"),
    [
        ("::1:9102", {}, "an IPv6 address needs brackets, as in [::1]:9464, got '::1:9102'"),
        (":9102", {}, "expected host:port (the host is missing), got ':9102'"),
        ("[zz]:9102", {}, "not an IPv6 address in brackets: '[zz]:9102'"),
        ("[::1]9102", {}, "expected [ipv6]:port, got '[::1]9102'"),
        ("host:0", {}, "port must be a number from 1 to 65535, got 'host:0'"),
        ("host:70000", {}, "port must be a number from 1 to 65535, got 'host:70000'"),
        (
            "host:70000",
            {"allow_port_zero": True},
            "port must be a number from 0 to 65535, got 'host:70000'",
        ),
        ("host:http", {}, "port must be a number from 1 to 65535, got 'host:http'"),
        ("host", {}, "expected host:port (the port is missing), got 'host'"),
        ("", {}, "expected host:port, got an empty string"),
        (9102, {}, "expected host:port, got 9102"),
    ],
)
def test_the_grammar_refuses_ambiguous_or_incomplete_addresses_with_a_reason(
    text: object, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parse_address(text, **options)
    assert str(caught.value) == message


def test_listen_addresses_of_the_exporter_and_the_load_driver_read_alike() -> None:
    for text in ("127.0.0.1:9464", "[::1]:0", ":9464", "localhost:0"):
        address = exporter_listen(text)
        assert load_listen(text) == (address.host, address.port)
    for text in ("::1:9464", "[zz]:9464", "127.0.0.1", "127.0.0.1:65536"):
        with pytest.raises(ValueError) as exporter_error:
            exporter_listen(text)
        with pytest.raises(ValueError) as load_error:
            load_listen(text)
        assert str(exporter_error.value) == str(load_error.value)


def test_a_probe_target_takes_its_kinds_default_port_and_refuses_port_0() -> None:
    assert split_host_port("cache", default_port=6379) == ("cache", 6379)
    assert split_host_port("[::1]:7000") == ("::1", 7000)
    with pytest.raises(ValueError, match="from 1 to 65535"):
        split_host_port("cache:0", default_port=6379)
    with pytest.raises(ValueError, match="the port is missing"):
        split_host_port("cache")
