"""Messages encoded once, on arrival, into the bytes every later response reuses (§2.2).

A message is validated, given its generated id/created_at, token-counted and rendered as
the upstream renders it; afterwards only its bytes and a few numbers travel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from ulid import ULID

from proxy.codec import timestamps
from proxy.codec.jsonsafe import MISSING
from proxy.codec.tokens import count_tokens
from proxy.errors import Unsupported

_FLAGS = frozenset(("t", "f"))


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    body: bytes  # canonical JSON as the upstream renders this message (PUT and GET alike)
    tokens: int  # count_tokens(role, content)
    created_at_us: int  # sort key: µs since epoch, naive read as UTC
    aware: bool  # created_at had an offset; mixing kinds makes the upstream's sort fail
    had_created_at: bool  # else generated now, and the PUT carries the deprecation header


def encode_message(raw: object, now: datetime) -> EncodedMessage:
    """Validate and canonicalize one message dict, or raise Unsupported."""
    if type(raw) is not dict:
        raise Unsupported("message is not an object")
    role, content = raw.get("role"), raw.get("content")
    if type(role) is not str or type(content) is not str:
        raise Unsupported("message role/content missing or not a string")
    if not content.strip():
        raise Unsupported("empty message content")  # the upstream's 400 names the id
    msg_id = raw.get("id", MISSING)
    if msg_id is MISSING:
        msg_id = str(ULID())
    elif type(msg_id) is not str:
        raise Unsupported("message id not a string")
    raw_created = raw.get("created_at", MISSING)
    had_created_at = raw_created is not MISSING
    if had_created_at:
        created = timestamps.parse(raw_created)
        timestamps.check_not_future(created, now)
    else:
        created = now
    persisted = raw.get("persisted_at")
    flag = raw.get("discrete_memory_extracted", "f")
    if flag not in _FLAGS:
        raise Unsupported("discrete_memory_extracted not t/f")
    body = orjson.dumps(
        {
            "role": role,
            "content": content,
            "id": msg_id,
            "created_at": timestamps.format_iso(created),
            "persisted_at": None if persisted is None else timestamps.reformat(persisted),
            "discrete_memory_extracted": flag,
        }
    )
    return EncodedMessage(
        body=body,
        tokens=count_tokens(role, content),
        created_at_us=timestamps.epoch_us(created),
        aware=created.tzinfo is not None,
        had_created_at=had_created_at,
    )


def encode_messages(raw: list[object], now: datetime) -> list[EncodedMessage]:
    """Encode every message in body order (raises Unsupported on the first odd one)."""
    return [encode_message(m, now) for m in raw]


