"""``POST /v1/memory/prompt``: prompts built from sessions the proxy holds.

The upstream builds a prompt from the session it reads from its own Redis, but the
upstream's copy of a session the proxy serves is not current: with the upstream sync on it
trails the proxy's by up to the sync's lag (proxy/sync/), with it off the proxy deleted it.
A blind forward would build the prompt from stale or no messages. A request whose body
names a ``session`` is therefore answered from both, concurrently:

* the upstream gets the request unchanged, so it validates it (422/400 bodies are its
  own), runs any ``long_term_search`` with the same filters it would derive from the
  session, and writes the trailing messages (long-term results, the query);
* the engine reads the session exactly as ``GET`` would with the session's
  ``model_name``/``context_window_max`` (same key, same §6.2 truncation).

When the upstream answers 200 and the proxy holds the session, the session part of the
upstream's answer (whatever it read from its own copy: the last hand-over, or nothing) is
replaced by the one built here per contract §7.2: a system summary message when
``context`` is non-empty, then each message with ``user`` kept and every other role made
``assistant``. Anything else (no session, an upstream error, a session the proxy does not
hold, a compressed or unexpected answer) is the upstream's answer unchanged.

Cost: a prompt naming a session costs one upstream round trip (as before) plus one session
read here, run side by side, and a re-encoding of the message list. Prompt bodies are read
whole (bounded by ``max_body_bytes``) instead of streamed, so that the session can be seen.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict, MultiDict

from proxy.codec.querystring import lax_int
from proxy.engine.engine import Answer, Engine
from proxy.errors import Refused, Unsupported, UseUpstream
from proxy.http.appkeys import ENGINE, UPSTREAM
from proxy.http.limits import read_body
from proxy.upstream.client import HOP_BY_HOP, UpstreamAnswer, forward_headers

SUMMARY = "## A summary of the conversation so far:\n"
LONG_TERM = "## Long term memories related to the user's query\n"
DROPPED_HEADERS = HOP_BY_HOP | {"date", "server"}
UNROUTABLE = frozenset("{}/")


def text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": {"type": "text", "text": text, "annotations": None,
                                      "_meta": None}}


def session_request(raw: bytes) -> dict[str, Any] | None:
    """The body's ``session`` object when it names a session id, else None."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    session = body.get("session") if isinstance(body, dict) else None
    if isinstance(session, dict) and isinstance(session.get("session_id"), str):
        return session
    return None


def session_query(session: dict[str, Any]) -> MultiDict[str] | None:
    """The GET query that reads ``session`` as the prompt does; None if unsure."""
    query: MultiDict[str] = MultiDict()
    for name in ("namespace", "user_id", "model_name"):
        value = session.get(name)
        if isinstance(value, str):
            query[name] = value
        elif value is not None:
            return None
    window = session.get("context_window_max")
    try:
        if type(window) is int:
            query["context_window_max"] = str(window)
        elif isinstance(window, str):
            query["context_window_max"] = str(lax_int(window))
        elif isinstance(window, float) and window.is_integer():
            query["context_window_max"] = str(int(window))
        elif window is not None:
            return None
    except Unsupported:
        return None
    return query


def session_part(get_body: bytes) -> list[dict[str, Any]]:
    """The prompt messages §7.2 builds from a session, given the engine's GET answer."""
    doc = orjson.loads(get_body)
    out = [text_message("system", SUMMARY + doc["context"])] if doc["context"] else []
    for m in doc["messages"]:
        out.append(text_message("user" if m["role"] == "user" else "assistant", m["content"]))
    return out


def upstream_tail(messages: list[Any]) -> list[Any]:
    """The part of the upstream's prompt that does not come from the session."""
    if len(messages) >= 2:
        before = messages[-2]
        if (isinstance(before, dict) and before.get("role") == "system"
                and isinstance(before.get("content"), dict)
                and str(before["content"].get("text", "")).startswith(LONG_TERM)):
            return messages[-2:]
    return messages[-1:]


def splice(upstream_body: bytes, ours: list[dict[str, Any]]) -> bytes | None:
    """The upstream's prompt with its session part replaced by ``ours``."""
    try:
        answer = orjson.loads(upstream_body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict) or not isinstance(answer.get("messages"), list):
        return None
    theirs: list[Any] = answer["messages"]
    if not theirs:
        return None
    messages = orjson.dumps(ours + upstream_tail(theirs))
    prefix = b'{"messages":' + orjson.dumps(theirs)
    if upstream_body.startswith(prefix):
        # Keep the rest (long-term results, with their floats) byte for byte.
        return b'{"messages":' + messages + upstream_body[len(prefix):]
    answer["messages"] = orjson.Fragment(messages)
    return orjson.dumps(answer)


def routable(session_id: str) -> bool:
    """Whether the REST routes serve ``session_id`` here (their ``{session_id}`` segment
    matches no brace and no slash); others live in the upstream, and a prompt must not
    import them where no GET would find them."""
    return bool(session_id) and not UNROUTABLE.intersection(session_id)


async def read_session(engine: Engine, session: dict[str, Any]) -> Answer | None:
    query = session_query(session)
    if query is None or not routable(session["session_id"]):
        return None
    try:
        answer = await engine.get(session["session_id"], query)
    except (UseUpstream, Refused):  # a refused client gets the upstream's own refusal
        return None
    return answer if answer.status == 200 else None


async def call_upstream(request: web.Request, raw: bytes) -> UpstreamAnswer:
    return await request.app[UPSTREAM].call(
        request.method, request.raw_path, io.BytesIO(raw), forward_headers(request),
        skip_auto_headers=("Content-Type",))


def respond(answer: UpstreamAnswer, body: bytes | None = None) -> web.Response:
    """The upstream's answer, headers in their order (a new body gets a new length)."""
    body = answer.body if body is None else body
    kept = CIMultiDict((k, v) for k, v in answer.headers.items()
                       if k.lower() not in DROPPED_HEADERS)
    if "content-length" in kept:
        kept["content-length"] = str(len(body))
    return web.Response(status=answer.status, headers=kept, body=body)


async def memory_prompt(request: web.Request) -> web.StreamResponse:
    raw = await read_body(request)
    session = session_request(raw)
    if session is None:
        return respond(await call_upstream(request, raw))
    upstream, local = await asyncio.gather(
        call_upstream(request, raw), read_session(request.app[ENGINE], session))
    if upstream.status != 200 or local is None or "content-encoding" in upstream.headers:
        return respond(upstream)
    return respond(upstream, splice(upstream.body, session_part(local.body)))
