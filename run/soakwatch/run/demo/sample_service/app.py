"""A small aiohttp service to soak: HTTP and WebSocket endpoints over Redis and PostgreSQL, with a
knob that makes it leak memory at a chosen rate.

It ships inside soakwatch (package data of ``soak run --demo``); run it as a module::

    python -m soakwatch.run.demo.sample_service --port 8080 --leak-bytes-per-second 20000

Every option also reads an environment variable (``SAMPLE_SERVICE_<OPTION>``, e.g.
``SAMPLE_SERVICE_LEAK_BYTES_PER_SECOND``); the command line wins. Redis and PostgreSQL are
optional: when not configured or down, the endpoints that use them fall back to memory and
``/health`` says so, so the service never stops answering because a dependency is gone.
With ``--metrics-port`` it also serves soakwatch's in-process metrics (GC, pools) on /metrics.

Endpoints:
  GET  /health                  {"status": "ok", "redis": ..., "postgres": ..., "leaked_bytes": ...}
  GET  /api/hello               a tiny JSON answer (the cheapest request)
  GET  /api/compute?n=N         some CPU work (sum of squares below N, N <= 100000)
  GET  /api/counter             INCR a Redis counter (memory when Redis is unavailable)
  POST /api/notes               insert {"text": ...} into PostgreSQL (memory fallback)
  GET  /api/notes               the latest ten notes
  POST /auth/token              {"user": NAME} -> {"token": ...} (HMAC-signed, stateless)
  POST /sessions                create a session -> {"id": ...}
  GET  /sessions/{id}           use it (counts uses, touches Redis)
  DELETE /sessions/{id}         delete it
  GET  /ws                      WebSocket echo; with --ws-token-secret a valid token is required
                                (?token=... or "Authorization: Bearer ...")
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger("sample_service")

ENV_PREFIX = "SAMPLE_SERVICE_"
LEAK_TICK_SECONDS = 0.2
MAX_SESSIONS = 50_000
SESSION_PAYLOAD_BYTES = 2048
DEPENDENCY_RETRY_SECONDS = 5.0
DEPENDENCY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Settings:
    """What the service is told at start; read once from the command line and environment."""

    host: str = "127.0.0.1"
    port: int = 8080
    name: str = "sample-service"
    redis_url: str | None = None
    postgres_dsn: str | None = None
    ws_token_secret: str | None = None
    leak_bytes_per_second: float = 0.0
    metrics_port: int | None = None
    # seconds between allocation-site sampling windows (--attribution); None: no attribution
    attribution_interval: float | None = None


def parse_settings(argv: Sequence[str], environ: dict[str, str] | None = None) -> Settings:
    """Settings from ``argv`` with ``SAMPLE_SERVICE_*`` environment variables as defaults."""
    env = dict(os.environ if environ is None else environ)

    def default(option: str, fallback: Any) -> Any:
        return env.get(ENV_PREFIX + option.upper(), fallback) or fallback

    parser = argparse.ArgumentParser(
        prog="sample_service", description="A small service to soak, with a leak knob."
    )
    parser.add_argument("--host", default=default("host", Settings.host))
    parser.add_argument(
        "--port", type=int, default=int(default("port", Settings.port)), help="0: any free port"
    )
    parser.add_argument("--name", default=default("name", Settings.name))
    parser.add_argument("--redis-url", default=default("redis_url", None))
    parser.add_argument("--postgres-dsn", default=default("postgres_dsn", None))
    parser.add_argument(
        "--ws-token-secret",
        default=default("ws_token_secret", None),
        help="require a token signed with this secret on /ws (tokens come from /auth/token)",
    )
    parser.add_argument(
        "--leak-bytes-per-second",
        type=float,
        default=float(default("leak_bytes_per_second", 0.0)),
        help="keep this many bytes per second forever (0: no leak)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=default("metrics_port", None),
        help="serve soakwatch's in-process metrics (GC, pools) on this port (0: any free port)",
    )
    parser.add_argument(
        "--attribution",
        nargs="?",
        type=float,
        const=60.0,
        default=default("attribution", None),
        metavar="SECONDS",
        help="with --metrics-port: sample allocation sites (tracemalloc) in a 1 s window every "
        "SECONDS (default 60)",
    )
    args = parser.parse_args(list(argv))
    if args.attribution is not None and not float(args.attribution) > 2:
        parser.error("--attribution needs more than 2 seconds between windows")
    if args.leak_bytes_per_second < 0:
        parser.error("--leak-bytes-per-second must be >= 0")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    return Settings(
        host=args.host,
        port=args.port,
        name=args.name,
        redis_url=args.redis_url,
        postgres_dsn=args.postgres_dsn,
        ws_token_secret=args.ws_token_secret,
        leak_bytes_per_second=args.leak_bytes_per_second,
        metrics_port=None if args.metrics_port is None else int(args.metrics_port),
        attribution_interval=None if args.attribution is None else float(args.attribution),
    )


# -- the leak ---------------------------------------------------------------------------------
class Leak:
    """Holds on to ``bytes_per_second`` of fresh, touched memory per second, forever."""

    def __init__(self, bytes_per_second: float) -> None:
        self.bytes_per_second = bytes_per_second
        self.kept: list[bytes] = []
        self.kept_bytes = 0

    async def run(self) -> None:
        if self.bytes_per_second <= 0:
            return
        started = time.monotonic()
        while True:
            await asyncio.sleep(LEAK_TICK_SECONDS)
            owed = int((time.monotonic() - started) * self.bytes_per_second) - self.kept_bytes
            if owed > 0:
                # Non-zero content: every page is written, so it counts in RSS at once.
                self.kept.append(b"L" * owed)
                self.kept_bytes += owed


# -- dependencies, each optional ------------------------------------------------------------------
class Dependencies:
    """Redis and PostgreSQL clients that may be absent, down, or come back later."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: Any = None
        self.postgres: Any = None
        self.redis_error: str | None = None
        self.postgres_error: str | None = None

    async def connect(self) -> None:
        if self.settings.redis_url and self.redis is None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(
                self.settings.redis_url,
                socket_timeout=DEPENDENCY_TIMEOUT_SECONDS,
                socket_connect_timeout=DEPENDENCY_TIMEOUT_SECONDS,
            )
            try:
                await client.ping()
            except Exception as exc:  # any failure means "down"; the service carries on
                self.redis_error = type(exc).__name__
                await client.aclose()
            else:
                self.redis, self.redis_error = client, None
        if self.settings.postgres_dsn and self.postgres is None:
            import asyncpg

            try:
                pool = await asyncpg.create_pool(
                    self.settings.postgres_dsn,
                    min_size=1,
                    max_size=5,
                    timeout=DEPENDENCY_TIMEOUT_SECONDS,
                )
                async with pool.acquire() as conn:
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS sample_notes ("
                        " id bigserial PRIMARY KEY, text text NOT NULL,"
                        " created timestamptz NOT NULL DEFAULT now())"
                    )
            except Exception as exc:
                self.postgres_error = type(exc).__name__
            else:
                self.postgres, self.postgres_error = pool, None

    async def keep_connecting(self) -> None:
        while True:
            await asyncio.sleep(DEPENDENCY_RETRY_SECONDS)
            with contextlib.suppress(Exception):
                await self.connect()

    def status(self, client: Any, error: str | None, configured: bool) -> str:
        if not configured:
            return "not configured"
        return "ok" if client is not None else f"down ({error or 'connecting'})"

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        if self.postgres is not None:
            await self.postgres.close()


