"""``POST /v1/working-memory/{session_id}/messages``: append without resending the transcript.

Beyond the upstream's API, for clients that can use it. The body carries only the new
messages (``{"messages": [...], "namespace"?: str, "user_id"?: str}``); the query takes
the PUT's parameters (``model_name``, ``context_window_max``). Session-level fields stay
as stored, ``updated_at`` moves to now, and the answer is small::

    {"session_id": "...", "namespace": null, "user_id": null, "message_count": 4002,
     "context_percentage_total_used": ..., "context_percentage_until_summarization": ...}

Cost: O(new messages) in Python and in Redis. When the appended session would make the
upstream summarize, the whole session is handed to the upstream as a PUT (the rare,
heavy case) and its outcome returned.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from proxy import codec, timestamps
from proxy.engine import Answer, Engine
from proxy.keys import SessionKeys, logical_key
from proxy.planner import build_plan

_SCOPES = ("namespace", "user_id")


def _error(status: int, detail: str) -> Answer:
    return Answer(status, orjson.dumps({"detail": detail}))


def _parse(raw: bytes) -> tuple[list[object], str | None, str | None]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None
    if type(body) is not dict or type(body.get("messages")) is not list:
        raise ValueError('body must be an object with a "messages" list')
    scopes = [body.get(k) for k in _SCOPES]
    if any(v is not None and type(v) is not str for v in scopes):
        raise ValueError("namespace and user_id must be strings or null")
    return body["messages"], scopes[0], scopes[1]


async def append_messages(engine: Engine, session_id: str, raw: bytes,
                          query: Mapping[str, str]) -> Answer:
    try:
        messages, namespace, user_id = _parse(raw)
        q = codec.parse_query(query, "put")
    except (ValueError, codec.Unsupported) as exc:
        return _error(422, str(exc))
    namespace = namespace or query.get("namespace") or None
    user_id = user_id or query.get("user_id") or None
    now = engine.now()
    try:
        encoded = codec.encode_messages(messages, now)
    except codec.Unsupported as exc:
        return _error(422 if "empty" not in str(exc) else 400, f"invalid message: {exc}")
    keys = engine.store.keys(logical_key(session_id, namespace, user_id))
    async with engine.session_lock(keys.logical):
        tail = await engine.tail_for_write(keys)
        meta = tail.meta if tail else None
        total = (meta.tokens_total if meta else 0) + sum(m.tokens for m in encoded)
        if total > codec.summarization_threshold(q):
            heavy = True
        else:
            heavy = False
            body = _session_body(meta.doc if meta else None, namespace, user_id, now)
            plan = build_plan(keys, session_id, body, meta, meta, encoded, now)
            await engine.commit(plan, tail)
            count = plan.write.meta.count
    if heavy:
        return await _hand_over(engine, session_id, keys, meta is not None, messages,
                                namespace, user_id, query)
    pct = codec.percentages(total, count > 0, q)
    return Answer(200, orjson.dumps({
        "session_id": session_id, "namespace": namespace, "user_id": user_id,
        "message_count": count, "context_percentage_total_used": pct[0],
        "context_percentage_until_summarization": pct[1],
    }))


def _session_body(doc: bytes | None, namespace: str | None, user_id: str | None,
                  now: object) -> codec.PutBody:
    """The stored session fields with updated_at moved to now (defaults when new)."""
    if doc is None:
        seed = orjson.dumps({"namespace": namespace, "user_id": user_id})
        return codec.parse_put(seed, "application/json", now)  # type: ignore[arg-type]
    fields = orjson.loads(doc)
    fields["updated_at"] = timestamps.epoch_seconds(now)  # type: ignore[arg-type]
    return codec.PutBody([], orjson.dumps(fields), b"", namespace, user_id,
                         fields.get("ttl_seconds"), fields.get("tokens", 0))


async def _hand_over(engine: Engine, session_id: str, keys: SessionKeys, exists: bool,
                     messages: list[object], namespace: str | None, user_id: str | None,
                     query: Mapping[str, str]) -> Answer:
    """Send the whole session as a PUT, which hands it to the upstream to summarize."""
    put: dict[str, object] = {"namespace": namespace, "user_id": user_id}
    stored: list[object] = []
    if exists:
        meta = await engine.store.meta(keys)
        if meta is not None:
            rows = await engine.store.messages(keys, 0, meta.count)
            stored = [orjson.loads(r) for r in rows]
            fields = orjson.loads(meta.doc)
            put.update({k: fields[k] for k in ("memories", "data", "context", "tokens",
                                               "long_term_memory_strategy", "ttl_seconds")})
            put["created_at"] = timestamps.format_epoch(fields["created_at"])
            put["last_accessed"] = timestamps.format_epoch(fields["last_accessed"])
    put["messages"] = stored + messages
    qs = "&".join(f"{k}={v}" for k, v in query.items() if k in ("model_name",
                                                              "context_window_max"))
    answer = await engine.put(session_id, orjson.dumps(put), "application/json", query, qs)
    if answer.status != 200:
        return answer
    result = orjson.loads(answer.body)
    return Answer(200, orjson.dumps({
        "session_id": session_id, "namespace": namespace, "user_id": user_id,
        "message_count": len(result["messages"]),
        "context_percentage_total_used": result["context_percentage_total_used"],
        "context_percentage_until_summarization":
            result["context_percentage_until_summarization"],
    }))

