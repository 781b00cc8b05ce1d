"""Helpers for the ledger tests: a ledger on the emptied proxy Redis, and due marks made
as a write's pipeline makes them."""

from __future__ import annotations

import redis.asyncio as aioredis

from proxy.store import scripts
from proxy.store.keys import SyncKeys
from proxy.sync.ledger import Ledger

PREFIX = "amp"


def ledger(redis: aioredis.Redis, holder: str = "h1", *, limit: int = 4,
           lease_ms: int = 5_000, quiet_ms: float = 100, max_lag_ms: float = 1_000) -> Ledger:
    return Ledger(redis, PREFIX, holder, limit=limit, lease_ms=lease_ms, quiet_ms=quiet_ms,
                  max_lag_ms=max_lag_ms)


def member(session_id: str, namespace: str | None = None, user_id: str | None = None) -> bytes:
    from proxy.store.store import index_member
    return index_member(session_id, namespace, user_id)


async def mark(redis: aioredis.Redis, m: bytes, quiet_ms: int = 100,
               max_lag_ms: int = 1_000) -> None:
    script = redis.register_script(scripts.MARK_DUE)
    await script(keys=list(SyncKeys.build(PREFIX).for_mark()), args=[m, quiet_ms, max_lag_ms])


async def due_at(redis: aioredis.Redis, m: bytes) -> float | None:
    score = await redis.zscore(SyncKeys.build(PREFIX).due, m)
    return None if score is None else float(score)


async def redis_ms(redis: aioredis.Redis) -> int:
    secs, micros = await redis.time()
    return int(secs) * 1000 + int(micros) // 1000
