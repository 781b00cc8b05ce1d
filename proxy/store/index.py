"""The session index, for listing: which sessions exist, by last write and by expiry.

Each shard is two sorted sets of index members (JSON ``[namespace, user_id, session_id]``):
``index`` scored by the last write, ``expiry`` by expiry time for sessions with a TTL.

* One server: one shard, ``<prefix>:index`` and ``<prefix>:expiry``.
* A cluster: ``SHARDS`` shards, ``<prefix>:index:{<tag>}`` and ``<prefix>:expiry:{<tag>}``
  (named apart from the sessions' own ``<prefix>:{<tag>}:...`` keys). A session is
  indexed in the shard of its slot range (slot // 256), and each shard's tag is a slot in
  that range, so with masters serving contiguous slot ranges (as every cluster is laid out
  unless resharded by hand) a session's index entry sits on the master that holds the
  session: a write's index upkeep adds no second node to its pipeline, a failover stops
  the writes of that master's sessions only, and the index load spreads over the masters
  as the sessions do. One shared zset instead would take a ZADD from every write in the
  cluster on one master, and stall every write while that master fails over.

Listing reads every shard (one pipeline per master on a cluster, 64 small ZRANGEs) and
merges them by score, in the order one sorted set would give.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from proxy.store.connect import RedisClient
from proxy.store.keys import SessionKeys
from proxy.store.slots import range_of, range_tag

SHARDS = 64


@dataclass(frozen=True, slots=True)
class Shard:
    index: str  # zset: member -> last write (seconds)
    expiry: str  # zset: member -> expiry time, for sessions with a TTL


class SessionIndex:
    def __init__(self, redis: RedisClient, prefix: str, sharded: bool) -> None:
        self.redis = redis
        if sharded:
            self.shards = tuple(Shard(f"{prefix}:index:{{{t}}}", f"{prefix}:expiry:{{{t}}}")
                                for t in (range_tag(i, SHARDS) for i in range(SHARDS)))
        else:
            self.shards = (Shard(f"{prefix}:index", f"{prefix}:expiry"),)

    def shard(self, keys: SessionKeys) -> Shard:
        if len(self.shards) == 1:
            return self.shards[0]
        return self.shards[range_of(keys.meta, SHARDS)]

    def queue_removal(self, pipe: Pipeline | ClusterPipeline, keys: SessionKeys,
                      member: bytes) -> None:
        shard = self.shard(keys)
        pipe.zrem(shard.index, member)
        pipe.zrem(shard.expiry, member)

    async def remove(self, keys: SessionKeys, member: bytes) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            self.queue_removal(pipe, keys, member)
            await pipe.execute()

    async def members(self) -> list[bytes]:
        """Every member, ordered as one sorted set orders them (score, then bytes)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in self.shards:
                pipe.zrange(shard.index, 0, -1, withscores=True)
            replies = cast(list[list[tuple[bytes, float]]], await pipe.execute())
        if len(replies) == 1:
            return [m for m, _ in replies[0]]
        merged = heapq.merge(*replies, key=lambda pair: (pair[1], pair[0]))
        return [m for m, _ in merged]

    async def expired(self, now: float) -> list[tuple[Shard, bytes]]:
        """Members whose expiry time has passed (their sessions may be gone)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in self.shards:
                pipe.zrangebyscore(shard.expiry, "-inf", now)
            replies = cast(list[list[bytes]], await pipe.execute())
        return [(s, m) for s, due in zip(self.shards, replies, strict=True) for m in due]

    async def drop(self, shard: Shard, member: bytes) -> Any:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(shard.index, member)
            pipe.zrem(shard.expiry, member)
            return await pipe.execute()
