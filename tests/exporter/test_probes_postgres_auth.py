"""The PostgreSQL probe speaks every password method PostgreSQL 15 offers, and TLS.

Uses its own PostgreSQL (not the shared fixture) because it rewrites pg_hba.conf and turns TLS
on; the shared fixture already covers SCRAM-SHA-256, PostgreSQL's default."""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import servers
from soakwatch.configfile import Section
from soakwatch.exporter.probes import ProbeRunner, parse_probe

pytestmark = pytest.mark.slow

METHOD_LOGGED = {
    "md5_user": "asks for MD5",
    "clear_user": "asks for cleartext password",
    "trust_user": None,
    "scram_user": "asks for SASL",
}
USERS = {  # user -> (pg_hba method, password_encryption used to store its password)
    "md5_user": ("md5", "md5"),
    "clear_user": ("password", "scram-sha-256"),
    "trust_user": ("trust", "scram-sha-256"),
    "scram_user": ("scram-sha-256", "scram-sha-256"),
}
PASSWORD = "probe-secret"


def _own_for_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(servers.POSTGRES_OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="module")
def postgres() -> Iterator[servers.PostgresServer]:
    server = servers.start_postgres()
    try:
        pgdata = server.data_dir / "pgdata"
        cert, key = pgdata / "probe-server.crt", pgdata / "probe-server.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        key.chmod(0o600)
        for path in (cert, key):
            _own_for_postgres(path)
        hba = pgdata / "pg_hba.conf"
        lines = [f"host all {user} 127.0.0.1/32 {method}" for user, (method, _) in USERS.items()]
        hba.write_text("\n".join(lines) + "\n" + hba.read_text())
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            for user, (_, encryption) in USERS.items():
                conn.execute(f"SET password_encryption = '{encryption}'")
                conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")
            conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{cert}'")
            conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{key}'")
            conn.execute("ALTER SYSTEM SET ssl = on")
            conn.execute("SELECT pg_reload_conf()")
        yield server
    finally:
        server.stop()


def probe(server: servers.PostgresServer, user: str, password: str | None, **keys: object) -> bool:
    item = {
        "name": "pg",
        "kind": "postgres",
        "target": f"{server.host}:{server.port}",
        "user": user,
        "dbname": "postgres",
        "timeout": 5,
        **({"password": password} if password is not None else {}),
        **keys,
    }
    runner = ProbeRunner("svc", [parse_probe(Section(item, source="test"))], registry=None)
    return asyncio.run(runner.run_once())["pg"].success


@pytest.mark.parametrize("user", sorted(USERS))
def test_the_postgres_probe_authenticates_with_each_method(
    postgres: servers.PostgresServer, user: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="soakwatch")
    assert probe(postgres, user, PASSWORD)
    expected = METHOD_LOGGED[user]
    if expected is None:
        assert "postgres asks for" not in caplog.text
    else:
        assert expected in caplog.text


@pytest.mark.parametrize("user", ["md5_user", "clear_user", "scram_user"])
def test_the_postgres_probe_fails_with_a_wrong_password_for_each_method(
    postgres: servers.PostgresServer, user: str
) -> None:
    assert not probe(postgres, user, "not-the-password")


def test_the_postgres_probe_fails_when_a_password_is_asked_and_none_is_configured(
    postgres: servers.PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert not probe(postgres, "scram_user", None)
    assert "none is configured" in caplog.text


def test_the_postgres_probe_speaks_tls_when_required(postgres: servers.PostgresServer) -> None:
    assert probe(postgres, "scram_user", PASSWORD, sslmode="require", tls_verify=False)
    # the certificate is self-signed: with verification on, the handshake must fail
    assert not probe(postgres, "scram_user", PASSWORD, sslmode="require")


def test_the_postgres_probe_fails_when_tls_is_required_and_the_server_has_none(
    postgres_server: servers.PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    target = f"{postgres_server.host}:{postgres_server.port}"
    item = {"name": "pg", "kind": "postgres", "target": target, "sslmode": "require"}
    runner = ProbeRunner("svc", [parse_probe(Section(item, source="test"))], registry=None)
    assert not asyncio.run(runner.run_once())["pg"].success
    assert "server refused TLS" in caplog.text
