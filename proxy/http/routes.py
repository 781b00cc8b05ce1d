"""HTTP handlers: the working-memory routes the proxy answers itself, and its own
endpoints under ``/-/`` (a prefix no upstream route uses).

Each working-memory handler turns the request into an engine call and the engine's Answer
into a response; what the engine cannot answer exactly goes to the upstream unchanged
(``ForwardToUpstream``, see middleware.py).
"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
from aiohttp import web

from proxy.engine.engine import Answer
from proxy.errors import ForwardToUpstream
from proxy.http.appkeys import DRAINING, ENGINE, REDIS, UPSTREAM
from proxy.http.limits import pass_through_body, read_body
from proxy.http.prompt import memory_prompt

WM = "/v1/working-memory"
OWN = "/-"
SLICE = 1 << 20


def respond(answer: Answer) -> web.Response:
    if answer.content_type == "application/json":  # nearly always: no header parsing
        return web.Response(status=answer.status, body=answer.body,
                            headers=answer.headers or None, content_type="application/json")
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    response.content_type = answer.content_type.split(";")[0]
    if "charset" in answer.content_type:
        response.charset = answer.content_type.split("charset=")[-1]
    return response


async def send(request: web.Request, answer: Answer) -> web.StreamResponse:
    """``respond``, but an answer past ``SLICE`` (a whole big session) is written in
    slices: one write of 50 MB copies it whole, twice, in one turn of the event loop."""
    if len(answer.body) <= SLICE:
        return respond(answer)
    shaped = respond(Answer(answer.status, b"", answer.headers, answer.content_type))
    response = web.StreamResponse(status=answer.status, headers=shaped.headers)
    response.content_length = len(answer.body)
    await response.prepare(request)
    with memoryview(answer.body) as body:
        for start in range(0, len(body), SLICE):
            await response.write(body[start:start + SLICE])
    await response.write_eof()
    return response


def _forward_encoded_slash(request: web.Request) -> None:
    """The upstream's router never matches an id holding %2F (404 Not Found); aiohttp's
    would, so such requests go to the upstream for its own answer."""
    raw_path = request.raw_path
    if "%" in raw_path and "%2f" in raw_path.partition("?")[0].lower():
        raise ForwardToUpstream("encoded slash in the session id")


async def list_sessions(request: web.Request) -> web.StreamResponse:
    return respond(await request.app[ENGINE].list_sessions(request.query))


async def get_session(request: web.Request) -> web.StreamResponse:
    _forward_encoded_slash(request)
    return await send(request, await request.app[ENGINE].get(request.match_info["session_id"],
                                                             request.query))


async def put_session(request: web.Request) -> web.StreamResponse:
    _forward_encoded_slash(request)
    raw = await read_body(request)
    # The raw (still percent-encoded) query goes on to the upstream when handed off.
    answer = await request.app[ENGINE].put(
        request.match_info["session_id"], raw, request.headers.get("Content-Type"),
        request.query, request.rel_url.raw_query_string)
    return await send(request, answer)


async def delete_session(request: web.Request) -> web.StreamResponse:
    _forward_encoded_slash(request)
    return respond(await request.app[ENGINE].delete(request.match_info["session_id"],
                                                    request.query))


async def append_session(request: web.Request) -> web.StreamResponse:
    raw = await read_body(request)
    return respond(await request.app[ENGINE].append(request.match_info["session_id"], raw,
                                                    request.query))


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: Redis and the upstream both answer right now, and no SIGTERM is draining
    the process (then 503 at once, so load balancers stop sending new requests)."""
    if request.app[DRAINING].is_set():
        return web.Response(status=503, content_type="application/json",
                            body=b'{"status":"draining"}')
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


async def pass_through(request: web.Request) -> web.StreamResponse:
    # A small body is read first: a slow client then holds no upstream connection.
    return await request.app[UPSTREAM].forward(request, await pass_through_body(request))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(OWN + "/healthz", healthz, allow_head=False)
    router.add_get(OWN + "/readyz", readyz, allow_head=False)
    router.add_get(WM + "/", list_sessions, allow_head=False)
    router.add_get(WM + "/{session_id}", get_session, allow_head=False)
    router.add_put(WM + "/{session_id}", put_session)
    router.add_delete(WM + "/{session_id}", delete_session)
    router.add_post(WM + "/{session_id}/messages", append_session)
    router.add_post("/v1/memory/prompt", memory_prompt)
    router.add_route("*", "/{tail:.*}", pass_through)
