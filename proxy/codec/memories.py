"""Items of ``memories``: the server ``MemoryRecord`` shape and the client shape (contract §2.3).

The fast path accepts only items that are unambiguously a valid server ``MemoryRecord``
(an ``id`` given, every field of the plain JSON type). Those render the same on PUT and
GET. Everything else (no ``id`` -> client shape, lax coercions, invalid values) is
``Unsupported``; the upstream answers and :func:`to_full_shape` turns what it stored into
what its GET shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from proxy.codec import jsonsafe, timestamps
from proxy.codec.jsonsafe import I64_MAX, optional_str
from proxy.errors import Unsupported

FULL_KEYS = (
    "id",
    "text",
    "session_id",
    "user_id",
    "namespace",
    "last_accessed",
    "created_at",
    "updated_at",
    "pinned",
    "access_count",
    "topics",
    "entities",
    "memory_hash",
    "discrete_memory_extracted",
    "memory_type",
    "persisted_at",
    "extracted_from",
    "event_date",
    "extraction_strategy",
    "extraction_strategy_config",
)
_NOW_DATETIMES = ("last_accessed", "created_at", "updated_at")
_MEMORY_TYPES = frozenset(("episodic", "semantic", "message"))
_FLAGS = frozenset(("t", "f"))




def _str_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if type(value) is not list or any(type(v) is not str for v in value):
        raise Unsupported("memory list field is not a list of strings")
    return value


def validate_memory(raw: object, now: datetime) -> dict[str, Any]:
    """A raw memory item as the upstream renders it (server shape), or Unsupported."""
    if type(raw) is not dict:
        raise Unsupported("memory is not an object")
    get = raw.get
    mem_id, text = get("id"), get("text")
    if type(mem_id) is not str or type(text) is not str or not mem_id or not text:
        raise Unsupported("memory id/text missing, empty or not a string")
    out: dict[str, Any] = {"id": mem_id, "text": text}
    for key in ("session_id", "user_id", "namespace"):
        out[key] = optional_str(get(key), key)
    now_iso = timestamps.format_iso(now)
    for key in _NOW_DATETIMES:
        out[key] = timestamps.reformat(raw[key]) if key in raw else now_iso
    pinned = get("pinned", False)
    count = get("access_count", 0)
    if type(pinned) is not bool or type(count) is not int or not 0 <= count <= I64_MAX:
        raise Unsupported("memory pinned/access_count not plain")
    out["pinned"], out["access_count"] = pinned, count
    out["topics"] = _str_list(get("topics"))
    out["entities"] = _str_list(get("entities"))
    out["memory_hash"] = optional_str(get("memory_hash"), "memory_hash")
    flag, kind = get("discrete_memory_extracted", "f"), get("memory_type", "message")
    if flag not in _FLAGS or kind not in _MEMORY_TYPES:
        raise Unsupported("memory literal field out of range")
    out["discrete_memory_extracted"], out["memory_type"] = flag, kind
    out["persisted_at"] = _optional_iso(get("persisted_at"))
    out["extracted_from"] = _str_list(get("extracted_from"))
    out["event_date"] = _optional_iso(get("event_date"))
    strategy, config = get("extraction_strategy", "discrete"), get("extraction_strategy_config", {})
    if type(strategy) is not str or type(config) is not dict:
        raise Unsupported("memory extraction strategy not plain")
    # document -> memories -> memory -> config
    jsonsafe.check_value(config, jsonsafe.STORED_DEPTH - 3)
    out["extraction_strategy"], out["extraction_strategy_config"] = strategy, config
    return out




def _optional_iso(value: object) -> str | None:
    return None if value is None else timestamps.reformat(value)


_SERVER_ONLY = frozenset(
    ("pinned", "access_count", "extraction_strategy", "extraction_strategy_config")
)


def _server_default(key: str) -> object:
    if key == "extraction_strategy_config":
        return {}
    return {"pinned": False, "access_count": 0, "extraction_strategy": "discrete"}[key]


def to_full_shape(stored: object) -> dict[str, Any]:
    """A memory as the upstream's PUT rendered it (either shape) -> as its GET renders it.

    GET rebuilds every stored memory as a server ``MemoryRecord``; the client shape lacks
    pinned, access_count and the extraction strategy fields, which take their defaults.
    """
    if type(stored) is not dict:
        raise Unsupported("stored memory is not an object")
    out: dict[str, Any] = {}
    for key in FULL_KEYS:
        if key in stored:
            out[key] = stored[key]
        elif key in _SERVER_ONLY:
            out[key] = _server_default(key)
        else:
            raise Unsupported(f"stored memory lacks {key}")
    return out
