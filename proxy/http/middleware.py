"""The one place exceptions become answers (the tree is drawn in errors.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.errors import ClientDisconnected, HttpError, Refused, UseUpstream, detail_body
from proxy.http.appkeys import UPSTREAM

log = logging.getLogger("proxy.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, detail: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=detail_body(detail),
                        content_type="application/json", headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ClientDisconnected as exc:
        log.info("%s %s: %s", request.method, request.path, exc)
        raise asyncio.CancelledError from None  # nobody is left to answer
    except HttpError as exc:
        level = logging.ERROR if exc.status == 503 and exc.__cause__ else logging.WARNING
        if isinstance(exc, Refused):
            level = logging.INFO  # the upstream's own refusal: routine, and clients repeat it
        log.log(level, "%s %s -> %d: %s", request.method, request.path, exc.status, exc.detail)
        return web.Response(status=exc.status, body=exc.body(),
                            content_type="application/json", headers=exc.headers())
    except UseUpstream:
        # Only bodiless requests get here (reads, deletes): the body is unread and can
        # still be streamed on.
        return await request.app[UPSTREAM].forward(request)