# -- the application ---------------------------------------------------------------------------
class SampleService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.deps = Dependencies(settings)
        self.leak = Leak(settings.leak_bytes_per_second)
        self.counter = 0
        self.notes: collections.deque[str] = collections.deque(maxlen=10)
        self.sessions: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self.metrics_url: str | None = None

    # health and cheap endpoints
    async def health(self, request: web.Request) -> web.Response:
        s, d = self.settings, self.deps
        return web.json_response(
            {
                "status": "ok",
                "service": s.name,
                "pid": os.getpid(),
                "uptime_seconds": round(time.time() - self.started, 3),
                "redis": d.status(d.redis, d.redis_error, bool(s.redis_url)),
                "postgres": d.status(d.postgres, d.postgres_error, bool(s.postgres_dsn)),
                "leak_bytes_per_second": s.leak_bytes_per_second,
                "leaked_bytes": self.leak.kept_bytes,
                "sessions": len(self.sessions),
            }
        )

    async def hello(self, request: web.Request) -> web.Response:
        return web.json_response({"hello": self.settings.name})

    async def compute(self, request: web.Request) -> web.Response:
        try:
            n = int(request.query.get("n", "1000"))
        except ValueError:
            raise web.HTTPBadRequest(text="n must be a whole number") from None
        if not 0 <= n <= 100_000:
            raise web.HTTPBadRequest(text="n must be between 0 and 100000")
        return web.json_response({"n": n, "sum_of_squares": sum(i * i for i in range(n))})

    # Redis
    async def counter_incr(self, request: web.Request) -> web.Response:
        if self.deps.redis is not None:
            try:
                value = int(await self.deps.redis.incr(f"{self.settings.name}:counter"))
                return web.json_response({"value": value, "backend": "redis"})
            except Exception as exc:
                log.warning("redis INCR failed: %s", type(exc).__name__)
        self.counter += 1
        return web.json_response({"value": self.counter, "backend": "memory"})

    # PostgreSQL
    async def notes_add(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            text = str(body["text"])[:1000]
        except Exception:
            raise web.HTTPBadRequest(text='expected JSON {"text": ...}') from None
        if self.deps.postgres is not None:
            try:
                async with self.deps.postgres.acquire() as conn:
                    note_id = await conn.fetchval(
                        "INSERT INTO sample_notes (text) VALUES ($1) RETURNING id", text
                    )
                return web.json_response({"id": note_id, "backend": "postgres"}, status=201)
            except Exception as exc:
                log.warning("postgres INSERT failed: %s", type(exc).__name__)
        self.notes.append(text)
        return web.json_response({"id": None, "backend": "memory"}, status=201)

    async def notes_latest(self, request: web.Request) -> web.Response:
        if self.deps.postgres is not None:
            try:
                async with self.deps.postgres.acquire() as conn:
                    rows = await conn.fetch(
                        "SELECT text FROM sample_notes ORDER BY id DESC LIMIT 10"
                    )
                return web.json_response(
                    {"notes": [r["text"] for r in rows], "backend": "postgres"}
                )
            except Exception as exc:
                log.warning("postgres SELECT failed: %s", type(exc).__name__)
        return web.json_response({"notes": list(reversed(self.notes)), "backend": "memory"})

    # auth: stateless signed tokens, so issuing many of them keeps nothing
    def sign(self, user: str) -> str:
        secret = (self.settings.ws_token_secret or "").encode()
        digest = hmac.new(secret, user.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{user}.{digest}"

    def token_valid(self, token: str) -> bool:
        user, _, _ = token.rpartition(".")
        return bool(user) and hmac.compare_digest(self.sign(user), token)

    async def auth_token(self, request: web.Request) -> web.Response:
        if not self.settings.ws_token_secret:
            raise web.HTTPNotFound(text="authentication is not enabled")
        try:
            body = await request.json() if request.can_read_body else {}
        except Exception:
            body = {}
        user = str(body.get("user") or "soak")
        if not user.replace("-", "").replace("_", "").isalnum():
            raise web.HTTPBadRequest(text="user must be letters, digits, - or _")
        return web.json_response({"token": self.sign(user)})

    # sessions: create, use, delete
    async def session_create(self, request: web.Request) -> web.Response:
        if len(self.sessions) >= MAX_SESSIONS:
            raise web.HTTPServiceUnavailable(text="too many sessions")
        session_id = secrets.token_hex(8)
        self.sessions[session_id] = {
            "created": time.time(),
            "uses": 0,
            "payload": secrets.token_bytes(SESSION_PAYLOAD_BYTES),
        }
        return web.json_response({"id": session_id}, status=201)

    def _session(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        session_id = request.match_info["session_id"]
        session = self.sessions.get(session_id)
        if session is None:
            raise web.HTTPNotFound(text="no such session")
        return session_id, session

    async def session_use(self, request: web.Request) -> web.Response:
        session_id, session = self._session(request)
        session["uses"] += 1
        if self.deps.redis is not None:
            with contextlib.suppress(Exception):
                await self.deps.redis.set(f"{self.settings.name}:session:{session_id}", 1, ex=60)
        return web.json_response({"id": session_id, "uses": session["uses"]})

    async def session_delete(self, request: web.Request) -> web.Response:
        session_id, _ = self._session(request)
        del self.sessions[session_id]
        if self.deps.redis is not None:
            with contextlib.suppress(Exception):
                await self.deps.redis.delete(f"{self.settings.name}:session:{session_id}")
        return web.Response(status=204)

    # WebSocket echo
    def _token_of(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.query.get("token", "")

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if self.settings.ws_token_secret and not self.token_valid(self._token_of(request)):
            raise web.HTTPUnauthorized(text="a valid token is required (POST /auth/token)")
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type == WSMsgType.ERROR:
                break
        return ws

    # lifecycle
    def start_metrics(self) -> Any:
        """soakwatch's in-process exporter (GC and pool metrics), when asked for and installed."""
        if self.settings.metrics_port is None:
            return None
        from soakwatch.exporter.attribution import AttributionConfig
        from soakwatch.exporter.inprocess import start_in_process

        pools = {}
        if self.deps.redis is not None:
            pools["redis"] = self.deps.redis.connection_pool
        if self.deps.postgres is not None:
            pools["postgres"] = self.deps.postgres
        exporter = start_in_process(
            port=self.settings.metrics_port,
            service=self.settings.name,
            host=self.settings.host,
            pools=pools,
            process_metrics=False,  # the sidecar exporter watches the process from outside
            attribution=False
            if self.settings.attribution_interval is None
            else AttributionConfig(
                interval_seconds=self.settings.attribution_interval,
                root=os.path.dirname(os.path.abspath(__file__)),
            ),
        )
        self.metrics_url = f"http://{self.settings.host}:{exporter.port}/metrics"
        return exporter

    async def background(self, app: web.Application) -> AsyncIterator[None]:
        await self.deps.connect()
        metrics = self.start_metrics()
        tasks = [
            asyncio.create_task(self.leak.run()),
            asyncio.create_task(self.deps.keep_connecting()),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if metrics is not None:
            metrics.stop()
        await self.deps.close()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.cleanup_ctx.append(self.background)
        app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/api/hello", self.hello),
                web.get("/api/compute", self.compute),
                web.get("/api/counter", self.counter_incr),
                web.post("/api/notes", self.notes_add),
                web.get("/api/notes", self.notes_latest),
                web.post("/auth/token", self.auth_token),
                web.post("/sessions", self.session_create),
                web.get("/sessions/{session_id}", self.session_use),
                web.delete("/sessions/{session_id}", self.session_delete),
                web.get("/ws", self.websocket),
            ]
        )
        return app


async def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM. Prints one line with the bound URL once listening."""
    service = SampleService(settings)
    runner = web.AppRunner(service.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else settings.port
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    metrics = f" metrics {service.metrics_url}" if service.metrics_url else ""
    print(
        f"{settings.name} listening on http://{host}:{port} pid {os.getpid()}{metrics}", flush=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
