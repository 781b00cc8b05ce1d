"""The request pipeline: the proxy's one middleware, and the one place exceptions become
answers (the tree is drawn in errors.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.errors import ClientDisconnected, HttpError, Refused, UseUpstream, detail_body
from proxy.http.appkeys import UPSTREAM
from proxy.http.auth import GUARD
from proxy.http.limits import hold
from proxy.observability.access import CLIENT_GONE, Access
from proxy.observability.context import HEADER
from proxy.upstream.credentials import acting_for

log = logging.getLogger("proxy.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, detail: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=detail_body(detail),
                        content_type="application/json", headers=headers)


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def make_pipeline(access: Access) -> Middleware:
    """The proxy's one middleware: every request's way through the proxy, outermost first.

    1. the access record (observability/access.py): a request id, metrics, an access line;
    2. the client's credential (http/auth.py): upstream calls inside carry it, and the
       engine's ``verify_caller()`` asks the guard about it;
    3. the body budget (http/limits.py): a body's bytes are held until its answer is built;
    4. exceptions become answers (``answer_error``).

    One layer, not one middleware each: every layer is a coroutine and a call per request,
    a few percent of a warm GET at saturation.
    """

    @web.middleware
    async def pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid, token, started = access.begin(request)
        status = 500
        try:
            guard = request.app[GUARD]
            caller = guard.caller(request)
            with acting_for(caller):
                lease = hold(request)
                try:
                    response = await handler(request)
                except _ANSWERED as exc:
                    response = await answer_error(request, exc)
                finally:
                    if lease is not None:
                        lease.release()
            guard.noticed(caller.authorization, response.status)
            status = response.status
            access.answered(response, rid)
            return response
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[HEADER] = rid
            raise
        except asyncio.CancelledError:
            status = CLIENT_GONE
            raise
        finally:
            access.end(request, rid, token, started, status)

    return pipeline


_ANSWERED = (HttpError, OverflowError, web.HTTPNotFound, UseUpstream)


async def answer_error(request: web.Request, exc: BaseException) -> web.StreamResponse:
    """The answer to an exception the handler raised (one of ``_ANSWERED``); raises again
    what is not to be answered here."""
    if isinstance(exc, HttpError):
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
    if isinstance(exc, OverflowError):
        # The codec does the upstream's arithmetic (a window times the summarization
        # threshold, as a float): where it overflows (a 400-digit context_window_max),
        # the upstream fails with its generic 500, before storing anything; so does this.
        log.warning("%s %s -> 500: arithmetic overflow, as upstream", request.method,
                    request.path, exc_info=exc)
        return web.Response(status=500, body=b"Internal Server Error",
                            content_type="text/plain", charset="utf-8")
    if isinstance(exc, web.HTTPNotFound) and request.raw_path.startswith("/"):
        raise exc
    # An absolute-form target without a path (``GET http://host``) matches no route, not
    # even the catch-all: the upstream answers it, for "/". A ``UseUpstream`` comes only
    # from bodiless requests (reads, deletes): the body is unread and can still be streamed.
    return await request.app[UPSTREAM].forward(request)
