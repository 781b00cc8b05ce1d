"""What the proxy last handed to the upstream for each session, and recent deletes.

Both live in the session's own hash slot (keys.SessionKeys ``synced`` and ``gone``):

    <prefix>:{t}:sync   hash    c  content digests of the recent hand-overs, newest first
                                   (16 bytes each, at most HISTORY)
                                i  per message and memory of the last one: id key (8 bytes)
                                   + content digest (8 bytes), sorted by id key
                                f  per session field of the last one: JSON {name: hex digest}
    <prefix>:{t}:gone   string  when the session was last deleted through the proxy (ms,
                                Redis clock); expires once no hand-over round that
                                started before it can still land (``tombstone_ms``)

A record is kept as long as the session (it takes the session's TTL when handed over).
Its size is 16 bytes per message and memory: the hand-over itself sends the whole session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import orjson

from proxy.store.connect import RedisClient, time_ms
from proxy.store.keys import SessionKeys
from proxy.sync.copies import (
    FIELDS,
    Copy,
    digest,
    field_value,
    id_key,
)

HISTORY = 8  # hand-overs remembered: the upstream may write back an older one (below)


@dataclass(slots=True)
class Record:
    contents: list[bytes] = field(default_factory=list)  # newest first
    items: dict[bytes, bytes] = field(default_factory=dict)  # id key -> content digest
    fields: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def after(cls, copy: Copy, previous: Record | None) -> Record:
        """The record once ``copy`` is handed over (or known to be the upstream's)."""
        messages, memories = copy.digests()
        items = {id_key("m", m["id"]): d for m, d in zip(copy.messages, messages, strict=True)}
        items.update({id_key("M", m["id"]): d
                      for m, d in zip(copy.memories, memories, strict=True)})
        contents = [copy.content()] + [c for c in (previous.contents if previous else [])
                                       if c != copy.content()]
        return cls(contents[:HISTORY], items,
                   {k: digest(field_value(copy.fields, k)) for k in FIELDS})

    def knows(self, content: bytes) -> bool:
        """``content`` is one the proxy handed over recently. The upstream's extraction
        writes back the session it read before the LLM call, so its copy can be an older
        hand-over's content with new stamps: that is ours, not a foreign write."""
        return content in self.contents

    def encode(self) -> dict[str, bytes]:
        return {
            "c": b"".join(self.contents),
            "i": b"".join(k + v for k, v in sorted(self.items.items())),
            "f": orjson.dumps({k: v.hex() for k, v in self.fields.items()}),
        }

    @classmethod
    def decode(cls, raw: dict[bytes, bytes]) -> Record | None:
        if not raw or b"c" not in raw:
            return None
        c, i = raw[b"c"], raw.get(b"i", b"")
        return cls([c[n:n + 16] for n in range(0, len(c), 16)],
                   {i[n:n + 8]: i[n + 8:n + 16] for n in range(0, len(i), 16)},
                   {k: bytes.fromhex(v) for k, v in orjson.loads(raw.get(b"f", b"{}")).items()})


class Records:
    def __init__(self, redis: RedisClient, tombstone_ms: int) -> None:
        self.redis = redis
        self.tombstone_ms = tombstone_ms

    async def load(self, keys: SessionKeys) -> Record | None:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(keys.synced))
        return Record.decode(raw)

    async def save(self, keys: SessionKeys, record: Record) -> None:
        """Store ``record``, expiring with the session if the session has a TTL."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.synced)
            pipe.hset(keys.synced, mapping=record.encode())  # type: ignore[arg-type]
            pipe.pttl(keys.meta)
            ttl = (await pipe.execute())[2]
        if ttl and int(ttl) > 0:
            await self.redis.pexpire(keys.synced, int(ttl))

    async def forget(self, keys: SessionKeys) -> None:
        await self.redis.delete(keys.synced)

    async def mark_deleted(self, keys: SessionKeys) -> None:
        """A DELETE through the proxy is under way: block imports of the upstream's copy,
        and let a hand-over landing after it know it must be undone."""
        now_ms = time_ms(await self.redis.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.gone, now_ms, px=self.tombstone_ms)
            pipe.delete(keys.synced)
            await pipe.execute()

    async def deleted_since(self, keys: SessionKeys, since_ms: int | None) -> bool:
        """Deleted through the proxy at or after ``since_ms`` (None: recently at all)."""
        raw = await self.redis.get(keys.gone)
        return raw is not None and (since_ms is None or int(raw) >= since_ms)
