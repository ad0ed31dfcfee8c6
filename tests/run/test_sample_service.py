"""The sample service the demo soaks: real child processes, real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import psutil
import pytest
import requests


def get(service: Any, path: str) -> Any:
    response = requests.get(service.url + path, timeout=10)
    response.raise_for_status()
    return response.json()


def test_every_endpoint_answers_from_memory_when_no_database_is_configured(
    sample_service_factory: Any,
) -> None:
    service = sample_service_factory()
    health = get(service, "/health")
    assert health["status"] == "ok"
    assert health["redis"] == "not configured"
    assert health["postgres"] == "not configured"
    assert health["pid"] == service.pid
    assert get(service, "/api/hello") == {"hello": "sample-service"}
    assert get(service, "/api/compute?n=10")["sum_of_squares"] == 285
    assert get(service, "/api/counter") == {"value": 1, "backend": "memory"}
    assert get(service, "/api/counter")["value"] == 2
    posted = requests.post(service.url + "/api/notes", json={"text": "hi"}, timeout=10)
    assert posted.status_code == 201
    assert get(service, "/api/notes") == {"notes": ["hi"], "backend": "memory"}
    bad = requests.get(service.url + "/api/compute?n=-1", timeout=10)
    assert bad.status_code == 400


def test_the_service_stays_up_and_says_so_when_its_databases_are_down(
    sample_service_factory: Any,
) -> None:
    # Port 9 (discard) on 127.0.0.1 has no listener here: a refused connection, as when a
    # database is down.
    service = sample_service_factory(
        "--redis-url", "redis://127.0.0.1:9/0", "--postgres-dsn", "postgresql://x@127.0.0.1:9/x"
    )
    health = get(service, "/health")
    assert health["redis"].startswith("down (")
    assert health["postgres"].startswith("down (")
    assert get(service, "/api/counter")["backend"] == "memory"


@pytest.mark.slow
def test_counter_and_notes_use_redis_and_postgres_when_they_are_up(
    sample_service_factory: Any, redis_server: Any, postgres_server: Any
) -> None:
    service = sample_service_factory(
        "--redis-url", redis_server.url, "--postgres-dsn", postgres_server.dsn
    )
    health = get(service, "/health")
    assert (health["redis"], health["postgres"]) == ("ok", "ok")
    assert get(service, "/api/counter")["backend"] == "redis"
    posted = requests.post(service.url + "/api/notes", json={"text": "soak"}, timeout=10)
    assert posted.json()["backend"] == "postgres"
    assert get(service, "/api/notes") == {"notes": ["soak"], "backend": "postgres"}
    # The counter lives in Redis: a second instance sharing the server continues it.
    other = sample_service_factory("--redis-url", redis_server.url)
    first = get(service, "/api/counter")["value"]
    assert get(other, "/api/counter")["value"] == first + 1


def test_sessions_are_created_used_and_deleted(sample_service_factory: Any) -> None:
    service = sample_service_factory()
    created = requests.post(service.url + "/sessions", timeout=10)
    assert created.status_code == 201
    session_id = created.json()["id"]
    assert get(service, f"/sessions/{session_id}")["uses"] == 1
    assert get(service, f"/sessions/{session_id}")["uses"] == 2
    assert get(service, "/health")["sessions"] == 1
    deleted = requests.delete(f"{service.url}/sessions/{session_id}", timeout=10)
    assert deleted.status_code == 204
    assert requests.get(f"{service.url}/sessions/{session_id}", timeout=10).status_code == 404
    assert get(service, "/health")["sessions"] == 0


def test_websocket_echo_demands_a_valid_token_when_auth_is_enabled(
    sample_service_factory: Any,
) -> None:
    service = sample_service_factory("--ws-token-secret", "s3cret")

    async def exercise() -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(service.url + "/ws?token=forged.abc"):
                    refused = 0
            except aiohttp.WSServerHandshakeError as exc:
                refused = exc.status
            async with session.post(service.url + "/auth/token", json={"user": "u1"}) as r:
                token = (await r.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            async with session.ws_connect(service.url + "/ws", headers=headers) as ws:
                await ws.send_str("ping")
                echoed = await ws.receive_str(timeout=10)
            async with session.ws_connect(service.url + f"/ws?token={token}") as ws:
                await ws.send_str("again")
                echoed_query = await ws.receive_str(timeout=10)
        return refused, echoed, echoed_query

    assert asyncio.run(exercise()) == (401, "ping", "again")


def rss_after(service: Any, seconds: float) -> tuple[int, int]:
    process = psutil.Process(service.pid)
    before = process.memory_info().rss
    time.sleep(seconds)
    return before, process.memory_info().rss


@pytest.mark.slow
def test_the_leak_knob_makes_rss_grow_at_about_the_chosen_rate(
    sample_service_factory: Any,
) -> None:
    rate = 4_000_000  # bytes per second: far above any noise of an idle service
    leaking = sample_service_factory("--leak-bytes-per-second", str(rate))
    healthy = sample_service_factory()
    time.sleep(0.5)
    leak_before, leak_after = rss_after(leaking, 3.0)
    healthy_before, healthy_after = rss_after(healthy, 0.1)
    grown = leak_after - leak_before
    assert 0.5 * rate * 3.0 < grown < 2.0 * rate * 3.0, grown
    assert abs(healthy_after - healthy_before) < 2_000_000
    assert get(leaking, "/health")["leaked_bytes"] > rate * 3.0
