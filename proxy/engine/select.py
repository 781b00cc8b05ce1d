"""Choose the messages a GET returns: recent_messages_limit, then truncation (§3.2, §6.2).

Both work on the session's tail only: the last k messages, and their stored token
counts. The one exception is a session whose messages are not in created_at order,
where the upstream sorts before taking the last k: then all messages are read and
sorted (rare, and counted in the meta so it is known without reading).
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import orjson

from proxy import codec
from proxy.codec import timestamps
from proxy.engine.cache import SessionTail
from proxy.store.store import Store


@dataclass(slots=True)
class Selection:
    joined: bytes  # the chosen messages' JSON, comma-joined
    tokens: int  # their token total


async def _run(store: Store, entry: SessionTail, first: int) -> tuple[list[bytes] | None,
                                                                        bytes, array.array[int]]:
    """Messages ``first`` .. end, as cached bytes or as a list read from Redis."""
    if entry.covers(first):
        return None, entry.joined(first), entry.tokens_from(first)
    if entry.pending:
        return await _pending_run(store, entry, first)
    keys = entry.keys
    snap = await store.snapshot(keys, entry.count - first)
    if snap is None:
        return [], b"", array.array("I")
    return snap.messages, b"", snap.tokens


async def select(store: Store, entry: SessionTail, limit: int | None,
                 truncate_to: int | None) -> Selection | None:
    """The messages to return, or None where the upstream's own read fails (404)."""
    count = entry.count
    meta = entry.meta
    if count == 0:
        return Selection(b"", 0)
    if limit is not None and meta.tz == "m":
        return None  # the upstream cannot sort naive and aware datetimes together
    if limit is not None and not meta.sorted:
        return await _select_sorted(store, entry, limit, truncate_to)
    first = max(0, count - limit) if limit is not None else 0
    listed, joined, tokens = await _run(store, entry, first)
    drop = 0
    total = meta.tokens_total if first == 0 and listed is None else sum(tokens)
    if truncate_to is not None and total > truncate_to:
        drop = codec.truncate_count(tokens.tolist(), truncate_to)
        total -= sum(tokens[:drop])
    if listed is not None:
        return Selection(b",".join(listed[drop:]), total)
    if drop:
        joined = entry.joined(first + drop)
    return Selection(joined, total)


async def _pending_run(store: Store, entry: SessionTail,
                       first: int) -> tuple[list[bytes], bytes, array.array[int]]:
    """Messages ``first`` .. end of a session with acknowledged writes not yet in Redis:
    Redis holds the messages before the cached run (writes still pending only append to
    them; a pending rewrite keeps its whole run cached), the cache holds the rest."""
    head = await store.messages(entry.keys, first, entry.start)
    tokens = await store.tokens(entry.keys, first, entry.start)
    return head + entry.messages_from(entry.start), b"", tokens + entry.tokens_from(entry.start)


async def _everything(store: Store, entry: SessionTail) -> tuple[list[bytes], list[int]]:
    if entry.covers(0):
        return entry.messages_from(0), entry.tokens_from(0).tolist()
    if entry.pending:
        messages, _, tokens = await _pending_run(store, entry, 0)
        return messages, tokens.tolist()
    snap = await store.snapshot(entry.keys, None)
    return (snap.messages, snap.tokens.tolist()) if snap else ([], [])


async def _select_sorted(store: Store, entry: SessionTail, limit: int,
                         truncate_to: int | None) -> Selection:
    messages, tokens = await _everything(store, entry)
    order = sorted(range(len(messages)), key=lambda i: _created_us(messages[i]))
    chosen = order[-limit:]
    picked = [messages[i] for i in chosen]
    counts = [tokens[i] for i in chosen]
    drop = 0
    if truncate_to is not None and sum(counts) > truncate_to:
        drop = codec.truncate_count(counts, truncate_to)
    return Selection(b",".join(picked[drop:]), sum(counts[drop:]))


def _created_us(message: bytes) -> int:
    return timestamps.epoch_us(timestamps.parse(orjson.loads(message)["created_at"]))
