"""The proxy's own endpoints, under ``/-/``, a prefix no upstream route uses."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web

from proxy.appkeys import REDIS, UPSTREAM

PREFIX = "/-"


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Redis and the upstream both answer right now."""
    checks = {"redis": "ok", "upstream": "ok"}
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), 2)
    except Exception as exc:  # any failure means not ready; the reason is reported
        checks["redis"] = f"down: {exc.__class__.__name__}"
    upstream = request.app[UPSTREAM]
    try:
        async with upstream.session.get(upstream.url_for("/v1/health"),
                                        timeout=aiohttp.ClientTimeout(total=2)) as resp:
            if resp.status != 200:
                checks["upstream"] = f"down: status {resp.status}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        checks["upstream"] = f"down: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.Response(status=200 if ready else 503, content_type="application/json",
                        body=orjson.dumps({"status": "ready" if ready else "not ready", **checks}))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(PREFIX + "/healthz", healthz, allow_head=False)
    router.add_get(PREFIX + "/readyz", readyz, allow_head=False)
