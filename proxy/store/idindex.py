"""The id index: the session agent-memory-server 0.15.2 finds by id, found without a scan.

When the exact key of a GET or DELETE is missing, 0.15.2 asks its search index for the
documents whose ``session_id`` TAG matches the id (AND the ``namespace`` / ``user_id`` TAGs,
for those the request names) and uses the match if there is exactly one. A TAG field
splits the stored value at commas, trims each part and compares it lower-cased in ASCII
only (RediSearch 2.10); the queried value is lower-cased the same way, but neither split
nor trimmed, so a value with a comma or edge whitespace matches nothing.

The proxy keeps that answer ready. Each session's index member (``[namespace, user_id,
session_id]`` JSON, as in ``<prefix>:index``) is in one Redis set per combination of its
tags: (id), (id, namespace), (id, user_id), (id, namespace, user_id); keys.py names them.

* Lookup: ``SRANDMEMBER <the request's combination> 2``, one command on one key (one
  Cluster slot), whatever the number of sessions: no member, exactly one, or two (then
  both are checked, one HGET each, so that a leftover never makes an answer ambiguous).
* Upkeep rides on the write pipeline (store.py): SADD to each combination when a write
  creates a session or changes its scope, SREM when it is deleted, expires or changes
  scope. An entry left behind (a write refused after its pipeline added it, an expiry not
  yet seen) is removed when a read finds that its session's ``ix`` is another member.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import RedisError

from proxy.errors import StoreUnavailable
from proxy.store.keys import SessionKeys, id_index_built_key, id_index_key, logical_key

log = logging.getLogger("proxy.store.idindex")

WHITESPACE = " \t\n\v\f\r"  # C isspace(): what the TAG tokenizer trims
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
Combo = tuple[str, str | None, str | None]
CHECK_ROUNDS = 8  # leftovers removed per lookup at most, two per round
BACKFILL_BATCH = 500


def ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def tags(value: str | None) -> list[str]:
    """The TAG values a stored field is indexed under."""
    if not value:
        return []
    parts = (ascii_lower(p.strip(WHITESPACE)) for p in value.split(","))
    return sorted({p for p in parts if p})


def query_tag(value: str) -> str | None:
    """The TAG value a queried ``value`` matches; None when it can match no stored one."""
    if "," in value or value != value.strip(WHITESPACE):
        return None
    return ascii_lower(value)


def tag_matches(stored: str | None, wanted: str | None) -> bool:
    """A TAG filter on one field: no filter, or ``wanted`` among the stored value's tags."""
    if not wanted:
        return True
    tag = query_tag(wanted)
    return tag is not None and tag in tags(stored)


def combos(member: bytes) -> list[Combo]:
    """Every combination a session with this index member is found under."""
    namespace, user_id, session_id = orjson.loads(member)
    return [(s, n, u) for s in tags(session_id) for n in (None, *tags(namespace))
            for u in (None, *tags(user_id))]


def query_combo(session_id: str, namespace: str | None, user_id: str | None) -> Combo | None:
    """The combination a lookup asks for (an empty namespace or user_id is no filter);
    None when nothing can match."""
    wanted = [query_tag(session_id)]
    wanted += [query_tag(v) if v else "" for v in (namespace, user_id)]
    if any(w is None for w in wanted):
        return None
    return cast(str, wanted[0]), wanted[1] or None, wanted[2] or None


@dataclass(frozen=True, slots=True)
class Found:
    """What a lookup found: one session (``member``), none, or several (``ambiguous``)."""

    member: bytes | None = None
    ambiguous: bool = False

    @property
    def scope(self) -> tuple[str | None, str | None, str]:
        """(namespace, user_id, session_id) of the session found."""
        assert self.member is not None
        namespace, user_id, session_id = orjson.loads(self.member)
        return namespace, user_id, session_id

    @property
    def logical(self) -> str:
        namespace, user_id, session_id = self.scope
        return logical_key(session_id, namespace, user_id)


NONE = Found()
AMBIGUOUS = Found(ambiguous=True)


class IdIndex:
    def __init__(self, redis: aioredis.Redis | RedisCluster, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def queue_add(self, pipe: Pipeline | ClusterPipeline, member: bytes) -> int:
        """Index ``member`` (in a write's pipeline); returns the replies it adds."""
        keys = [id_index_key(self.prefix, c) for c in combos(member)]
        for key in keys:
            pipe.sadd(key, member)
        return len(keys)

    def queue_remove(self, pipe: Pipeline | ClusterPipeline, member: bytes) -> int:
        keys = [id_index_key(self.prefix, c) for c in combos(member)]
        for key in keys:
            pipe.srem(key, member)
        return len(keys)

    async def forget(self, member: bytes) -> None:
        """Remove a leftover: ``member`` is no longer any session's scope."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                if self.queue_remove(pipe, member):
                    await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis unavailable") from exc

    async def find(self, session_id: str, namespace: str | None, user_id: str | None
                   ) -> Found:
        """The session 0.15.2's lookup by id would use. A single candidate is returned
        unchecked: the caller reads it anyway (and calls ``forget`` when its ``ix``
        differs)."""
        try:
            return await self._find(session_id, namespace, user_id)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable("redis unavailable") from exc

    async def _find(self, session_id: str, namespace: str | None, user_id: str | None
                    ) -> Found:
        combo = query_combo(session_id, namespace, user_id)
        if combo is None:
            return NONE
        key = id_index_key(self.prefix, combo)
        for _ in range(CHECK_ROUNDS):
            members = cast(list[bytes], await self.redis.srandmember(key, 2))
            if len(members) < 2:
                return Found(members[0]) if members else NONE
            alive = await asyncio.gather(*(self._alive(m) for m in members))
            if all(alive):
                return AMBIGUOUS
            for member, ok in zip(members, alive, strict=True):
                if not ok:
                    await self.forget(member)
        return AMBIGUOUS  # still leftovers after that many: the next lookup goes on

    async def _alive(self, member: bytes) -> bool:
        namespace, user_id, session_id = orjson.loads(member)
        meta = SessionKeys.build(self.prefix, logical_key(session_id, namespace, user_id)).meta
        return bool(await self.redis.hget(meta, "ix") == member)

    async def build(self, index_keys: list[str]) -> None:
        """``backfill``, logged; a Redis failure leaves it to the next start."""
        try:
            done = await self.backfill(index_keys)
        except (RedisError, OSError) as exc:
            log.warning("id index not built (redis: %r); the next start retries", exc)
            return
        if done:
            log.info("id index built for %d sessions", done)

    async def backfill(self, index_keys: list[str]) -> int:
        """Index every session listed in the ``index_keys`` zsets, once (sessions written
        before the id index existed); returns how many. Idempotent: proxies may run it at
        the same time."""
        built = id_index_built_key(self.prefix)
        if await self.redis.exists(built):
            return 0
        done = 0
        for index_key in index_keys:
            batch: list[bytes] = []
            async for member, _score in self.redis.zscan_iter(index_key,
                                                              count=BACKFILL_BATCH):
                batch.append(member)
                if len(batch) >= BACKFILL_BATCH:
                    done += await self._add_all(batch)
                    batch = []
            done += await self._add_all(batch)
        await self.redis.set(built, "1")
        return done

    async def _add_all(self, members: list[bytes]) -> int:
        if not members:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                self.queue_add(pipe, member)
            await pipe.execute()
        return len(members)
