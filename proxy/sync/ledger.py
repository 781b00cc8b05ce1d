"""The sync ledger: which sessions are due for a hand-over round, and who holds each.

It lives in the proxy's Redis (keys in store/keys.py ``SyncKeys``, scripts in
sync/scripts.py), so what is due survives a restart or a crash of any proxy, and every
proxy sharing the Redis works from the same list:

* a write marks its session due (store/scripts.py MARK_DUE, applied after the write);
* a proxy *claims* due sessions, at most ``limit`` held at once by all proxies together,
  and renews its claims while their rounds run; a claim it stops renewing (it crashed)
  runs out after ``lease_ms`` and the session is claimed again by whoever is free;
* ``done`` ends a claim and reschedules the session by the round's outcome.

A session is thus in at most one round at a time, anywhere: hand-overs of one session are
in order, and two proxies never hand the same session over concurrently.

**Shards.** The ledger is ``SYNC_SHARDS`` shards, a session in the shard of its slot range
(``SyncKeys.shard_of``), each shard's keys in one slot: on a cluster the marks spread over
the masters as the sessions do, and a failover of one master stops only the marks (and so
the writes) of the sessions in its shards. Every script works on one shard. A proxy keeps
when each shard is next due (``Schedule``), from the claim replies and from the marks its
own writes apply, and claims only from shards that are due; every ``rescan_ms`` it reads
each shard's earliest due time (one small read per shard), which brings in what other
proxies marked. An idle proxy thus sends nothing to Redis between rescans.

**The limit across proxies.** A claim is per shard, so no shard can count the claims held
in the others, and a per-shard share (``ceil(limit / N)``) would allow N times too many
rounds, or starve a shard holding all the due sessions. Instead a round needs a *permit*:
one key (``sync_permits_key``) holds the permits, each ``<holder>/<n>`` scored by its end,
and RESERVE grants them atomically, only while fewer than ``limit`` are held in all. A
proxy reserves as many permits as it can run rounds before claiming, claims at most that
many sessions from the due shards, and gives back the permits it did not use; ``done``
gives back the claim's permit, and the renewals extend permits with claims. At most
``limit`` permits exist at any time, so at most ``limit`` rounds run, across all proxies
and shards. A proxy that stops renewing (crashed, or stalled past ``lease_ms``) loses its
permits with its claims, as it loses its claims alone without shards. The permits key
takes one small script per claim and per round, never per write: a failover of its master
delays new rounds, not writes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.store.connect import RedisClient, time_ms
from proxy.store.keys import SYNC_SHARDS, SyncKeys, legacy_sync_keys, sync_permits_key
from proxy.sync import scripts

log = logging.getLogger("proxy.sync")

Outcome = Literal["gone", "retry", "clean", "settle"]
NEVER = float("inf")
RETRY_MS = 1_000.0  # a shard whose master did not answer is asked again this much later


@dataclass(frozen=True, slots=True)
class Claim:
    member: bytes  # the session's index member: JSON [namespace, user_id, session_id]
    seq: int  # writes counted since its last clean round (0: a follow-up poll, nothing new)
    step: int  # follow-up polls made so far
    failures: int  # rounds failed in a row before this one
    shard: int = 0  # the ledger shard holding it
    permit: str = ""  # the round's permit (see the module's docstring)
    claimed_ms: int = 0  # when it was claimed (its shard's Redis clock)


@dataclass(frozen=True, slots=True)
class Claimed:
    claims: list[Claim]
    now_ms: int  # Redis's clock (as last read)
    next_due_ms: int | None  # when to claim again at the latest, unless woken


@dataclass(slots=True)
class Schedule:
    """When each shard is next due, on Redis's clock (ms), as far as this proxy knows:
    0 for unknown (look now), ``NEVER`` for nothing due."""

    at: list[float] = field(default_factory=lambda: [0.0] * SYNC_SHARDS)
    offset_ms: float = 0.0  # Redis's clock minus the local monotonic clock
    rescan_at: float = 0.0  # local monotonic ms of the next read of every shard
    # The soonest mark noted per shard since a read of it was sent, which its reply may
    # not reflect (the reply can arrive after the mark's, though the read ran before).
    since: list[float] = field(default_factory=lambda: [NEVER] * SYNC_SHARDS)

    def now(self) -> float:
        return time.monotonic() * 1000 + self.offset_ms

    def synced(self, redis_now_ms: float) -> None:
        self.offset_ms = redis_now_ms - time.monotonic() * 1000

    def due(self) -> list[int]:
        """The shards due now, the longest due first."""
        now = self.now()
        return sorted((k for k, at in enumerate(self.at) if at <= now), key=self.at.__getitem__)

    def soonest(self) -> float:
        """The next time a shard falls due, or a rescan is; shards due already (their
        sessions claimed, or the limit reached) are left to the caller's poll."""
        now = self.now()
        return min([at for at in self.at if at > now] + [self.rescan_at + self.offset_ms])

    def note(self, shard: int, due_ms: float) -> bool:
        """A session of ``shard`` is due at ``due_ms``; whether that is sooner than any."""
        sooner = due_ms < min(self.at)
        self.at[shard] = min(self.at[shard], due_ms)
        self.since[shard] = min(self.since[shard], due_ms)
        return sooner

    def asking(self, shards: Sequence[int]) -> None:
        """A read of these shards' next due times is sent."""
        for k in shards:
            self.since[k] = NEVER

    def answered(self, shard: int, due_ms: float) -> None:
        """What a read of ``shard`` found, short of any mark noted since it was sent."""
        self.at[shard] = min(due_ms, self.since[shard])


