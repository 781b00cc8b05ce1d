"""Per request: a request id, the request metrics and one access log line.

The outermost step of the request pipeline (http/middleware.py), so the status it records
is the one the client gets, including the answers mapped from exceptions. Cheap on the hot
path (about 2 us): two clock reads, a few additions in plain numbers (metrics.py), and an
access line appended to a batch (accesslog.py) when INFO is on. The response carries the
id; a streamed one (the pass-through) gets it from the upstream client before its headers
go out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import Token

from aiohttp import web

from proxy.observability import accesslog, context
from proxy.observability.metrics import Metrics

log = logging.getLogger("proxy.access")

PASS_THROUGH = "pass-through"  # route label of the catch-all
CLIENT_GONE = 499  # nginx's convention: the client closed the connection first


def route_label(request: web.Request) -> str:
    """The route template ("/v1/working-memory/{session_id}"), never the path itself."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    canonical = resource.canonical
    return PASS_THROUGH if canonical == "/{tail}" else canonical


class Access:
    """The access record of every request: ``begin`` when it arrives, ``answered`` with its
    response, ``end`` once it is done (whatever the outcome). Called by the request
    pipeline (http/middleware.py), which runs them around everything else."""

    def __init__(self, metrics: Metrics, draining: asyncio.Event) -> None:
        self.metrics = metrics
        self.draining = draining
        self.sink = accesslog.sink()  # batched lines when serve set logging up, else logging

    @staticmethod
    def begin(request: web.Request) -> tuple[str, Token[str | None], float]:
        """The request's id (made current), the token that ends it, and the start time."""
        rid = context.request_id_from(request.headers.get(context.HEADER))
        return rid, context.current.set(rid), time.perf_counter()

    def answered(self, response: web.StreamResponse, rid: str) -> None:
        if not response.prepared:
            response.headers[context.HEADER] = rid
        if self.draining.is_set():
            # Envoy's drain: answer, then close, so keep-alive clients reconnect
            # (through their load balancer, to an instance that is not leaving).
            response.force_close()

    def end(self, request: web.Request, rid: str, token: Token[str | None], started: float,
            status: int) -> None:
        elapsed = time.perf_counter() - started
        route = route_label(request)
        self.metrics.request_done(route, request.method, status, elapsed)
        if self.sink is not None:
            self.sink.line(request.method, request.path, status, elapsed, rid, route)
        elif log.isEnabledFor(logging.INFO):
            log.info("%s %s %d %.1fms id=%s", request.method, request.path, status,
                     elapsed * 1000, rid,
                     extra={"route": route, "status": status,
                            "duration_ms": round(elapsed * 1000, 3)})
        context.current.reset(token)
