"""Responses rendered as bytes, and documents taken in from the upstream (its PUT answers,
its stored sessions) re-encoded into the canonical form the proxy stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from cachetools import LRUCache

from proxy.codec import jsonsafe, timestamps
from proxy.codec.dialect import V0_14, Dialect
from proxy.codec.memories import to_full_shape
from proxy.codec.messages import EncodedMessage
from proxy.codec.putbody import PutBody
from proxy.codec.querystring import Query
from proxy.codec.tokens import count_tokens
from proxy.codec.window import (
    percentages,
)
from proxy.errors import Unsupported


def _render(
    session_id: str,
    fields: dict[str, Any],
    namespace: str | None,
    messages_json: bytes,
    times: tuple[str, str, str],
    pct: tuple[float | None, float | None],
) -> bytes:
    # Key order of WorkingMemoryResponse (contract §2.6).
    return orjson.dumps(
        {
            "messages": orjson.Fragment(messages_json),
            "memories": fields["memories"],
            "data": fields["data"],
            "context": fields["context"],
            "user_id": fields["user_id"],
            "tokens": fields["tokens"],
            "session_id": session_id,
            "namespace": namespace,
            "long_term_memory_strategy": fields["long_term_memory_strategy"],
            "ttl_seconds": fields["ttl_seconds"],
            "last_accessed": times[0],
            "created_at": times[1],
            "updated_at": times[2],
            "context_percentage_total_used": pct[0],
            "context_percentage_until_summarization": pct[1],
        }
    )


def render_put(
    session_id: str, body: PutBody, messages_json: bytes, tokens_total: int, query: Query,
    dialect: Dialect = V0_14,
) -> bytes:
    """The upstream's PUT 200 body; ``tokens_total`` is the message token sum (§6.3)."""
    f = orjson.loads(body.put_fields)
    times = (f["last_accessed"], f["created_at"], f["updated_at"])
    pct = percentages(tokens_total, bool(body.messages), query, dialect.threshold)
    return _render(session_id, f, f["namespace"], messages_json, times, pct)


def render_get(
    session_id: str,
    doc: bytes,
    namespace_query: str | None,
    messages_json: bytes,
    tokens_returned: int,
    query: Query,
    dialect: Dialect = V0_14,
) -> bytes:
    """The upstream's GET 200 body for the (already limited/truncated) ``messages_json``;
    ``query`` also holds the namespace and user_id the GET named."""
    envelope = _get_envelope(session_id, doc, namespace_query, query.user_id, dialect)
    pct = percentages(tokens_returned, len(messages_json) > 2, query, dialect.threshold)
    if pct == (None, None):
        return b"".join((_EMPTY[:-2], messages_json, memoryview(envelope)[len(_EMPTY):]))
    return b"".join((_EMPTY[:-2], messages_json,
                     memoryview(envelope)[len(_EMPTY):-len(_NO_PERCENTAGES)],
                     _PCT_TOTAL, orjson.dumps(pct[0]), _PCT_UNTIL, orjson.dumps(pct[1]), b"}"))


# A GET answer is its session fields (the same for every read of one stored document),
# its messages and two percentages. The fields are rendered once per document and reused
# until a write replaces it: bounded by bytes, keys holding the document itself.
ENVELOPES_MAX_BYTES = 4 * 1024 * 1024
_ENVELOPE_MAX_DOC = 64 * 1024  # larger documents are rendered afresh every time
_PCT_TOTAL = b',"context_percentage_total_used":'
_PCT_UNTIL = b',"context_percentage_until_summarization":'
_NO_PERCENTAGES = _PCT_TOTAL + b"null" + _PCT_UNTIL + b"null}"
_EnvelopeKey = tuple[str, bytes, str | None, str | None, Dialect]


def _weight(entry: tuple[bytes, int]) -> int:
    return entry[1]


_envelopes: LRUCache[_EnvelopeKey, tuple[bytes, int]] = LRUCache(ENVELOPES_MAX_BYTES,
                                                                 getsizeof=_weight)


def _get_envelope(session_id: str, doc: bytes, namespace_query: str | None,
                  user_id_query: str | None, dialect: Dialect) -> bytes:
    """The GET answer with no messages and no percentages (``_EMPTY`` ... ``null}``)."""
    key = (session_id, doc, namespace_query, user_id_query, dialect)
    found = _envelopes.get(key)
    if found is not None:
        return found[0]
    d = orjson.loads(doc)
    namespace, d["user_id"] = dialect.response_scope(d.get("namespace"), d["user_id"],
                                                     namespace_query, user_id_query)
    fmt = timestamps.format_epoch
    times = (fmt(d["last_accessed"]), fmt(d["created_at"]), fmt(d["updated_at"]))
    envelope = _render(session_id, d, namespace, b"[]", times, (None, None))
    if len(doc) <= _ENVELOPE_MAX_DOC:
        # Weighed with the key's bytes: the key holds the document and the ids.
        weight = len(envelope) + len(doc) + len(session_id) + 2 * 64 + 256
        # A copy the size of its contents: orjson's short results sit in 4 KB allocations.
        envelope = bytes(memoryview(envelope))
        _envelopes[key] = (envelope, weight)
    return envelope


