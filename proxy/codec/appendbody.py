"""The append endpoint's body and answer (``POST /v1/working-memory/{id}/messages``).

The body carries only the new messages: ``{"messages": [...], "namespace"?: str,
"user_id"?: str}``. The answer is small::

    {"session_id": "...", "namespace": null, "user_id": null, "message_count": 4002,
     "context_percentage_total_used": ..., "context_percentage_until_summarization": ...}
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from proxy.errors import InvalidRequest

_SCOPES = ("namespace", "user_id")


@dataclass(frozen=True, slots=True)
class AppendBody:
    messages: list[object]
    namespace: str | None
    user_id: str | None


def parse_append(raw: bytes) -> AppendBody:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if type(body) is not dict or type(body.get("messages")) is not list:
        raise InvalidRequest('body must be an object with a "messages" list')
    scopes = [body.get(k) for k in _SCOPES]
    if any(v is not None and type(v) is not str for v in scopes):
        raise InvalidRequest("namespace and user_id must be strings or null")
    return AppendBody(body["messages"], scopes[0], scopes[1])


def render_append(session_id: str, namespace: str | None, user_id: str | None, count: int,
                  percentages: tuple[float | None, float | None]) -> bytes:
    return orjson.dumps({
        "session_id": session_id, "namespace": namespace, "user_id": user_id,
        "message_count": count, "context_percentage_total_used": percentages[0],
        "context_percentage_until_summarization": percentages[1],
    })
