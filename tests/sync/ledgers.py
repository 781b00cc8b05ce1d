"""Helpers for the ledger tests: a ledger on the emptied proxy Redis, and due marks made
as a write's pipeline makes them."""

from __future__ import annotations

from proxy.store import scripts
from proxy.store.connect import RedisClient, time_ms
from proxy.store.keys import SyncKeys
from proxy.sync.ledger import Ledger

PREFIX = "amp"


def ledger(redis: RedisClient, holder: str = "h1", *, limit: int = 4,
           lease_ms: int = 5_000, quiet_ms: float = 100, max_lag_ms: float = 1_000) -> Ledger:
    return Ledger(redis, PREFIX, holder, limit=limit, lease_ms=lease_ms, quiet_ms=quiet_ms,
                  max_lag_ms=max_lag_ms)


def member(session_id: str, namespace: str | None = None, user_id: str | None = None) -> bytes:
    from proxy.store.store import index_member
    return index_member(session_id, namespace, user_id)


def shard_of(m: bytes, prefix: str = PREFIX) -> int:
    return SyncKeys.shard_of_member(prefix, m)


def keys_of(m: bytes, prefix: str = PREFIX) -> SyncKeys:
    """The keys of a session's ledger shard."""
    return SyncKeys.build(prefix, shard_of(m, prefix))


async def mark(redis: RedisClient, m: bytes, quiet_ms: int = 100,
               max_lag_ms: int = 1_000) -> None:
    script = redis.register_script(scripts.MARK_DUE)
    await script(keys=list(keys_of(m).for_mark()), args=[m, quiet_ms, max_lag_ms])


async def due_at(redis: RedisClient, m: bytes) -> float | None:
    score = await redis.zscore(keys_of(m).due, m)
    return None if score is None else float(score)


async def total(redis: RedisClient, name: str, prefix: str = PREFIX) -> int:
    """Entries of one of the ledger's zsets (``due``, ``dirty``, ``claims``), all shards."""
    return sum([int(await redis.zcard(getattr(k, name))) for k in SyncKeys.shards(prefix)])


async def redis_ms(redis: RedisClient) -> int:
    return time_ms(await redis.time())
