"""The sync ledger: which sessions are due for a hand-over round, and who holds each.

It lives in the proxy's Redis (keys in store/keys.py ``SyncKeys``, scripts in
sync/scripts.py), so what is due survives a restart or a crash of any proxy, and every
proxy sharing the Redis works from the same list:

* a write marks its session due (store/scripts.py MARK_DUE, in the write's own pipeline);
* a proxy *claims* due sessions, at most ``limit`` held at once by all proxies together,
  and renews its claims while their rounds run; a claim it stops renewing (it crashed)
  runs out after ``lease_ms`` and the session is claimed again by whoever is free;
* ``done`` ends a claim and reschedules the session by the round's outcome.

A session is thus in at most one round at a time, anywhere: hand-overs of one session are
in order, and two proxies never hand the same session over concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

import redis.asyncio as aioredis

from proxy.store.keys import SyncKeys
from proxy.sync import scripts

Outcome = Literal["gone", "retry", "clean", "settle"]


@dataclass(frozen=True, slots=True)
class Claim:
    member: bytes  # the session's index member: JSON [namespace, user_id, session_id]
    seq: int  # writes counted since its last clean round (0: a follow-up poll, nothing new)
    step: int  # follow-up polls made so far
    failures: int  # rounds failed in a row before this one


@dataclass(frozen=True, slots=True)
class Claimed:
    claims: list[Claim]
    now_ms: int  # Redis's clock
    next_due_ms: int | None  # the next session due after now (claimed or not)


class Ledger:
    def __init__(self, redis: aioredis.Redis, prefix: str, holder: str, *, limit: int,
                 lease_ms: int, quiet_ms: float, max_lag_ms: float) -> None:
        self.redis = redis
        self.keys = SyncKeys.build(prefix)
        self.holder = holder
        self.limit = limit
        self.lease_ms = lease_ms
        self.quiet_ms = int(quiet_ms)
        self.max_lag_ms = int(max_lag_ms)
        self._claim = redis.register_script(scripts.CLAIM)
        self._renew = redis.register_script(scripts.RENEW)
        self._done = redis.register_script(scripts.DONE)
        self._settle = redis.register_script(scripts.SETTLE)

    def _all(self) -> list[str]:
        k = self.keys
        return [k.due, k.dirty, k.state, k.claims, k.owner]

    async def claim(self, want: int) -> Claimed:
        raw = cast(list[bytes], await self._claim(
            keys=self._all(), args=[self.holder, self.limit, self.lease_ms, want]))
        claims = [Claim(raw[i], int(raw[i + 1]), int(raw[i + 2]), int(raw[i + 3]))
                  for i in range(2, len(raw), 4)]
        return Claimed(claims, int(raw[0]), int(float(raw[1])) if raw[1] else None)

    async def renew(self, members: list[bytes]) -> set[bytes]:
        """Extend this holder's claims; returns those it lost (ran out, taken over)."""
        if not members:
            return set()
        lost = await self._renew(keys=[self.keys.claims, self.keys.owner],
                                 args=[self.holder, self.lease_ms, *members])
        return set(cast(list[bytes], lost))

    async def done(self, claim: Claim, outcome: Outcome, delay_ms: float = 0,
                   step: int = 0) -> bool:
        """End ``claim`` with ``outcome``; False when it was no longer ours."""
        return bool(await self._done(keys=self._all(), args=[
            claim.member, self.holder, outcome, int(delay_ms), self.quiet_ms,
            self.max_lag_ms, step]))

    async def settle(self, member: bytes, delay_ms: float) -> None:
        """Schedule a follow-up poll of a session (unless it is due sooner anyway)."""
        k = self.keys
        await self._settle(keys=[k.due, k.dirty, k.state], args=[member, int(delay_ms)])

    async def backlog(self) -> tuple[int, float]:
        """Sessions with changes not yet handed over, and the age of the oldest change
        (seconds, 0 when none)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.dirty)
            pipe.zrange(self.keys.dirty, 0, 0, withscores=True)
            pipe.time()
            count, oldest, (secs, micros) = await pipe.execute()
        if not oldest:
            return int(count), 0.0
        now_ms = int(secs) * 1000 + int(micros) // 1000
        return int(count), max(0.0, (now_ms - float(oldest[0][1])) / 1000)

    async def due_count(self) -> int:
        """Sessions with a round scheduled (changes, follow-up polls and retries)."""
        return int(await self.redis.zcard(self.keys.due))
