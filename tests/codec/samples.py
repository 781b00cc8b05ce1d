"""Shared inputs of the codec tests: a fixed clock and a PUT rendered both ways."""

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy import codec

NOW = datetime(2026, 11, 23, 19, 52, 3, 347265, tzinfo=UTC)
JSON = "application/json"
ULID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def put(body: Any, query: dict[str, str] | None = None, sid: str = "s") -> tuple[bytes, bytes]:
    """(PUT response, GET response with the body's scope and the same query)."""
    pb = codec.parse_put(orjson.dumps(body), JSON, NOW)
    enc = codec.encode_messages(pb.messages, NOW)
    msgs = codec.join_messages([e.body for e in enc])
    total = sum(e.tokens for e in enc)
    out = codec.render_put(sid, pb, msgs, total, codec.parse_query(query or {}, "put"))
    gq = codec.parse_query(query or {}, "get")
    got = codec.render_get(sid, pb.doc, gq.namespace, msgs, total, gq)
    return out, got
