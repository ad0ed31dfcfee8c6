"""Session churn against the real aiohttp test service: create, use, delete at a set rate."""

from __future__ import annotations

from typing import Any

import pytest

from soakwatch.load.config import load_config
from soakwatch.load.driver import Driver


@pytest.mark.asyncio
async def test_each_session_is_created_used_and_deleted_so_none_is_left_behind(
    load_app: Any,
) -> None:
    before = load_app.stats()["hits"]
    config = load_config(
        flags={"duration": "1s"},
        flag_scenarios=[
            {
                "kind": "sessions",
                "rate": "1200/min",
                "create": {"url": f"{load_app.url}/sessions"},
                "use": [
                    {"url": f"{load_app.url}/sessions/{{id}}"},
                    {"url": f"{load_app.url}/sessions/{{id}}"},
                ],
                "delete": {"url": f"{load_app.url}/sessions/{{id}}"},
            }
        ],
        environ={},
    )
    driver = Driver(config)
    part = (await driver.run())["scenarios"]["sessions"]
    after = load_app.stats()
    assert part["sent"] == 20 and part["outcomes"]["ok"] == 20
    assert part["sessions_started"] == 20
    assert after["hits"]["session_use"] - before.get("session_use", 0) == 40
    assert after["hits"]["session_delete"] - before.get("session_delete", 0) == 20
    assert after["live_sessions"] == 0
    started = driver.registry.get_sample_value("soak_load_sessions_started_total", {"shard": "0/1"})
    assert started == 20


@pytest.mark.asyncio
async def test_a_create_reply_without_the_id_is_a_protocol_error_and_nothing_is_used(
    load_app: Any,
) -> None:
    config = load_config(
        flags={"duration": "1s"},
        flag_scenarios=[
            {
                "kind": "sessions",
                "rate": "5/s",
                "create": {"url": f"{load_app.url}/ok", "method": "GET"},
                "use": [{"url": f"{load_app.url}/sessions/{{id}}"}],
            }
        ],
        environ={},
    )
    part = (await Driver(config).run())["scenarios"]["sessions"]
    assert part["outcomes"]["protocol_error"] == 5 and part["sessions_started"] == 0


@pytest.mark.asyncio
async def test_a_session_whose_use_times_out_is_still_deleted_so_none_is_left_behind(
    load_app: Any,
) -> None:
    before = load_app.stats()
    config = load_config(
        flags={"duration": "1s"},
        flag_scenarios=[
            {
                "kind": "sessions",
                "rate": "4/s",
                "timeout": "300ms",
                "create": {"url": f"{load_app.url}/sessions"},
                "use": [{"url": f"{load_app.url}/stall?seconds=3"}],
                "delete": {"url": f"{load_app.url}/sessions/{{id}}"},
            }
        ],
        environ={},
    )
    part = (await Driver(config).run())["scenarios"]["sessions"]
    after = load_app.stats()
    assert part["outcomes"]["timeout"] == 4 and part["sessions_started"] == 4
    assert after["hits"]["session_delete"] - before["hits"].get("session_delete", 0) == 4
    assert after["live_sessions"] == before["live_sessions"]
