"""Committing a planned write and landing it: in flushed mode the PUT waits for its write;
in buffered mode the PUT is acknowledged from memory and the write lands behind, owned from
then on by a task here. Either way the cached tail ends as the write left the session.

A write planned against a version that moved on (another proxy wrote the session) is
re-sent as an unconditional whole rewrite: the PUT replaces the session whole anyway
(last writer wins, as upstream), and an unconditional write cannot conflict again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from proxy.coherence import Coherence
from proxy.engine.cache import SessionCache, SessionTail
from proxy.engine.flusher import Flusher
from proxy.engine.plan import Plan
from proxy.errors import Conflict, HttpError
from proxy.tasks import spawn

log = logging.getLogger("proxy.engine.writes")


async def write_until_applied(flusher: Flusher, plan: Plan) -> tuple[int, Plan]:
    """Write ``plan``; returns the new version and the plan that landed."""
    try:
        return await (await flusher.submit(plan.write)), plan
    except Conflict:
        rewrite = plan.as_rewrite()
        rewrite = replace(rewrite, write=replace(rewrite.write, expected_version=None))
        return await (await flusher.submit(rewrite.write)), rewrite


class Writes:
    """Commits planned writes in the configured acknowledgement mode and keeps the cache
    in step with them."""

    def __init__(self, flusher: Flusher, cache: SessionCache, coherence: Coherence,
                 *, buffered: bool) -> None:
        self.flusher = flusher
        self.cache = cache
        self.coherence = coherence
        self.buffered = buffered
        self.behind = BehindWrites(flusher, cache)

    async def commit(self, plan: Plan, tail: SessionTail | None) -> None:
        entry = tail or SessionTail(plan.write.keys, plan.write.meta)
        if not self.buffered:
            since = self.coherence.seen()  # messages after this may be other writers'
            asked_at = time.monotonic()
            version, landed = await write_until_applied(self.flusher, plan)
            self._remember(entry, landed, version)
            entry.checked = since
            self.coherence.after_write(entry.keys, asked_at)  # the write granted a lease
            return
        # Buffered: acknowledge now, from memory; the write lands behind.
        await self.behind.queue(plan, entry)
        self._remember(entry, plan, plan.write.predicted_version())

    def _remember(self, entry: SessionTail, plan: Plan, version: int) -> None:
        write = plan.write
        entry.meta = replace(write.meta, version=version)
        if write.rewrite:
            entry.reset(0, write.messages, write.tokens, self.cache.max_messages)
        else:
            entry.extend(write.messages, write.tokens, self.cache.max_messages)
        if write.ttl_seconds is not None and write.ttl_seconds <= 0:
            self.cache.drop(entry.keys.logical)
        else:
            self.cache.put(entry)

    async def settle(self, logical: str) -> None:
        """Wait until this session's acknowledged writes have landed (or failed)."""
        await self.behind.settle(logical)

    async def drain(self, deadline: float) -> None:
        """Shutdown: stop intake, land every acknowledged write within ``deadline``."""
        await self.flusher.close(deadline)


class BehindWrites:
    """Buffered mode's acknowledged writes still on their way to Redis."""

    def __init__(self, flusher: Flusher, cache: SessionCache) -> None:
        self.flusher = flusher
        self.cache = cache
        self._latest: dict[str, int] = {}  # newest local write per session
        self._landing: dict[str, set[asyncio.Task[None]]] = {}  # writes in flight
        self._seq = 0

    async def queue(self, plan: Plan, entry: SessionTail) -> None:
        """Hand ``plan`` to the flusher before answering, and pin ``entry`` until it lands."""
        done = await self.flusher.submit(plan.write)
        logical = entry.keys.logical
        self._seq += 1
        seq = self._latest[logical] = self._seq
        entry.pending += 1
        task = spawn(self._land(plan, entry, seq, done), name=f"land:{logical}")
        self._landing.setdefault(logical, set()).add(task)
        task.add_done_callback(lambda t: self._landed(logical, t))

    def _landed(self, logical: str, task: asyncio.Task[None]) -> None:
        landing = self._landing.get(logical)
        if landing is not None:
            landing.discard(task)
            if not landing:
                del self._landing[logical]

    async def settle(self, logical: str) -> None:
        """Wait until this session's acknowledged writes have landed (or failed), so that
        a DELETE cannot be overtaken and undone by one of them."""
        landing = self._landing.get(logical)
        if landing:
            await asyncio.gather(*landing, return_exceptions=True)

    async def _land(self, plan: Plan, entry: SessionTail, seq: int,
                    done: asyncio.Future[int]) -> None:
        logical = entry.keys.logical
        try:
            await done
        except Conflict:
            if self._latest.get(logical) == seq:
                # Nothing newer from here: this write is the last word, so rewrite it.
                await write_until_applied(self.flusher, plan.as_rewrite())
        except HttpError as exc:
            log.error("buffered write to %s lost: %s", logical, exc.detail)
        finally:
            entry.pending -= 1
            if self._latest.get(logical) == seq:
                del self._latest[logical]
            if entry.pending == 0:
                self.cache.drop(logical)  # reload from Redis, the truth
