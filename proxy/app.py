"""Wiring only: build the aiohttp application from Settings.

Long-lived resources live in ``cleanup_ctx`` generators under typed AppKeys and are torn
down in reverse order, so the write flusher drains before Redis closes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from proxy import handlers, health
from proxy.appkeys import ENGINE, REDIS, SETTINGS, UPSTREAM
from proxy.cache import SessionCache
from proxy.config import Settings
from proxy.engine import Engine
from proxy.errors import ProxyError
from proxy.flusher import Flusher
from proxy.handoff import Handoff
from proxy.invalidation import Invalidation
from proxy.leases import Leases
from proxy.store import Store
from proxy.tokens import count_text
from proxy.upstream import Upstream, make_client_session

log = logging.getLogger("proxy.app")


REDIS_CONNECTIONS = 64  # plenty for one event loop; the pub/sub listener holds one

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"detail": detail}),
                        content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as exc:
        log.warning("%s %s -> %d: %s", request.method, request.path, exc.status, exc.detail)
        return json_error(exc.status, exc.detail, exc.headers())
    except (RedisError, OSError) as exc:
        log.error("%s %s -> 503: redis %r", request.method, request.path, exc)
        return json_error(503, "redis unavailable")


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    session = make_client_session(settings.upstream_connect_timeout, settings.upstream_timeout)
    app[UPSTREAM] = Upstream(settings.upstream_url, session)
    log.info("upstream %s", settings.upstream_url)
    yield
    await session.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A blocking pool: a burst of requests waits for a connection instead of failing.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=5,
        socket_connect_timeout=2, socket_timeout=5, health_check_interval=30)
    client = aioredis.Redis(connection_pool=pool)
    app[REDIS] = client
    yield
    await client.aclose(close_connection_pool=True)  # a pool passed in is not closed otherwise


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # A fresh holder id per process: a restarted proxy holds none of its old leases.
    store = Store(app[REDIS], settings.key_prefix, uuid.uuid4().hex[:16], settings.read_lease_ms)
    flusher = Flusher(store, batch_max=settings.flush_batch_max, queue_max=settings.queue_max,
                      queue_wait=settings.queue_wait_ms / 1000,
                      linger=settings.flush_interval_ms / 1000)
    cache = SessionCache(settings.cache_max_bytes, settings.cache_max_messages)
    engine = Engine(store, flusher, cache, Handoff(app[UPSTREAM]),
                    buffered=settings.ack_mode == "buffered")
    engine.max_body_bytes = settings.max_body_bytes
    app[ENGINE] = engine
    count_text("warm-up")  # load the encoding (~0.2 s) now, not in the first PUT
    try:
        await store.load_scripts()
    except (RedisError, OSError) as exc:  # start anyway; /-/readyz tells, the flusher retries
        log.warning("redis not reachable at start-up: %r", exc)
    flusher.start()
    if settings.read_lease_ms > 0:
        leases = Leases(store.holder, settings.read_lease_ms)
        engine.leases = flusher.leases = leases
        engine.invalidation = Invalidation(app[REDIS], settings.key_prefix, leases,
                                           cache.invalidate, cache.clear)
        engine.invalidation.start()
    log.info("working-memory engine on %s (ack mode %s)", settings.redis_url, settings.ack_mode)
    yield
    await engine.drain(settings.shutdown_timeout)
    if engine.invalidation is not None:
        await engine.invalidation.close()


async def _pass_through(request: web.Request) -> web.StreamResponse:
    return await request.app[UPSTREAM].forward(request)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware],
                          client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_upstream_ctx)
    app.cleanup_ctx.append(_redis_ctx)
    app.cleanup_ctx.append(_engine_ctx)
    health.add_routes(app.router)
    handlers.add_routes(app.router)
    app.router.add_route("*", "/{tail:.*}", _pass_through)
    return app