class Ledger:
    def __init__(self, redis: RedisClient, prefix: str, holder: str, *, limit: int,
                 lease_ms: int, quiet_ms: float, max_lag_ms: float,
                 rescan_ms: float = 1_000) -> None:
        self.redis = redis
        self.prefix = prefix
        self.shards = SyncKeys.shards(prefix)
        self.permits = sync_permits_key(prefix)
        self.holder = holder
        self.limit = limit
        self.lease_ms = lease_ms
        self.quiet_ms = int(quiet_ms)
        self.max_lag_ms = int(max_lag_ms)
        self.rescan_ms = rescan_ms
        self.schedule = Schedule()
        self.on_due: Callable[[], None] | None = None  # a mark made a shard due sooner
        self._serial = itertools.count()
        self._claim = redis.register_script(scripts.CLAIM)
        self._renew = redis.register_script(scripts.RENEW)
        self._done = redis.register_script(scripts.DONE)
        self._settle = redis.register_script(scripts.SETTLE)
        self._reserve = redis.register_script(scripts.RESERVE)
        self._renew_permits = redis.register_script(scripts.RENEW_PERMITS)
        self._adopt = redis.register_script(scripts.ADOPT)

    def shard_of(self, member: bytes) -> int:
        return SyncKeys.shard_of_member(self.prefix, member)

    def note_due(self, shard: int, due_ms: int) -> None:
        """A write of this proxy marked a session of ``shard`` due at ``due_ms``."""
        if self.schedule.note(shard, due_ms) and self.on_due is not None:
            self.on_due()

    async def claim(self, want: int) -> Claimed:
        """Claim up to ``want`` due sessions (fewer when the limit is reached)."""
        schedule = self.schedule
        if time.monotonic() * 1000 >= schedule.rescan_at:
            await self.rescan()
        due = schedule.due()
        claims: list[Claim] = []
        if due and want > 0:
            permits = [f"{self.holder}/{next(self._serial)}" for _ in range(want)]
            granted = [_text(p) for p in cast(list[bytes], await self._reserve(
                keys=[self.permits], args=[self.limit, self.lease_ms, *permits]))]
            try:
                for k in due:
                    if len(claims) == len(granted):
                        break
                    try:
                        claims += await self._claim_from(k, granted[len(claims):])
                    except (RedisError, OSError) as exc:  # its master is failing over
                        log.warning("sync ledger shard %d unreachable: %r", k, exc)
                        schedule.answered(k, schedule.now() + RETRY_MS)
            finally:
                if unused := granted[len(claims):]:
                    await self.redis.zrem(self.permits, *unused)
        now = schedule.now()
        soonest = schedule.soonest()
        return Claimed(claims, int(now), None if soonest == NEVER else int(soonest))

    async def _claim_from(self, shard: int, permits: list[str]) -> list[Claim]:
        self.schedule.asking([shard])
        raw = cast(list[bytes], await self._claim(
            keys=self.shards[shard].all(), args=[self.holder, self.lease_ms, len(permits)]))
        self.schedule.synced(int(raw[0]))
        self.schedule.answered(shard, float(raw[1]) if raw[1] else NEVER)
        return [Claim(raw[i], int(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]), shard,
                      permits[j], int(raw[0])) for j, i in enumerate(range(2, len(raw), 4))]

    async def rescan(self) -> None:
        """Read every shard's earliest due time (what other proxies marked, too)."""
        self.schedule.asking(range(SYNC_SHARDS))
        earliest = await self._each(lambda r, k: r.zrange(k.due, 0, 0, withscores=True),
                                    time_too=True, tolerant=True)
        clock, firsts = earliest[-1], earliest[:-1]
        if not isinstance(clock, Exception):
            self.schedule.synced(time_ms(clock))
        retry_at = self.schedule.now() + RETRY_MS
        failed = [k for k, f in enumerate(firsts) if isinstance(f, Exception)]
        if failed:  # a master failing over: the other shards go on
            log.warning("sync ledger shards %s unreachable: %r", failed, firsts[failed[0]])
        for k, f in enumerate(firsts):
            self.schedule.answered(k, retry_at if isinstance(f, Exception) else
                                   float(f[0][1]) if f else NEVER)
        self.schedule.rescan_at = time.monotonic() * 1000 + self.rescan_ms

    async def renew(self, claims: Sequence[Claim]) -> set[bytes]:
        """Extend this holder's claims and their permits; returns the members of those it
        lost (ran out, taken over)."""
        if not claims:
            return set()
        by_shard: dict[int, list[bytes]] = {}
        for c in claims:
            by_shard.setdefault(c.shard, []).append(c.member)
        calls: list[Awaitable[Any]] = [
            self._renew(keys=[self.shards[k].claims, self.shards[k].owner],
                        args=[self.holder, self.lease_ms, *members])
            for k, members in by_shard.items()]
        calls.append(self._renew_permits(keys=[self.permits],
                                         args=[self.lease_ms, *(c.permit for c in claims)]))
        *lost, lost_permits = await asyncio.gather(*calls, return_exceptions=True)
        for failure in (r for r in [*lost, lost_permits] if isinstance(r, BaseException)):
            if not isinstance(failure, (RedisError, OSError)):
                raise failure
            log.warning("could not renew sync claims: %r", failure)  # the others are
        out = {m for members in lost if not isinstance(members, BaseException)
               for m in cast(list[bytes], members)}
        if isinstance(lost_permits, BaseException):
            return out
        gone = {_text(p) for p in cast(list[bytes], lost_permits)}
        return out | {c.member for c in claims if c.permit in gone}

    async def done(self, claim: Claim, outcome: Outcome, delay_ms: float = 0,
                   step: int = 0) -> bool:
        """End ``claim`` with ``outcome`` and give its permit back; False when the claim
        was no longer ours."""
        ok, due = await self._done(keys=self.shards[claim.shard].all(), args=[
            claim.member, self.holder, outcome, int(delay_ms), self.quiet_ms,
            self.max_lag_ms, step])
        if due:
            self.note_due(claim.shard, int(due))
        if claim.permit:
            await self.redis.zrem(self.permits, claim.permit)
        return bool(ok)

    async def settle(self, member: bytes, delay_ms: float) -> None:
        """Schedule a follow-up poll of a session (unless it is due sooner anyway)."""
        k = self.shard_of(member)
        due = await self._settle(keys=list(self.shards[k].for_mark()),
                                 args=[member, int(delay_ms)])
        self.note_due(k, int(float(due)))

    async def backlog(self) -> tuple[int, float]:
        """Sessions with changes not yet handed over, and the age of the oldest change
        (seconds, 0 when none), over all shards."""
        counts = await self._each(lambda r, k: r.zcard(k.dirty))
        firsts = await self._each(lambda r, k: r.zrange(k.dirty, 0, 0, withscores=True),
                                  time_too=True)
        now_ms = time_ms(firsts.pop())
        oldest = [float(f[0][1]) for f in firsts if f]
        if not oldest:
            return sum(counts), 0.0
        return sum(counts), max(0.0, (now_ms - min(oldest)) / 1000)

    async def due_count(self) -> int:
        """Sessions with a round scheduled (changes, follow-up polls and retries)."""
        return sum(await self._each(lambda r, k: r.zcard(k.due)))

    async def adopt_legacy(self) -> int:
        """Move what the unsharded ledger of an earlier version holds into the shards,
        but the sessions a proxy of that version holds a live claim on (taken on its
        next turn, once the claim ended). Returns how many sessions moved."""
        due_key, dirty_key, state_key, claims_key, owner_key = legacy_sync_keys(self.prefix)
        entries = cast(list[tuple[bytes, float]],
                       await self.redis.zrange(due_key, 0, -1, withscores=True))
        if not entries:
            return 0
        live = set(cast(list[bytes], await self.redis.zrangebyscore(
            claims_key, time_ms(await self.redis.time()), "+inf")))
        moved = 0
        for member, due in entries:
            if member in live:
                continue
            dirty = await self.redis.zscore(dirty_key, member)
            state = await self.redis.hget(state_key, member)
            await self._adopt(keys=list(self.shards[self.shard_of(member)].for_mark()), args=[
                member, int(due), "" if dirty is None else int(dirty), state or ""])
            await self.redis.zrem(due_key, member)
            await self.redis.zrem(dirty_key, member)
            await self.redis.hdel(state_key, member)
            moved += 1
        if not live:
            await self.redis.delete(claims_key, owner_key)
        if moved:
            log.info("moved %d sessions due from the unsharded sync ledger", moved)
            self.schedule.at = [0.0] * SYNC_SHARDS
        return moved

    async def _each(self, command: Callable[[Any, SyncKeys], Any], time_too: bool = False,
                    tolerant: bool = False) -> list[Any]:
        """``command`` on every shard (plus TIME last): one pipeline on one server, all
        at once on a cluster (each to its shard's master; ``tolerant``: a shard that
        failed gives its exception, else the first failure is raised)."""
        if isinstance(self.redis, aioredis.Redis):
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys in self.shards:
                    command(pipe, keys)
                if time_too:
                    pipe.time()
                replies: list[Any] = await pipe.execute()
                return replies
        calls = [command(self.redis, keys) for keys in self.shards]
        if time_too:
            calls.append(self.redis.time())
        replies = await asyncio.gather(*calls, return_exceptions=True)
        for reply in replies:
            if isinstance(reply, BaseException) and (
                    not tolerant or not isinstance(reply, (RedisError, OSError))):
                raise reply
        return list(replies)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

