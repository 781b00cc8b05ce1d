"""The PUT body (``UpdateWorkingMemory``) minus its messages, checked and pre-rendered (§2.5).

Stored session document (``PutBody.doc``, orjson bytes of one object)::

    {"memories": [full shape], "data": {...}, "context", "user_id", "tokens", "namespace",
     "long_term_memory_strategy", "ttl_seconds",
     "last_accessed", "created_at", "updated_at": epoch seconds as the upstream stores them}

``PutBody.put_fields`` holds the same keys in the PUT response's form: memories as
validated, ``data`` null when null, session timestamps as ISO strings at full precision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from proxy.codec import jsonsafe, memories, timestamps
from proxy.codec.jsonsafe import I64_MAX, I64_MIN, MISSING, STORED_DEPTH, optional_str
from proxy.errors import Unsupported

_JSON_TYPE = re.compile(r"application/(?:json|[a-z0-9!#$&^_.-]+\+json)")
_STRATEGIES = frozenset(("discrete", "summary", "preferences", "custom"))
_MAX_TTL = 10**9  # beyond this Redis' EXPIRE may refuse the value (a 500 upstream)


@dataclass(frozen=True, slots=True)
class PutBody:
    messages: list[object]  # raw, not yet encoded
    doc: bytes  # session fields as stored (see the module docstring), for render_get
    put_fields: bytes  # the PUT response's session fields, for render_put
    namespace: str | None
    user_id: str | None
    ttl_seconds: int | None
    tokens: int




def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if type(value) is not int or not I64_MIN <= value <= I64_MAX:
        # An explicit null included: the upstream's 422 ("Input should be a valid integer").
        raise Unsupported(f"{key} is not a plain 64-bit integer")
    return value


def _optional_int_field(body: dict[str, Any], key: str) -> int | None:
    return None if body.get(key) is None else _int_field(body, key, 0)


def _strategy(value: object) -> dict[str, Any]:
    if value is MISSING:
        return {"strategy": "discrete", "config": {}}
    if type(value) is not dict:
        raise Unsupported("long_term_memory_strategy is not an object")
    strategy, config = value.get("strategy", "discrete"), value.get("config", {})
    if strategy not in _STRATEGIES or type(config) is not dict:
        raise Unsupported("long_term_memory_strategy not plain")
    jsonsafe.check_value(config, STORED_DEPTH - 2)  # document -> strategy -> config
    return {"strategy": strategy, "config": config}


def _data(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise Unsupported("data is not an object")
    if any(v is None for v in value.values()):
        raise Unsupported("top-level null in data")  # a 422 in 0.14.0
    jsonsafe.check_value(value, STORED_DEPTH - 1)  # document -> data
    return value


def _session_time(body: dict[str, Any], key: str, now: datetime) -> datetime:
    return timestamps.parse(body[key]) if key in body else now


def _check_content_type(content_type: str | None) -> None:
    # FastAPI parses JSON only for application/json and application/*+json.
    if content_type is None:
        raise Unsupported("no content-type")
    mime = content_type.split(";", 1)[0].strip().lower()
    if _JSON_TYPE.fullmatch(mime) is None:
        raise Unsupported("content-type is not JSON")


def parse_put(body: bytes, content_type: str | None, now: datetime) -> PutBody:
    """Check a whole PUT body except the messages themselves; raise Unsupported when unsure."""
    _check_content_type(content_type)
    if not body:
        raise Unsupported("empty body")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unsupported("body is not JSON orjson reads") from exc
    if type(parsed) is not dict:
        raise Unsupported("body is not an object")
    messages = parsed.get("messages", [])
    raw_memories = parsed.get("memories", [])
    if type(messages) is not list or type(raw_memories) is not list:
        raise Unsupported("messages/memories not a list")
    mems = [memories.validate_memory(m, now) for m in raw_memories]
    data = _data(parsed.get("data"))
    context = optional_str(parsed.get("context"), "context")
    user_id, namespace = optional_str(parsed.get("user_id"), "user_id"), optional_str(
        parsed.get("namespace"), "namespace")
    tokens = _int_field(parsed, "tokens", 0)
    ttl = _optional_int_field(parsed, "ttl_seconds")
    if ttl is not None and not 0 < ttl <= _MAX_TTL:
        raise Unsupported("ttl_seconds <= 0 deletes the key at once; leave it to the upstream")
    strategy = _strategy(parsed.get("long_term_memory_strategy", MISSING))
    last_accessed = _session_time(parsed, "last_accessed", now)
    created_at = _session_time(parsed, "created_at", now)
    if "updated_at" in parsed:
        timestamps.parse(parsed["updated_at"])  # validated, then overwritten by the write time
    common = {"context": context, "user_id": user_id, "tokens": tokens, "namespace": namespace}
    doc = orjson.dumps(
        {
            "memories": mems,
            "data": data or {},
            **common,
            "long_term_memory_strategy": strategy,
            "ttl_seconds": ttl,
            "last_accessed": timestamps.epoch_seconds(last_accessed),
            "created_at": timestamps.epoch_seconds(created_at),
            "updated_at": timestamps.epoch_seconds(now),
        }
    )
    put_fields = orjson.dumps(
        {
            "memories": mems,
            "data": data,
            **common,
            "long_term_memory_strategy": strategy,
            "ttl_seconds": ttl,
            "last_accessed": timestamps.format_iso(last_accessed),
            "created_at": timestamps.format_iso(created_at),
            "updated_at": timestamps.format_iso(now),
        }
    )
    return PutBody(messages, doc, put_fields, namespace, user_id, ttl, tokens)
