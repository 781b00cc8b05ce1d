"""``POST /v1/memory/prompt``: the upstream builds prompts from a session it reads itself,
but the proxy holds the sessions, so prompts naming a session are answered here."""

from __future__ import annotations

from aiohttp import web

from proxy.appkeys import UPSTREAM


async def memory_prompt(request: web.Request) -> web.StreamResponse:
    return await request.app[UPSTREAM].forward(request)
