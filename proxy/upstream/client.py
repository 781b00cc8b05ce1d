"""The upstream agent-memory-server, reached through one pooled client session, two ways:

* ``forward``: the pass-through. Whatever the proxy does not answer itself goes to the
  upstream unchanged: method, path, query, headers (minus hop-by-hop ones, plus
  X-Forwarded-*), and the body, streamed in chunks so neither side's body is held whole in
  memory. Redirects are passed back, not followed.
* ``call``: a buffered request of the proxy's own (prompt, validation PUT, import, delete),
  answered as an ``UpstreamAnswer``.

Both map failures the same way: 502 (unreachable) or 504 (too slow). Both take one of
``upstream_connections`` slots, waiting at most ``upstream_pool_wait`` for one (503 +
Retry-After beyond); the pool holds ``CONTROL_CONNECTIONS`` more for control traffic
(readiness, credential checks), which goes to ``session`` directly, so a flood of slow
requests never starves it. Requests go to the configured upstream only: an absolute-form
target (``GET http://elsewhere/x``) is sent on in origin form (``/x``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import IO

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from proxy.errors import HttpError, Overloaded, UpstreamError, UpstreamTimeout
from proxy.observability import context
from proxy.observability.metrics import Metrics

log = logging.getLogger("proxy.upstream.client")

CHUNK = 64 * 1024
# RFC 9110 7.6.1: connection-specific headers never cross a proxy.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE",
        "Trailer", "Trailers", "Transfer-Encoding", "Upgrade", "Proxy-Connection",
    )
)
# aiohttp's client adds these when absent; the upstream must see only what the client sent.
AUTO_HEADERS = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)


CONTROL_CONNECTIONS = 16  # beyond the data-plane slots: readiness and credential checks
KEEPALIVE = 4.0  # seconds an idle upstream connection is kept


def make_client_session(connect_timeout: float, read_timeout: float,
                        connections: int = 256) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout,
                                    sock_read=read_timeout)
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: reusing
    # one the server is closing fails the request (ServerDisconnectedError, a 502).
    connector = aiohttp.TCPConnector(limit=connections + CONTROL_CONNECTIONS,
                                     ttl_dns_cache=300, keepalive_timeout=KEEPALIVE)
    # auto_decompress=False: compressed bodies pass through byte for byte.
    return aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False,
                                 cookie_jar=aiohttp.DummyCookieJar())


def wire_value(value: str) -> str:
    """A header value as it can be sent on: aiohttp decodes bytes that are not UTF-8 to
    surrogates, which its client then drops (``Bearer \\xff`` would reach the upstream
    as an empty ``Bearer``); they become U+FFFD instead, still a credential, still bad."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _strip_hop_by_hop(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    # Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
    named = {
        token.strip().lower()
        for value in headers.getall(hdrs.CONNECTION, ())
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower not in HOP_BY_HOP and lower not in named:
            out.add(name, wire_value(value))
    return out


def origin_form(raw_target: str) -> str:
    """The path and query of a request target; an absolute-form target
    (``http://host/path?q``) loses its scheme and authority."""
    if raw_target.startswith("/"):
        return raw_target
    url = URL(raw_target, encoded=True)
    query = url.raw_query_string
    return (url.raw_path or "/") + ("?" + query if query else "")


def forward_headers(request: web.Request) -> CIMultiDict[str]:
    headers = _strip_hop_by_hop(request.headers)
    peer = request.remote or ""
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    rid = context.current.get()
    if rid is not None:  # the client's own, or the one generated for it
        headers[context.HEADER] = rid
    return headers


class ClientGone(ConnectionResetError):
    """The client closed its connection before sending the whole body."""


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    sent = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        sent += len(chunk)
        yield chunk
    # A short body means the client went away; raising aborts the upstream request
    # instead of leaving the upstream waiting for bytes that will never come.
    if request.content_length is not None and sent < request.content_length:
        raise ClientGone(f"client sent {sent} of {request.content_length} bytes")


@dataclass(slots=True)
class UpstreamAnswer:
    status: int
    headers: CIMultiDict[str]
    body: bytes


class Upstream:
    """The upstream server, reached through one pooled client session."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession,
                 metrics: Metrics | None = None, *, connections: int = 256,
                 pool_wait: float = 5.0) -> None:
        self.base = URL(base_url.rstrip("/"))
        self.session = session
        self.metrics = metrics if metrics is not None else Metrics()
        self._slots = asyncio.Semaphore(connections)
        self.pool_wait = pool_wait

    async def _take_slot(self) -> None:
        try:
            async with asyncio.timeout(self.pool_wait):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(f"no upstream connection free within {self.pool_wait:g} s "
                             "(upstream_connections)") from None

    def _failed(self, use: str, kind: str) -> None:
        self.metrics.upstream_errors.labels(use, kind).inc()

    def url_for(self, raw_path_qs: str) -> URL:
        # Origin form only: whatever the client sent, the authority stays the upstream's.
        return URL(str(self.base) + origin_form(raw_path_qs), encoded=True)

    async def call(self, method: str, path_qs: str, body: bytes | IO[bytes] | None = None,
                   headers: CIMultiDict[str] | dict[str, str] | None = None,
                   skip_auto_headers: Iterable[str] = ()) -> UpstreamAnswer:
        """One buffered request; ``path_qs`` is sent as given (already percent-encoded)."""
        rid = context.current.get()
        if rid is not None:
            headers = CIMultiDict(headers or ())
            headers.setdefault(context.HEADER, rid)
        self.metrics.upstream_requests.labels("call").inc()
        await self._take_slot()
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, self.url_for(path_qs), data=body, headers=headers,
                allow_redirects=False, skip_auto_headers=skip_auto_headers, compress=None,
            ) as resp:
                self.metrics.upstream_duration.labels("call").observe(
                    time.perf_counter() - started)
                return UpstreamAnswer(resp.status, CIMultiDict(resp.headers), await resp.read())
        except TimeoutError as exc:
            self._failed("call", "timeout")
            raise UpstreamTimeout("upstream timed out") from exc
        except aiohttp.ClientError as exc:
            self._failed("call", "unreachable")
            raise UpstreamError(f"upstream unreachable: {exc.__class__.__name__}") from exc
        finally:
            self._slots.release()

    async def forward(self, request: web.Request,
                      body: bytes | AsyncIterator[bytes] | None = None) -> web.StreamResponse:
        """Send the request on as it came and stream the answer back; ``body``, when
        given, is the request's body already read, or its chunks (else it is streamed)."""
        data = body or None
        if body is None and request.body_exists:
            data = _body_chunks(request)
        self.metrics.upstream_requests.labels("pass_through").inc()
        await self._take_slot()
        try:
            return await self._forward(request, data)
        finally:
            self._slots.release()

    async def _forward(self, request: web.Request,
                       data: bytes | AsyncIterator[bytes] | None) -> web.StreamResponse:
        headers = forward_headers(request)
        skip = [h for h in AUTO_HEADERS if h not in request.headers]
        started = time.perf_counter()
        try:
            upstream_resp = await self.session.request(
                request.method, self.url_for(request.raw_path), headers=headers,
                data=data, allow_redirects=False, skip_auto_headers=skip, compress=None,
            )
        except TimeoutError as exc:
            self._failed("pass_through", "timeout")
            raise UpstreamTimeout("upstream timed out") from exc
        except aiohttp.ClientConnectionError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                self._failed("pass_through", "timeout")
                raise UpstreamTimeout("upstream timed out") from exc
            if isinstance(exc.__cause__, HttpError):  # the body's own end (a read timeout)
                raise exc.__cause__ from None
            if request.transport is None or request.transport.is_closing():
                # The client went away mid-body; there is nobody to answer.
                raise asyncio.CancelledError from exc
            self._failed("pass_through", "unreachable")
            raise UpstreamError(f"upstream unreachable: {exc.__class__.__name__}") from exc
        self.metrics.upstream_duration.labels("pass_through").observe(
            time.perf_counter() - started)
        async with upstream_resp:
            return await self._stream_back(request, upstream_resp)

    async def _stream_back(self, request: web.Request,
                           upstream_resp: aiohttp.ClientResponse) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream_resp.status, reason=upstream_resp.reason)
        for name, value in _strip_hop_by_hop(upstream_resp.headers).items():
            response.headers.add(name, value)
        rid = context.current.get()
        # Streamed: set before prepare, the access record (observability/access.py) is too late.
        if rid is not None:
            response.headers[context.HEADER] = rid
        try:
            await response.prepare(request)
            async for chunk in upstream_resp.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except TimeoutError:
            # Headers are already sent; the only honest signal left is a cut connection.
            log.warning("upstream stalled mid-body on %s %s", request.method, request.path)
            _cut(request)
            return response
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            log.warning("stream to client broken on %s %s: %r", request.method, request.path, exc)
            _cut(request)
            return response
        await response.write_eof()
        return response


def _cut(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()
