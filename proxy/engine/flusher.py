"""Group commit: one owner writes every pending session change to Redis in one pipeline.

PUTs hand their Write to ``submit`` and get a future. The flusher takes everything queued
(up to ``batch_max``), lingers up to ``linger`` seconds for stragglers when the queue was
busy, sends one pipeline, and resolves each future with the session's new version (once
the read leases the write ended are released, see leases.py), or with ``Conflict`` when
the session changed since the write was planned (its owner re-plans), or with
``StoreUnavailable`` when Redis failed.

With the upstream sync on, a write also marks its session due for a hand-over, and the
mark is applied only after the write: on one server it follows the script in the same
pipeline; on a cluster, where the per-master pipelines run at once, the marks of the
writes whose script succeeded go out as a second pipeline (a refused or failed write
marks nothing). A write whose mark fails (its ledger shard's master failing over) landed
but is answered ``StoreUnavailable`` (503) all the same: acknowledged means due for the
hand-over, and the client's retry writes again and marks it. The flusher also keeps the
mark owed and sends it again every ``OWED_RETRY_S`` until it lands (or a later write of the
session marks it), so the session is handed over even when no retry comes (a buffered
write's retry finds it landed and writes nothing) unless this proxy stops first.

The queue is bounded: when full, ``submit`` waits up to ``queue_wait`` seconds, then
raises ``Overloaded`` (503 + Retry-After). ``close`` stops intake, flushes what is queued
within a deadline, and logs whatever it could not write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from proxy.coherence import Coherence
from proxy.errors import Conflict, Overloaded, StoreUnavailable
from proxy.observability.metrics import Metrics
from proxy.store.store import Revocation, Store, Write
from proxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("proxy.engine.flusher")

OWED_RETRY_S = 1.0  # a due mark that failed after its write landed is sent again this often
OWED_MAX = 100_000  # sessions with a mark owed, at most (the oldest are given up beyond)


@dataclass(slots=True)
class _Pending:
    write: Write
    done: asyncio.Future[int]


class Flusher:
    def __init__(self, store: Store, coherence: Coherence, *, batch_max: int, queue_max: int,
                 queue_wait: float, linger: float, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics if metrics is not None else Metrics()
        self.coherence = coherence
        self.batch_max = batch_max
        self.queue_wait = queue_wait
        self.linger = linger
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_max)
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a pipeline is in flight
        self.batches = 0  # pipelines sent, for tests and metrics
        self.writes = 0
        self._releasing: set[asyncio.Task[None]] = set()
        self._owed: dict[str, Write] = {}  # by meta key: writes landed, their mark failed
        self.metrics.add_sampler(lambda: self.metrics.sync_marks_owed.set(len(self._owed)))

    def start(self) -> None:
        self._task = spawn(self._run(), name="flusher")

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def sending(self) -> bool:
        """Whether a pipeline is in flight right now."""
        return self._busy

    @property
    def capacity(self) -> int:
        """Writes the queue holds at most (``queue_max``)."""
        return self._queue.maxsize

    async def submit(self, write: Write) -> asyncio.Future[int]:
        """Queue a write; the returned future resolves once it is durable in Redis."""
        if self._closing:
            self.metrics.write_queue_rejections.labels("shutting_down").inc()
            raise Overloaded("shutting down", retry_after=1)
        item = _Pending(write, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            try:
                await asyncio.wait_for(self._queue.put(item), self.queue_wait)
            except TimeoutError:
                self.metrics.write_queue_rejections.labels("queue_full").inc()
                raise Overloaded("write queue full", retry_after=1) from None
        return item.done

    @property
    def owed(self) -> int:
        """Sessions whose write landed but whose due mark is not applied yet."""
        return len(self._owed)

    async def _run(self) -> None:
        while True:
            if self._owed:
                try:
                    first = await asyncio.wait_for(self._queue.get(), OWED_RETRY_S)
                except TimeoutError:
                    await self._pay_owed()
                    continue
            else:
                first = await self._queue.get()
            batch = [first]
            if self.linger and not self._queue.empty():
                await asyncio.sleep(self.linger)  # busy: let more writes join this commit
            while len(batch) < self.batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._busy = True
            try:
                await self._flush(batch)
            finally:
                self._busy = False

    async def _flush(self, batch: list[_Pending], retry: bool = True) -> None:
        m = self.metrics
        started = time.perf_counter()
        try:
            if not self.store.scripts_loaded:
                await self.store.load_scripts()
            # One pipeline per server (a cluster's masters), WAIT for replicas when asked.
            pipe = self.store.pipeline()
            counts = [self.store.queue_write(pipe, item.write) for item in batch]
            replies = await self.store.execute(pipe)
        except Exception as exc:  # noqa: BLE001 - whatever broke, fail this batch, keep flushing
            level = logging.ERROR if isinstance(exc, RedisError | OSError) else logging.CRITICAL
            log.log(level, "flush of %d writes failed: %r %s", len(batch), exc, exc)
            m.flushed_writes.labels("failed").inc(len(batch))
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(StoreUnavailable("redis unavailable"))
            return
        starts = [sum(counts[:i]) for i in range(len(batch))]
        lost = [item for item, at in zip(batch, starts, strict=True)
                if isinstance(replies[at], NoScriptError)]
        if any(isinstance(r, NoScriptError) for r in replies):
            # Redis restarted, or a replica without them was promoted (SCRIPT LOAD is not
            # replicated): load them on every master before the next pipeline.
            self.store.scripts_loaded = False
        resent = {id(item) for item in lost} if retry else set()
        if lost and retry:
            # An EVALSHA refused ran nothing: send those writes again.
            log.warning("redis lost the write scripts; reloading")
            await self._flush(lost, retry=False)
        marks = await self._marks(batch, counts, starts, replies, resent)
        self.batches += 1
        self.writes += len(batch)
        m.flush_duration.observe(time.perf_counter() - started)
        m.flush_batch_size.observe(len(batch))
        written = failed = conflicts = 0
        for item, count, at in zip(batch, counts, starts, strict=True):
            reply = replies[at]
            # The script, its index upkeep and due mark: acknowledged only if all landed.
            error = next((r for r in [*replies[at:at + count], marks.get(id(item))]
                          if isinstance(r, Exception)), None)
            if item.done.done() or id(item) in resent:  # the retry above owns it
                continue
            if error is not None:
                log.error("write to %s failed: %r", item.write.keys.logical, error)
                item.done.set_exception(error if isinstance(error, StoreUnavailable)
                                        else StoreUnavailable("redis write failed"))
                failed += 1
            elif int(reply[0]) == 1:
                written += 1
                version = int(reply[1])
                revocation = Revocation.from_reply(version, reply[2], reply[3])
                if revocation.holders and self.coherence.waits_for_release:
                    task = spawn(self._resolve_when_released(item, revocation), "release")
                    self._releasing.add(task)
                    task.add_done_callback(self._releasing.discard)
                else:
                    item.done.set_result(version)
            else:
                item.done.set_exception(Conflict(int(reply[1])))
                conflicts += 1
        for result, count in (("written", written), ("conflict", conflicts), ("failed", failed)):
            if count:
                m.flushed_writes.labels(result).inc(count)

    async def _marks(self, batch: list[_Pending], counts: list[int], starts: list[int],
                     replies: list[Any], resent: set[int]) -> dict[int, Any]:
        """The due mark's reply of each write that marks its session (by ``id(item)``):
        on one server read from ``replies`` (right after the script's); on a cluster sent
        now, as one more pipeline, for the writes whose script succeeded."""
        store, out = self.store, dict[int, Any]()
        marking = [(item, at) for item, at in zip(batch, starts, strict=True)
                   if store.marks(item.write) and id(item) not in resent]
        if store.inline_marks:
            out = {id(item): replies[at + 1] for item, at in marking}
        else:
            landed = [item for item, at in marking if _succeeded(replies[at])]
            out = await self._send_marks(landed)
        for item, at in marking:
            reply, key = out.get(id(item)), item.write.keys.meta
            if reply is not None and not isinstance(reply, Exception):
                store.marked(item.write, reply)
                self._owed.pop(key, None)  # marked now: what an earlier write owed too
            elif isinstance(reply, Exception) and _succeeded(replies[at]):
                self._owe(item.write)
        return out

    def _owe(self, write: Write) -> None:
        self._owed.pop(write.keys.meta, None)
        self._owed[write.keys.meta] = write
        if len(self._owed) > OWED_MAX:
            gone = self._owed.pop(next(iter(self._owed)))
            log.error("due mark of %s given up: its next write marks it", gone.keys.logical)

    async def _pay_owed(self) -> None:
        """Send the marks owed again; keep those that fail once more."""
        owed = list(self._owed.values())
        try:
            if not self.store.scripts_loaded:
                await self.store.load_scripts()
            pipe = self.store.pipeline()
            for write in owed:
                self.store.queue_mark(pipe, write, landed=True)
            replies = await self.store.execute(pipe)
        except Exception as exc:  # noqa: BLE001 - kept; tried again later
            log.warning("owed due marks of %d sessions failed again: %r", len(owed), exc)
            return
        if any(isinstance(r, NoScriptError) for r in replies):
            self.store.scripts_loaded = False  # loaded before the next flush
        for write, reply in zip(owed, replies, strict=True):
            if not isinstance(reply, Exception) and self._owed.get(write.keys.meta) is write:
                del self._owed[write.keys.meta]
                self.store.marked(write, reply)

    async def _send_marks(self, items: list[_Pending], retry: bool = True) -> dict[int, Any]:
        if not items:
            return {}
        try:
            pipe = self.store.pipeline()
            for item in items:
                self.store.queue_mark(pipe, item.write)
            replies = await self.store.execute(pipe)
        except Exception as exc:  # noqa: BLE001 - the writes landed; answer them 503
            log.error("due marks of %d writes failed: %r", len(items), exc)
            replies = [exc] * len(items)
        out = {id(item): reply for item, reply in zip(items, replies, strict=True)}
        lost = [item for item, reply in zip(items, replies, strict=True)
                if isinstance(reply, NoScriptError)]
        if lost and retry:  # a promoted replica without the scripts: load them, send again
            try:
                await self.store.load_scripts()
            except StoreUnavailable:
                return out
            out.update(await self._send_marks(lost, retry=False))
        return out

    async def _resolve_when_released(self, item: _Pending, revocation: Revocation) -> None:
        started = time.perf_counter()
        try:
            await self.coherence.await_release(item.write.keys.meta, revocation)
        finally:  # durable either way; the wait only orders it after other proxies' reads
            self.metrics.lease_release_wait.observe(time.perf_counter() - started)
            if not item.done.done():
                item.done.set_result(revocation.version)

    async def close(self, deadline: float) -> None:
        """Stop intake, flush what is queued within ``deadline`` seconds, then stop."""
        self._closing = True
        loop = asyncio.get_running_loop()
        until = loop.time() + deadline
        while (self._busy or self._releasing or not self._queue.empty()) \
                and loop.time() < until:
            await asyncio.sleep(0.005)
        await cancel_and_wait(self._task)
        if self._owed:  # one last try
            await self._pay_owed()
        for write in self._owed.values():
            log.error("due mark of %s not applied at shutdown: its next write marks it",
                      write.keys.logical)
        lost = 0
        while not self._queue.empty():
            item = self._queue.get_nowait()
            lost += 1
            log.error("not written at shutdown: session %s (%d messages)",
                      item.write.keys.logical, len(item.write.messages))
            if not item.done.done():
                item.done.set_exception(StoreUnavailable("shut down before flushing"))
        log.info("flusher stopped: %d batches, %d writes, %d not written",
                 self.batches, self.writes, lost)


def _succeeded(reply: Any) -> bool:
    """Whether a write script's reply says it wrote (not refused, not failed)."""
    return not isinstance(reply, Exception) and int(reply[0]) == 1
