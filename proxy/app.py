"""Wiring only: build the aiohttp application from Settings.

Long-lived resources live in ``cleanup_ctx`` generators under typed AppKeys and are torn
down in reverse order: the upstream sync stops first, then the engine's writes drain (still
marking their sessions due for whoever syncs next) before coherence stops listening (a
write may be waiting for another proxy's release) and before Redis closes.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from aiohttp import web

from proxy.codec.tokens import count_text
from proxy.coherence import Coherence, LeasedCoherence
from proxy.config import Settings
from proxy.engine.cache import SessionCache
from proxy.engine.engine import Engine
from proxy.engine.flusher import Flusher
from proxy.engine.versions import VersionWatch
from proxy.engine.writes import Writes
from proxy.errors import StoreUnavailable
from proxy.http import auth, limits, middleware, ops, routes
from proxy.http.appkeys import (
    CACHE,
    COHERENCE,
    DRAINING,
    ENGINE,
    METRICS,
    REDIS,
    SETTINGS,
    STORE,
    UPSTREAM,
    VERSIONS,
    WRITES,
)
from proxy.observability import access
from proxy.observability.metrics import Metrics
from proxy.store.connect import close, connect
from proxy.store.store import Store
from proxy.sync.hooks import SyncHooks
from proxy.sync.worker import SyncWorker
from proxy.tasks import cancel_and_wait, spawn
from proxy.upstream.client import Upstream, make_client_session
from proxy.upstream.sessions import UpstreamSessions

log = logging.getLogger("proxy.app")

REDIS_CONNECTIONS = 64  # plenty for one event loop; the pub/sub listener holds one
SYNC = web.AppKey("sync", SyncWorker)


async def _upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    session = make_client_session(settings.upstream_connect_timeout, settings.upstream_timeout,
                                  settings.upstream_connections)
    app[UPSTREAM] = Upstream(settings.upstream_url, session, app[METRICS],
                             connections=settings.upstream_connections,
                             pool_wait=settings.upstream_pool_wait)
    log.info("upstream %s", settings.upstream_url)
    yield
    await session.close()


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    client = connect(settings.redis_url, REDIS_CONNECTIONS)  # one server, or a cluster
    app[REDIS] = client  # type: ignore[misc]  # or a RedisCluster: AppKey[RedisClient]
    # A fresh holder id per process: a restarted proxy holds none of its old leases.
    store = app[STORE] = Store(client, settings.key_prefix, uuid.uuid4().hex[:16],
                               settings.read_lease_ms, replicas=settings.write_replicas,
                               replicas_timeout_ms=settings.write_replicas_timeout_ms)
    yield
    await store.batches.close()
    await close(client)


async def _coherence_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    cache = app[CACHE] = SessionCache(settings.cache_max_bytes, settings.cache_max_messages,
                                      app[METRICS])
    coherence: Coherence = Coherence(app[STORE])
    if settings.read_lease_ms > 0:
        coherence = LeasedCoherence(app[STORE], app[REDIS], settings.key_prefix,
                                    settings.read_lease_ms, cache.invalidate, cache.clear,
                                    app[METRICS])
    app[COHERENCE] = coherence
    coherence.start()
    yield
    await coherence.close()


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, store = app[SETTINGS], app[STORE]
    flusher = Flusher(store, app[COHERENCE], batch_max=settings.flush_batch_max,
                      queue_max=settings.queue_max, queue_wait=settings.queue_wait_ms / 1000,
                      linger=settings.flush_interval_ms / 1000, metrics=app[METRICS])
    writes = app[WRITES] = Writes(flusher, app[CACHE], app[COHERENCE],
                                  buffered=settings.ack_mode == "buffered")
    # With the upstream sync on, writes mark their sessions due from the first one on.
    hooks = SyncHooks.build(settings, store, app[REDIS]) if settings.upstream_sync else None
    app[ENGINE] = Engine(store, writes, app[CACHE], app[COHERENCE],
                         UpstreamSessions(app[UPSTREAM], app[auth.GUARD].credentials),
                         rules=app[VERSIONS], sync=hooks)
    count_text("warm-up")  # load the encoding (~0.2 s) now, not in the first PUT
    try:
        await store.load_scripts()
    except StoreUnavailable as exc:  # start anyway; /-/readyz tells, the flusher retries
        log.warning("redis not reachable at start-up: %r", exc.__cause__)
    flusher.start()
    index = spawn(store.ids.build([s.index for s in store.index.shards]), name="id-index-build")
    log.info("working-memory engine on %s (ack mode %s)", settings.redis_url, settings.ack_mode)
    yield
    await cancel_and_wait(index)
    await writes.drain(settings.shutdown_timeout)


async def _versions_ctx(app: web.Application) -> AsyncIterator[None]:
    """The fronted upstream's version, so the rules the engine answers by (versions.py)."""
    settings = app[SETTINGS]
    watch = app[VERSIONS] = VersionWatch(
        app[UPSTREAM], setting=settings.upstream_version,
        summarization=settings.upstream_summarization,
        threshold=settings.upstream_summarization_threshold)
    await watch.start(settings.upstream_connect_timeout)
    yield
    await watch.close()


async def _sync_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.upstream_sync:
        yield
        return
    engine = app[ENGINE]
    assert isinstance(engine.sync, SyncHooks)  # built with the engine (_engine_ctx)
    worker = app[SYNC] = SyncWorker.build(settings, engine.sync, engine, app[METRICS])
    worker.start()
    log.info("upstream sync on: quiet %.0f ms, max lag %.0f ms, %d at a time",
             settings.sync_quiet_ms, settings.sync_max_lag_ms, settings.sync_concurrency)
    yield
    await worker.close(min(2.0, settings.shutdown_timeout))


def create_app(settings: Settings) -> web.Application:
    metrics, draining = Metrics(), asyncio.Event()
    pipeline = middleware.make_pipeline(access.Access(metrics, draining))
    app = web.Application(middlewares=[pipeline], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS], app[DRAINING] = metrics, draining
    for ctx in (_upstream_ctx, auth.auth_ctx, limits.limits_ctx, _redis_ctx, _coherence_ctx,
                _versions_ctx, _engine_ctx, _sync_ctx, ops.sampler_ctx):
        app.cleanup_ctx.append(ctx)
    ops.add_routes(app.router)  # before the API's catch-all
    routes.add_routes(app.router)
    return app
