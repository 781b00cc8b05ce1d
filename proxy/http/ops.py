"""The operator's endpoints and state beside the API: ``/-/metrics`` (Prometheus text
format) and the gauges sampled from the components' state.

Gauges that mirror state (cache bytes and sessions, write queue depth, whether the
invalidation subscription is up) are read from the components when scraped. With several
workers (multiprocess mode) every worker also refreshes its own once a second, since a
scrape reaches one worker and merges the others' files as they last wrote them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from proxy.coherence import LeasedCoherence
from proxy.http.appkeys import CACHE, COHERENCE, METRICS, WRITES
from proxy.observability.metrics import CONTENT_TYPE, multiprocess_dir
from proxy.tasks import cancel_and_wait, spawn

METRICS_PATH = "/-/metrics"
SAMPLE_EVERY = 1.0  # seconds, multiprocess mode only


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    """Register before the API's routes: their catch-all would take the path otherwise."""
    router.add_get(METRICS_PATH, metrics, allow_head=False)


def _sampler(app: web.Application) -> None:
    m = app[METRICS]
    if CACHE in app:
        cache = app[CACHE]
        m.cache_bytes.set(cache.bytes_used)
        m.cache_sessions.set(len(cache))
    if WRITES in app:
        m.write_queue_depth.set(app[WRITES].flusher.pending)
    if COHERENCE in app:
        coherence = app[COHERENCE]
        up = isinstance(coherence, LeasedCoherence) and coherence.invalidation.healthy
        m.invalidation_connected.set(1 if up else 0)


async def _refresh(app: web.Application) -> None:
    while True:
        await asyncio.sleep(SAMPLE_EVERY)
        app[METRICS].sample()


async def sampler_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: register the gauges' sampler; refresh them behind in multiprocess mode."""
    app[METRICS].add_sampler(lambda: _sampler(app))
    task = spawn(_refresh(app), name="metrics sampler") if multiprocess_dir() else None
    yield
    await cancel_and_wait(task)
