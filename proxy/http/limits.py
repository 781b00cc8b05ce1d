"""What one client may cost the proxy, so that slow, huge or broken requests cannot stall
everyone else.

* Bodies in flight: a body the proxy reads whole (a PUT, an append, a prompt, a small
  pass-through body) holds memory several times its size until its answer is built, so
  its bytes are reserved against ``bodies_in_flight_bytes`` (the declared length before
  reading a byte, else as they arrive). Past the budget: 503 + Retry-After, before the
  body is read. A lone body always fits (``max_body_bytes`` bounds its size).
* Slow bodies: a client has ``body_read_timeout`` seconds to send its whole body (408).
  Pass-through bodies up to ``BUFFERED_PASS_THROUGH`` are read before an upstream
  connection is taken, so slow clients do not hold the upstream's connections; bigger
  ones stream, cut at the same deadline.
* A client that hangs up mid-body is a client disconnect (INFO), not a server error.
* Malformed HTTP: aiohttp logs the parser's error with a traceback; one line is enough.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import http_exceptions, web

from proxy.errors import BodyTimeout, ClientDisconnected, Overloaded, PayloadTooLarge
from proxy.http.appkeys import SETTINGS

log = logging.getLogger("proxy.limits")

BUFFERED_PASS_THROUGH = 1024 * 1024  # pass-through bodies read whole before forwarding


class BodyBudget:
    """Bytes of request bodies being held at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> None:
        if self.used and self.used + n > self.limit:
            raise Overloaded(f"too many request bytes in flight (bodies_in_flight_bytes = "
                             f"{self.limit}); retry shortly")
        self.used += n

    def give_back(self, n: int) -> None:
        self.used -= n


class Lease:
    """One request's share of the budget, returned when its answer is built."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> None:
        self.budget.take(n)
        self.held += n

    def release(self) -> None:
        self.budget.give_back(self.held)
        self.held = 0


BUDGET = web.AppKey("body_budget", BodyBudget)
LEASE = web.RequestKey("body_lease", Lease)


def hold(request: web.Request) -> Lease | None:
    """The request's lease on the budget, which ``read_body`` fills and the request pipeline
    (http/middleware.py) releases once the answer is built; None without a body (most
    reads: nothing to hold)."""
    if not request.body_exists:
        return None
    lease = request[LEASE] = Lease(request.app[BUDGET])
    return lease


async def read_body(request: web.Request) -> bytes:
    """The whole body, within the budget, the size limit and the read timeout."""
    settings = request.app[SETTINGS]
    limit = settings.max_body_bytes
    declared = request.content_length
    lease = request.get(LEASE) or Lease(request.app[BUDGET])
    if declared is not None:
        if declared > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        lease.take(declared)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(settings.body_read_timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
                if declared is None:
                    lease.take(len(chunk))
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"request body not received within "
                          f"{settings.body_read_timeout:g} s") from None
    except (ConnectionResetError, http_exceptions.HttpProcessingError) as exc:
        raise ClientDisconnected(f"client disconnected after {size} body bytes "
                                 f"({exc.__class__.__name__})") from None
    if declared is not None and size < declared:
        raise ClientDisconnected(f"client disconnected after {size} of {declared} body bytes")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def pass_through_body(request: web.Request) -> bytes | AsyncIterator[bytes]:
    """A small pass-through body read whole (so that a slow client holds no upstream
    connection while it sends), or a big one's chunks within ``body_read_timeout``."""
    if not request.body_exists:
        return b""
    declared = request.content_length
    if declared is None or declared > BUFFERED_PASS_THROUGH:
        return _timed_chunks(request, request.app[SETTINGS].body_read_timeout)
    return await read_body(request)


async def _timed_chunks(request: web.Request, timeout: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    sent = 0
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.readany(),
                                           max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise BodyTimeout(f"request body not received within {timeout:g} s") from None
        except (ConnectionResetError, http_exceptions.HttpProcessingError) as exc:
            raise ClientDisconnected(f"client disconnected after {sent} body bytes "
                                     f"({exc.__class__.__name__})") from None
        if not chunk:
            break
        sent += len(chunk)
        yield chunk
    if request.content_length is not None and sent < request.content_length:
        raise ClientDisconnected(f"client disconnected after {sent} of "
                                 f"{request.content_length} body bytes")


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse with the parser's traceback: one line does."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, http_exceptions.HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            detail = " ".join(str(exc.message).split())  # the parser's message spans lines
            record.msg, record.args = "malformed request from %s: %s", (peer, detail)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


def quiet_malformed_requests() -> None:
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())


async def limits_ctx(app: web.Application) -> AsyncIterator[None]:
    app[BUDGET] = BodyBudget(app[SETTINGS].bodies_in_flight_bytes)
    quiet_malformed_requests()
    yield
