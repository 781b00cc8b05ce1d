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


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as exc:
        if isinstance(exc, ClientDisconnected) or _client_gone(request):
            # Nobody is left to answer (a Redis call cut short by the hang-up included).
            log.info("%s %s: client disconnected (%s)", request.method, request.path,
                     exc.detail)
            raise asyncio.CancelledError from None
        level = logging.ERROR if exc.status == 503 and exc.__cause__ else logging.WARNING
        if isinstance(exc, Refused):
            level = logging.INFO  # the upstream's own refusal: routine, and clients repeat it
        log.log(level, "%s %s -> %d: %s", request.method, request.path, exc.status, exc.detail)
        return web.Response(status=exc.status, body=exc.body(),
                            content_type="application/json", headers=exc.headers())
    except OverflowError:
        # The codec does the upstream's arithmetic (a window times the summarization
        # threshold, as a float): where it overflows (a 400-digit context_window_max),
        # the upstream fails with its generic 500, before storing anything; so does this.
        log.warning("%s %s -> 500: arithmetic overflow, as upstream", request.method,
                    request.path, exc_info=True)
        return web.Response(status=500, body=b"Internal Server Error",
                            content_type="text/plain", charset="utf-8")
    except web.HTTPNotFound:
        if request.raw_path.startswith("/"):
            raise
        # An absolute-form target without a path (``GET http://host``) matches no route,
        # not even the catch-all: the upstream answers it, for "/".
        return await request.app[UPSTREAM].forward(request)
    except UseUpstream:
        # Only bodiless requests get here (reads, deletes): the body is unread and can
        # still be streamed on.
        return await request.app[UPSTREAM].forward(request)
