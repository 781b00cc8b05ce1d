"""Sessions for the sync tests, in the forms the sync meets them: the proxy's stored copy
(meta doc + canonical message bytes) and the upstream's document."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from proxy import codec
from proxy.codec.memories import validate_memory
from proxy.sync.copies import Copy
from tests.engine_fixtures import Message, msg, msgs

NOW = datetime(2025, 6, 1, tzinfo=UTC)
PERSISTED = "2025-06-01T00:00:05Z"

__all__ = ["Message", "msg", "msgs", "memory", "stored", "copy_of", "stamped", "NOW",
           "PERSISTED", "eventually"]
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 10.0,
                     every: float = 0.02) -> T:
    """The first non-None result of ``probe``; fails after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if (found := await probe()) is not None:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout:.1f} s")
        await asyncio.sleep(every)


def memory(mid: str, text: str | None = None, persisted: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """A memory in the full shape the proxy stores (codec.memories)."""
    raw = {"id": mid, "text": text or f"fact {mid}", "memory_type": "semantic",
           "created_at": "2025-01-01T00:00:00Z", "last_accessed": "2025-01-01T00:00:00Z",
           "updated_at": "2025-01-01T00:00:00Z", "persisted_at": persisted, **extra}
    return validate_memory(raw, NOW)


def stored(messages: list[Message], memories: list[dict[str, Any]] | None = None,
           **fields: Any) -> tuple[bytes, list[bytes]]:
    """(doc, message bytes) as the proxy stores a PUT of these."""
    body = codec.parse_put(orjson.dumps({"messages": messages, "memories": memories or [],
                                         **fields}), "application/json", NOW)
    return body.doc, [m.body for m in codec.encode_messages(list[object](messages), NOW)]


def copy_of(messages: list[Message], memories: list[dict[str, Any]] | None = None,
            **fields: Any) -> Copy:
    return Copy.from_stored(*stored(messages, memories, **fields))


def stamped(m: Message, persisted: str | None = None) -> Message:
    """``m`` as the upstream's extraction leaves it."""
    return {**m, "discrete_memory_extracted": "t",
            **({"persisted_at": persisted} if persisted else {})}
