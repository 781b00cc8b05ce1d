"""Committing a planned write and landing it: in flushed mode the PUT waits for its write;
in buffered mode the PUT is acknowledged from memory and the write lands behind, owned from
then on by a task here. Either way the cached tail ends as the write left the session.

A write planned against a version that moved on (another proxy wrote the session) is
re-sent as an unconditional whole rewrite: the PUT replaces the session whole anyway
(last writer wins, as upstream), and an unconditional write cannot conflict again. An
append is different: it adds to whatever is stored, so it is re-planned on the session as
it is then (``Plan.rebased``) and sent again, conditional on that version.

A buffered write that cannot land (Redis down, failing over, not replicated) is retried,
with a backoff up to a second, until it lands; only a shutdown gives up on it, once its
``shutdown_timeout`` has passed (and logs it). Retries keep each session's order: a write
is queued again only right behind the session's earlier write (queued again itself, or
landed), so a session's writes land in order, a whole backlog in one pipeline. The
writes acknowledged and not yet landed are bounded (the flusher's ``queue_max``): beyond
that a buffered PUT gets 503 + Retry-After, as a full queue does in flushed mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from proxy.coherence import Coherence
from proxy.engine.cache import SessionCache, SessionTail
from proxy.engine.flusher import Flusher
from proxy.engine.plan import Plan
from proxy.errors import Conflict, HttpError, Overloaded, StoreUnavailable
from proxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("proxy.engine.writes")

RETRY_FIRST = 0.05  # seconds before a buffered write that failed tries again, doubling
RETRY_MAX = 1.0


REBASES = 16  # an append re-planned this often in a row means the session is contended


async def write_until_applied(flusher: Flusher, plan: Plan,
                              meanwhile: Callable[[], None] | None = None) -> tuple[int, Plan]:
    """Write ``plan``; returns the new version and the plan that landed. ``meanwhile``
    (work that does not depend on the write, like a PUT's echo) runs while the write is on
    its way: once the flusher, woken by the submit before this task yields, has sent it."""
    for _ in range(REBASES):
        try:
            done = await flusher.submit(plan.write)
            if meanwhile is not None:
                work, meanwhile = meanwhile, None
                await asyncio.sleep(0)
                try:
                    work()
                except BaseException:
                    await done  # the write's own outcome comes first
                    raise
            return await done, plan
        except Conflict:
            if plan.appended is None:
                break
            plan = plan.rebased(await flusher.store.meta(plan.write.keys))
    else:
        raise Overloaded("session too contended to append to; try again")
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

    async def commit(self, plan: Plan, tail: SessionTail | None,
                     meanwhile: Callable[[], None] | None = None) -> Plan:
        """Write ``plan`` in the ack mode; returns the plan that landed (an append may
        have been rebased on others' writes). ``meanwhile`` runs before the cached tail
        changes; in flushed mode while Redis runs the write (``write_until_applied``)."""
        entry = tail or SessionTail(plan.write.keys, plan.write.meta)
        if not self.buffered:
            since = self.coherence.seen()  # messages after this may be other writers'
            asked_at = time.monotonic()
            version, landed = await write_until_applied(self.flusher, plan, meanwhile)
            if landed.appended is not None and landed is not plan:
                self.cache.drop(entry.keys.logical)  # rebased: the tail missed others' writes
                return landed
            self._remember(entry, landed, version)
            entry.checked = since
            self.coherence.after_write(entry.keys, asked_at)  # the write granted a lease
            return landed
        # Buffered: acknowledge now, from memory; the write lands behind.
        await self.behind.queue(plan, entry)
        if meanwhile is not None:
            meanwhile()  # before the tail changes, as in flushed mode
        self._remember(entry, plan, plan.write.predicted_version())
        return plan

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
        """Shutdown: land every acknowledged write within ``deadline`` (retrying those
        that fail meanwhile), then stop intake and flush what is left."""
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        await self.behind.drain(until)
        await self.flusher.close(max(0.0, until - loop.time()))


@dataclass(eq=False)
class _Landing:
    """One acknowledged write on its way to Redis: the task landing it, and whether its
    write sits in the flusher's queue right now (the session's next write may then queue
    right behind it)."""

    queued: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def done(self) -> bool:
        return self.task is None or self.task.done()

    async def queued_or_done(self) -> None:
        """Until this write is queued again after a failure, or has finished."""
        if self.task is None or self.done() or self.queued.is_set():
            return
        waiter = spawn(self.queued.wait(), name="queued again")
        try:
            await asyncio.wait({self.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waiter)


class BehindWrites:
    """Buffered mode's acknowledged writes still on their way to Redis."""

    def __init__(self, flusher: Flusher, cache: SessionCache) -> None:
        self.flusher = flusher
        self.cache = cache
        self._latest: dict[str, int] = {}  # newest local write per session
        self._landing: dict[str, set[asyncio.Task[None]]] = {}  # writes in flight
        self._newest: dict[str, _Landing] = {}  # per session, for retry order
        self._diverged: set[str] = set()  # a write not landed as its tail assumed
        self._seq = 0
        self.limit = flusher.capacity  # acknowledged writes not landed yet, at most
        self.unlanded = 0
        self._give_up_at: float | None = None  # loop time; set by drain

    async def queue(self, plan: Plan, entry: SessionTail) -> None:
        """Hand ``plan`` to the flusher before answering, and pin ``entry`` until it lands."""
        if self.unlanded >= self.limit:
            raise Overloaded("too many acknowledged writes not yet in redis", retry_after=1)
        done = await self.flusher.submit(plan.write)
        logical = entry.keys.logical
        self._seq += 1
        seq = self._latest[logical] = self._seq
        entry.pending += 1
        self.unlanded += 1
        previous = self._newest.get(logical)
        landing = self._newest[logical] = _Landing()
        landing.queued.set()
        task = landing.task = spawn(self._land(plan, entry, seq, done, landing, previous),
                                    name=f"land:{logical}")
        self._landing.setdefault(logical, set()).add(task)
        task.add_done_callback(lambda t: self._landed(logical, t))

    def _landed(self, logical: str, task: asyncio.Task[None]) -> None:
        self.unlanded -= 1
        newest = self._newest.get(logical)
        if newest is not None and newest.task is task:
            del self._newest[logical]
        landing = self._landing.get(logical)
        if landing is not None:
            landing.discard(task)
            if not landing:
                del self._landing[logical]

    def landing(self) -> set[asyncio.Task[None]]:
        """The tasks landing acknowledged writes right now."""
        return {t for landing in self._landing.values() for t in landing}

    async def drain(self, until: float) -> None:
        """Wait for every acknowledged write to land, retrying until loop time ``until``."""
        self._give_up_at = until
        loop = asyncio.get_running_loop()
        while self._landing and loop.time() < until:
            await asyncio.wait(self.landing(), timeout=until - loop.time())

    async def settle(self, logical: str) -> None:
        """Wait until this session's acknowledged writes have landed (or failed), so that
        a DELETE cannot be overtaken and undone by one of them."""
        landing = self._landing.get(logical)
        if landing:
            await asyncio.gather(*landing, return_exceptions=True)

    async def _land(self, plan: Plan, entry: SessionTail, seq: int, done: asyncio.Future[int],
                    me: _Landing, previous: _Landing | None) -> None:
        logical = entry.keys.logical
        landed = 0
        try:
            landed = await self._until_landed(plan, logical, seq, done, me, previous)
        except HttpError as exc:
            log.error("buffered write to %s lost: %s", logical, exc.detail)
        finally:
            entry.pending -= 1
            if self._latest.get(logical) == seq:
                del self._latest[logical]
            if landed != plan.write.predicted_version():
                self._diverged.add(logical)  # retried, rebased, rewritten or lost
            if entry.pending == 0:
                self._settled(entry, landed)

    def _settled(self, entry: SessionTail, landed: int) -> None:
        """The last acknowledged write of ``entry`` landed (version ``landed``). When all
        of them landed as planned, the tail is what Redis holds: it stays cached, read and
        checked like any other; else it is dropped, and reloaded from Redis, the truth."""
        logical = entry.keys.logical
        diverged = logical in self._diverged
        self._diverged.discard(logical)
        if diverged or entry.meta.version != landed:
            self.cache.drop(logical)
        elif self.cache.peek(logical) is entry:
            self.cache.put(entry)  # unpinned: an LRU entry again

    async def _until_landed(self, plan: Plan, logical: str, seq: int,
                            done: asyncio.Future[int], me: _Landing,
                            previous: _Landing | None) -> int:
        """Land ``plan``, retrying; the version the first try gave the session, or 0 when
        it took more than one (what landed then may differ from what was planned)."""
        loop = asyncio.get_running_loop()
        backoff = RETRY_FIRST
        uncertain = False  # a try failed without saying whether it was applied
        first = True
        while True:
            try:
                version = await done
                return version if first else 0
            except Conflict as exc:
                me.queued.clear()
                try:
                    if uncertain and exc.current_version == plan.write.predicted_version() \
                            and await self._applied(plan):
                        return 0  # an earlier try landed after all (its reply was lost)
                    if previous is None or previous.done():
                        if plan.appended is not None:
                            # An append adds to whatever is there: plan it again on top.
                            meta = await self.flusher.store.meta(plan.write.keys)
                            plan = plan.rebased(meta)
                except StoreUnavailable as failed:  # Redis went away in between: retry
                    done = loop.create_future()
                    done.set_exception(failed)
                    continue
                if previous is not None and not previous.done():
                    # An earlier write of this session is still being retried: it goes
                    # first, then this one, planned on top of it, as it was.
                    await previous.queued_or_done()
                elif plan.appended is None and self._latest.get(logical) == seq:
                    # Nothing newer from here: this write is the last word, so rewrite it.
                    rewrite = plan.as_rewrite()
                    plan = replace(rewrite, write=replace(rewrite.write,
                                                          expected_version=None))
                elif plan.appended is None:
                    return 0  # a newer write of this session carries it on
            except (StoreUnavailable, Overloaded) as exc:
                me.queued.clear()
                uncertain = uncertain or isinstance(exc, StoreUnavailable)
                behind = previous is not None and not previous.done()
                if previous is not None and behind:
                    await previous.queued_or_done()  # in order: the earlier write first
                if self._give_up_at is not None and loop.time() >= self._give_up_at:
                    raise
                if not behind:  # this one is first in line: Redis is still failing it
                    if backoff == RETRY_FIRST:
                        log.warning("buffered write to %s not landed yet (%s); retrying",
                                    logical, exc.detail)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RETRY_MAX)
            first = False
            done = await self._resubmit(plan)
            me.queued.set()

    async def _applied(self, plan: Plan) -> bool:
        """Whether ``plan``, whose version Redis now holds, is what holds it: a whole write
        is (another writer's would only make it the earlier of two PUTs, last writer
        wins); an append only if its messages end the session."""
        if plan.appended is None:
            return True
        snap = await self.flusher.store.snapshot(plan.write.keys, len(plan.write.messages))
        return snap is not None and snap.messages == plan.write.messages

    async def _resubmit(self, plan: Plan) -> asyncio.Future[int]:
        """Queue ``plan`` again; a refusal (queue full) comes back as the future's error."""
        try:
            return await self.flusher.submit(plan.write)
        except Overloaded as exc:
            refused: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            refused.set_exception(exc)
            return refused
