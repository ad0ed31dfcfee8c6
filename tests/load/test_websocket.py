"""WebSocket load against the real aiohttp test service: held connections, timed replies,
drops and reconnects, and the auth path (token presented; auth service down)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import servers
from soakwatch.errors import SourceError
from soakwatch.load.cli import main
from soakwatch.load.config import LoadConfig, load_config
from soakwatch.load.driver import Driver


def ws_config(*scenarios: dict[str, Any], duration: str = "1500ms") -> LoadConfig:
    return load_config(flags={"duration": duration}, flag_scenarios=scenarios, environ={})


def ws(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "websocket", "name": name, "url": url, "connections": 5,
            "interval": "200ms", **extra}  # fmt: skip


@pytest.mark.asyncio
async def test_connections_are_held_and_every_message_gets_a_timed_reply(load_app: Any) -> None:
    driver = Driver(ws_config(ws("echo", f"{load_app.ws_url}/ws")))
    run = asyncio.create_task(driver.run())
    held = 0
    for _ in range(40):
        await asyncio.sleep(0.05)
        held = max(held, driver.stats[0].open_connections)
    part = (await run)["scenarios"]["echo"]
    assert held == 5
    assert part["open_connections"] == 0  # all closed at the end
    assert part["outcomes"]["ok"] >= 20  # 5 connections x ~7 beats, generously
    assert part["errors"] == 0 and part["reconnects"] == 0
    assert part["latency_seconds"]["p99"] < 0.5


@pytest.mark.asyncio
async def test_a_server_that_closes_the_socket_is_counted_as_closed_and_reconnected(
    load_app: Any,
) -> None:
    config = ws_config(ws("drops", f"{load_app.ws_url}/ws-close", reconnect_delay="100ms"))
    part = (await Driver(config).run())["scenarios"]["drops"]
    assert part["outcomes"]["closed"] >= 5
    assert part["reconnects"] >= 5
    assert part["outcomes"]["ok"] == 0


@pytest.mark.asyncio
async def test_a_reply_that_never_comes_is_a_timeout(load_app: Any) -> None:
    config = ws_config(ws("silent", f"{load_app.ws_url}/ws-silent", timeout="300ms"))
    part = (await Driver(config).run())["scenarios"]["silent"]
    assert part["outcomes"]["timeout"] >= 5
    assert part["outcomes"]["ok"] == 0


@pytest.mark.parametrize("present_as", ["header", "query"])
@pytest.mark.asyncio
async def test_each_connection_fetches_a_token_and_presents_it(
    load_app: Any, present_as: str
) -> None:
    before = load_app.stats()
    auth = {"url": f"{load_app.url}/token", "present_as": present_as}
    config = ws_config(ws("authed", f"{load_app.ws_url}/ws-auth", auth=auth))
    part = (await Driver(config).run())["scenarios"]["authed"]
    after = load_app.stats()
    assert part["outcomes"]["ok"] >= 20 and part["errors"] == 0
    seen = after["tokens_seen"].get(present_as, 0) - before["tokens_seen"].get(present_as, 0)
    assert seen == 5  # one token per connection, accepted by the service
    assert after["tokens_issued"] - before["tokens_issued"] == 6  # + the preflight check


@pytest.mark.asyncio
async def test_a_connection_without_the_token_is_refused_as_http_4xx(load_app: Any) -> None:
    part = (await Driver(ws_config(ws("anon", f"{load_app.ws_url}/ws-auth"))).run())["scenarios"][
        "anon"
    ]
    assert part["outcomes"]["http_4xx"] >= 5 and part["outcomes"]["ok"] == 0


@pytest.mark.asyncio
async def test_with_the_auth_service_down_and_on_failure_skip_the_scenario_is_skipped(
    load_app: Any,
) -> None:
    down = f"http://127.0.0.1:{servers.free_port()}/token"
    config = ws_config(
        ws("authed", f"{load_app.ws_url}/ws-auth", auth={"url": down, "on_failure": "skip"}),
        {"kind": "http", "name": "api", "url": f"{load_app.url}/ok", "rate": "10/s"},
        duration="1s",
    )
    summary = await Driver(config).run()
    skipped = summary["scenarios"]["authed"]
    assert skipped["skipped"].startswith(f"auth service {down} unavailable: ")
    assert skipped["sent"] == 0
    assert summary["scenarios"]["api"]["outcomes"]["ok"] == 10  # the rest of the mix ran
    assert summary["status"] == "completed"


@pytest.mark.asyncio
async def test_with_the_auth_service_down_and_on_failure_error_the_run_stops_with_a_clear_error(
    load_app: Any,
) -> None:
    down = f"http://127.0.0.1:{servers.free_port()}/token"
    config = ws_config(ws("authed", f"{load_app.ws_url}/ws-auth", auth={"url": down}))
    with pytest.raises(SourceError) as caught:
        await Driver(config).run()
    assert str(caught.value).startswith(
        f"websocket scenario 'authed': auth service {down} unavailable: "
    )


def test_soak_load_exits_2_when_the_auth_service_is_down_and_writes_the_summary(
    load_app: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    down = f"http://127.0.0.1:{servers.free_port()}/token"
    path = tmp_path / "load.yaml"
    path.write_text(
        "scenarios:\n"
        f"  - {{kind: websocket, url: '{load_app.ws_url}/ws-auth', connections: 2,"
        f" auth: {{url: '{down}'}}}}\n",
        encoding="utf-8",
    )
    summary = tmp_path / "summary.json"
    code = main(["--config", str(path), "--duration", "1s", "--summary", str(summary), "--quiet"])
    assert code == 2
    assert f"soak load: websocket scenario 'websocket': auth service {down} unavailable" in (
        capsys.readouterr().err
    )
    assert '"status": "error"' in summary.read_text()


@pytest.mark.asyncio
async def test_messages_awaiting_their_reply_when_the_run_stops_are_cut_short(
    load_app: Any,
) -> None:
    # /ws-silent never replies: each connection's first message is still waiting at the stop.
    config = ws_config(ws("silent", f"{load_app.ws_url}/ws-silent", timeout="30s"), duration="60s")
    driver = Driver(config)
    run = asyncio.create_task(driver.run())
    for _ in range(100):
        await asyncio.sleep(0.05)
        if driver.stats[0].in_flight == 5:
            break
    driver.stop("test")
    part = (await asyncio.wait_for(run, 15))["scenarios"]["silent"]
    assert part["sent"] == 5 and part["in_flight"] == 0
    assert part["outcomes"]["cut_short"] == 5 == part["errors"]


@pytest.mark.asyncio
async def test_a_run_that_ends_as_planned_lets_the_last_replies_arrive(load_app: Any) -> None:
    # 20 connections x 1 message per 50 ms: at the planned end some replies are on their way.
    config = ws_config(ws("echo", f"{load_app.ws_url}/ws", connections=20, interval="50ms"))
    part = (await Driver(config).run())["scenarios"]["echo"]
    assert part["outcomes"]["ok"] == part["sent"] > 100
    assert part["errors"] == 0
