"""The aiohttp service the load tests drive: endpoints that succeed, fail, close the socket,
stall past the timeout or need a token, and a /stats page with what the server saw.

Run as a subprocess: ``python tests/load/app.py PORT`` (binds 127.0.0.1)."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import Counter
from typing import Any

from aiohttp import WSMsgType, web

hits: Counter[str] = Counter()
issued_tokens: set[str] = set()
seen_tokens: Counter[str] = Counter()  # where a valid token was presented: header / query
sessions: set[str] = set()
session_ids = itertools.count(1)
token_ids = itertools.count(1)


async def ok(request: web.Request) -> web.Response:
    hits["ok"] += 1
    return web.Response(text="ok")


async def error(request: web.Request) -> web.Response:
    hits["error"] += 1
    return web.Response(status=500, text="boom")


async def missing(request: web.Request) -> web.Response:
    hits["missing"] += 1
    return web.Response(status=404, text="no")


async def close(request: web.Request) -> web.Response:
    """Drop the connection without any reply."""
    hits["close"] += 1
    assert request.transport is not None
    request.transport.close()
    raise web.HTTPInternalServerError()  # never reaches the client: the socket is gone


async def stall(request: web.Request) -> web.Response:
    hits["stall"] += 1
    await asyncio.sleep(float(request.query.get("seconds", "30")))
    return web.Response(text="late")


async def token(request: web.Request) -> web.Response:
    hits["token"] += 1
    value = f"token-{next(token_ids)}"
    issued_tokens.add(value)
    return web.json_response({"token": value})


def _presented_token(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and header[7:] in issued_tokens:
        return "header", header[7:]
    query = request.query.get("token")
    if query in issued_tokens:
        return "query", str(query)
    return None


async def websocket(request: web.Request) -> web.StreamResponse:
    """Echo. /ws-auth needs a token, /ws-close closes after the first message,
    /ws-silent never replies."""
    mode = request.match_info.get("mode", "")
    if mode == "auth":
        found = _presented_token(request)
        if found is None:
            hits["ws_unauthorized"] += 1
            return web.Response(status=401, text="token required")
        seen_tokens[found[0]] += 1
    hits[f"ws_{mode or 'echo'}"] += 1
    ws = web.WebSocketResponse(autoping=True)
    await ws.prepare(request)
    async for message in ws:
        if message.type != WSMsgType.TEXT:
            break
        if mode == "close":
            await ws.close()
            break
        if mode != "silent":
            await ws.send_str(message.data)
    return ws


async def create_session(request: web.Request) -> web.Response:
    session_id = str(next(session_ids))
    sessions.add(session_id)
    hits["session_create"] += 1
    return web.json_response({"id": session_id}, status=201)


async def use_session(request: web.Request) -> web.Response:
    hits["session_use"] += 1
    if request.match_info["id"] not in sessions:
        return web.Response(status=404)
    return web.Response(text="used")


async def delete_session(request: web.Request) -> web.Response:
    hits["session_delete"] += 1
    sessions.discard(request.match_info["id"])
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    body: dict[str, Any] = {
        "hits": dict(hits),
        "tokens_issued": len(issued_tokens),
        "tokens_seen": dict(seen_tokens),
        "live_sessions": len(sessions),
    }
    return web.json_response(body)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/error", error)
    app.router.add_get("/missing", missing)
    app.router.add_get("/close", close)
    app.router.add_get("/stall", stall)
    app.router.add_post("/token", token)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/ws-{mode}", websocket)
    app.router.add_post("/sessions", create_session)
    app.router.add_get("/sessions/{id}", use_session)
    app.router.add_delete("/sessions/{id}", delete_session)
    app.router.add_get("/stats", stats)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