_EMPTY = b'{"messages":[]'  # how a render made with no messages starts (key order §2.6)


def splice_messages(rendered: bytes, parts: Sequence[bytes | memoryview]) -> bytes:
    """``rendered`` (a render_put/render_get made with ``b"[]"`` for its messages) with
    the message array filled by ``parts`` joined: the (large) message bytes are copied
    once, into the answer, instead of once into an array and again into the answer."""
    if not rendered.startswith(_EMPTY):
        raise ValueError("not a render with an empty message array")
    return b"".join((_EMPTY[:-1], *parts, memoryview(rendered)[len(_EMPTY) - 1:]))


def join_messages(bodies: list[bytes]) -> bytes:
    """The JSON array of encoded message bodies, ready for render_get/render_put."""
    return b"[" + b",".join(bodies) + b"]"


_MESSAGE_KEYS = ("role", "content", "id", "created_at", "persisted_at", "discrete_memory_extracted")


def _reencode(raw: object) -> EncodedMessage:
    # A message the upstream rendered is canonical already; re-dumping it gives its bytes.
    if type(raw) is not dict or tuple(raw) != _MESSAGE_KEYS:
        raise Unsupported("upstream message not in the canonical shape")
    role, content = raw["role"], raw["content"]
    if type(role) is not str or type(content) is not str:
        raise Unsupported("upstream message role/content not strings")
    created = timestamps.parse(raw["created_at"])
    return EncodedMessage(
        body=orjson.dumps(raw),
        tokens=count_tokens(role, content),
        created_at_us=timestamps.epoch_us(created),
        aware=created.tzinfo is not None,
        had_created_at=True,
    )


Scope = tuple[str | None, str | None]  # namespace, user_id


def _from_response(resp: bytes, scope: Scope | None = None
                   ) -> tuple[PutBody, list[EncodedMessage]]:
    try:
        r = orjson.loads(resp)
    except orjson.JSONDecodeError as exc:
        raise Unsupported("upstream body is not JSON orjson reads") from exc
    if type(r) is not dict or type(r.get("messages")) is not list:
        raise Unsupported("upstream body is not a working memory")
    jsonsafe.check_value(r)  # big integers would not survive orjson and RedisJSON
    msgs: list[object] = r["messages"]
    encoded = [_reencode(m) for m in msgs]
    stamps = {k: timestamps.parse(r[k]) for k in ("last_accessed", "created_at", "updated_at")}
    if scope is not None:
        r["namespace"], r["user_id"] = scope
    fields = {
        k: r[k] for k in ("context", "user_id", "tokens", "namespace", "long_term_memory_strategy")
    }
    ttl = r["ttl_seconds"]
    doc = orjson.dumps(
        {
            "memories": [to_full_shape(m) for m in r["memories"]],
            "data": r["data"] or {},
            **fields,
            "ttl_seconds": ttl,
            **{k: timestamps.epoch_seconds(v) for k, v in stamps.items()},
        }
    )
    put_fields = orjson.dumps(
        {
            "memories": r["memories"],
            "data": r["data"],
            **fields,
            "ttl_seconds": ttl,
            **{k: r[k] for k in stamps},
        }
    )
    body = PutBody(msgs, doc, put_fields, r["namespace"], r["user_id"], ttl, r["tokens"])
    return body, encoded


def ingest_upstream_put_response(resp: bytes) -> tuple[PutBody, list[EncodedMessage]]:
    """What to store after the upstream answered a handed-off PUT with 200 ``resp``.

    Later renders from the result match the upstream's own: client-shaped memories turn
    full-shaped on GET, null ``data`` becomes ``{}``, session timestamps are floored.
    ``namespace``/``user_id`` are the body's, which the upstream echoes on PUT.
    """
    return _from_response(resp)


def import_upstream_document(resp: bytes, scope: Scope | None = None
                             ) -> tuple[PutBody, list[EncodedMessage]]:
    """What to store for a session read from the upstream's GET 200 ``resp``.

    The GET must have been made without model_name, context_window_max or
    recent_messages_limit, so that it lists every stored message in stored order.
    Its ``namespace`` is the query parameter the GET was made with (0.14.0) or
    ``stored or query`` (0.15.2); ``scope`` replaces namespace and user_id when given.
    """
    return _from_response(resp, scope)
