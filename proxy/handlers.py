"""HTTP handlers of the working-memory routes the proxy answers itself.

Each turns the request into an engine call and the engine's Answer into a response;
what the engine hands off goes to the upstream unchanged.
"""

from __future__ import annotations

from aiohttp import web

from proxy.append import append_messages
from proxy.appkeys import ENGINE, UPSTREAM
from proxy.engine import Answer, HandOff
from proxy.errors import PayloadTooLarge
from proxy.prompt import memory_prompt

WM = "/v1/working-memory"


def respond(answer: Answer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    response.content_type = answer.content_type.split(";")[0]
    if "charset" in answer.content_type:
        response.charset = answer.content_type.split("charset=")[-1]
    return response


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body exceeds {request.app[ENGINE].max_body_bytes} bytes") from None


async def list_sessions(request: web.Request) -> web.StreamResponse:
    try:
        return respond(await request.app[ENGINE].list_sessions(request.query))
    except HandOff:
        return await request.app[UPSTREAM].forward(request)


def _encoded_slash(request: web.Request) -> bool:
    """The upstream's router never matches an id holding %2F (404 Not Found); aiohttp's
    would, so such requests go to the upstream for its own answer."""
    return "%2f" in request.raw_path.partition("?")[0].lower()


async def get_session(request: web.Request) -> web.StreamResponse:
    if _encoded_slash(request):
        return await request.app[UPSTREAM].forward(request)
    try:
        answer = await request.app[ENGINE].get(request.match_info["session_id"], request.query)
    except HandOff:
        return await request.app[UPSTREAM].forward(request)
    return respond(answer)


async def put_session(request: web.Request) -> web.StreamResponse:
    if _encoded_slash(request):
        return await request.app[UPSTREAM].forward(request)
    raw = await read_body(request)
    # The raw (still percent-encoded) query goes on to the upstream when handed off.
    answer = await request.app[ENGINE].put(
        request.match_info["session_id"], raw, request.headers.get("Content-Type"),
        request.query, request.rel_url.raw_query_string)
    return respond(answer)


async def delete_session(request: web.Request) -> web.StreamResponse:
    if _encoded_slash(request):
        return await request.app[UPSTREAM].forward(request)
    answer = await request.app[ENGINE].delete(request.match_info["session_id"], request.query)
    return respond(answer)


async def append_session(request: web.Request) -> web.StreamResponse:
    raw = await read_body(request)
    answer = await append_messages(request.app[ENGINE], request.match_info["session_id"], raw,
                                   request.query)
    return respond(answer)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(WM + "/", list_sessions, allow_head=False)
    router.add_get(WM + "/{session_id}", get_session, allow_head=False)
    router.add_put(WM + "/{session_id}", put_session)
    router.add_delete(WM + "/{session_id}", delete_session)
    router.add_post(WM + "/{session_id}/messages", append_session)
    router.add_post("/v1/memory/prompt", memory_prompt)
