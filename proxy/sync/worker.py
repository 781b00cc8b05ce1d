"""The upstream sync's loop: claim due sessions from the ledger, run their rounds behind the
hot path (at most ``concurrency`` here and ``limit`` across all proxies), keep the claims
alive while they run, and report the backlog and the lag.

Nothing here waits on a client request, and no request waits on it: a write only adds a
due mark after its script (store.py, engine/flusher.py). The loop talks to Redis only when
a ledger shard is due, at a rescan of all shards (every ``rescan_ms``: marks written by
other proxies), or when a write of this proxy made a session due sooner (ledger.py). A
round that fails is retried with backoff; one that outlives its deadline is abandoned and
retried. On shutdown, rounds get a moment to finish; the rest give their claims back, so a
restarted or another proxy takes them over at once rather than when the claims run out.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass

from redis.exceptions import RedisError

from proxy.config import Settings
from proxy.engine.engine import Engine
from proxy.observability.metrics import Metrics
from proxy.sync.handover import HandOver, Result, retry_delay
from proxy.sync.hooks import SyncHooks
from proxy.sync.ledger import Claim, Ledger
from proxy.tasks import cancel_and_wait, spawn
from proxy.upstream.credentials import acting_as_proxy

log = logging.getLogger("proxy.sync")

SAMPLE_S = 1.0  # backlog and lag gauges
REPORT_S = 60.0  # the periodic log line
# The unsharded ledger of earlier versions is read at start and this often after: what
# proxies of such a version still mark during a rolling upgrade is taken over too.
LEGACY_S = 60.0


@dataclass(slots=True)
class _Running:
    claim: Claim
    task: asyncio.Task[None]


class SyncWorker:
    def __init__(self, ledger: Ledger, handover: HandOver, metrics: Metrics, *,
                 concurrency: int, quiet_ms: float, max_lag_ms: float,
                 deadline_s: float) -> None:
        self.ledger = ledger
        self.handover = handover
        self.metrics = metrics
        self.concurrency = concurrency
        self.poll_s = min(max(quiet_ms / 4000, 0.01), 0.25)
        self.max_lag_s = max_lag_ms / 1000
        self.deadline_s = deadline_s
        self.results: Counter[str] = Counter()  # rounds by result, since start
        self.slowest = 0.0  # seconds, the longest round since start
        self.busy_s = 0.0  # seconds spent in rounds since start
        self._running: dict[bytes, _Running] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        ledger.on_due = self._wake.set

    @classmethod
    def build(cls, settings: Settings, hooks: SyncHooks, engine: Engine,
              metrics: Metrics) -> SyncWorker:
        """The worker (not yet started) that runs the rounds of what ``hooks``' ledger
        holds due, for ``engine`` (which was given the same hooks)."""
        return cls(hooks.ledger,
                   HandOver(engine, hooks.records, metrics, hooks.settle_delay_ms), metrics,
                   concurrency=settings.sync_concurrency, quiet_ms=settings.sync_quiet_ms,
                   max_lag_ms=settings.sync_max_lag_ms, deadline_s=hooks.deadline_s)

    def start(self) -> None:
        self._tasks = [spawn(self._claim_loop(), "sync-claims"),
                       spawn(self._renew_loop(), "sync-renew"),
                       spawn(self._report_loop(), "sync-report")]

    @property
    def running(self) -> int:
        return len(self._running)

    async def _claim_loop(self) -> None:
        adopt_at = 0.0
        while not self._closing:
            if (now := asyncio.get_running_loop().time()) >= adopt_at:
                adopt_at = now + LEGACY_S
                try:
                    await self.ledger.adopt_legacy()
                except (RedisError, OSError) as exc:
                    log.warning("could not read the unsharded sync ledger: %r", exc)
            wait = self.poll_s
            self._wake.clear()  # before claiming: a mark noted meanwhile wakes the wait
            free = self.concurrency - len(self._running)
            if free > 0:
                try:
                    claimed = await self.ledger.claim(free)
                except (RedisError, OSError) as exc:
                    log.warning("sync ledger unreachable: %r", exc)
                    await asyncio.sleep(1.0)
                    continue
                for claim in claimed.claims:
                    self._start(claim, claim.claimed_ms)
                if claimed.next_due_ms is not None:
                    wait = min(wait, max(0.002, (claimed.next_due_ms - claimed.now_ms) / 1000))
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    def _start(self, claim: Claim, claimed_ms: int) -> None:
        task = spawn(self._round(claim, claimed_ms), f"sync:{claim.member.decode()}")
        self._running[claim.member] = _Running(claim, task)

    async def _round(self, claim: Claim, claimed_ms: int) -> None:
        started = asyncio.get_running_loop().time()
        try:
            try:
                with acting_as_proxy():
                    async with asyncio.timeout(self.deadline_s):
                        result = await self.handover.run(claim, claimed_ms)
            except TimeoutError:
                log.warning("hand-over of %s took over %.0f s; abandoned, retrying",
                            claim.member.decode(), self.deadline_s)
                result = Result("retry", "failed", retry_delay(claim.failures), claim.step)
            except Exception:  # noqa: BLE001 - one session's bug must not stop the sync
                log.exception("hand-over of %s failed", claim.member.decode())
                result = Result("retry", "failed", retry_delay(claim.failures), claim.step)
            self.results[result.label] += 1
            self.metrics.sync_handovers.labels(result.label).inc()
            took = asyncio.get_running_loop().time() - started
            self.metrics.sync_round_duration.observe(took)
            self.slowest, self.busy_s = max(self.slowest, took), self.busy_s + took
            try:
                await self.ledger.done(claim, result.outcome, result.delay_ms, result.step)
            except (RedisError, OSError) as exc:  # the claim runs out; it is taken again
                log.warning("could not end the claim on %s: %r", claim.member.decode(), exc)
        finally:
            self._running.pop(claim.member, None)
            self._wake.set()

    async def _renew_loop(self) -> None:
        every = self.ledger.lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            try:
                lost = await self.ledger.renew([r.claim for r in self._running.values()])
            except (RedisError, OSError) as exc:
                log.warning("could not renew sync claims: %r", exc)
                continue
            for member in lost:
                log.warning("claim on %s ran out while its round ran", member.decode())

    async def _report_loop(self) -> None:
        last_report, reported = asyncio.get_running_loop().time(), Counter[str]()
        while True:
            await asyncio.sleep(SAMPLE_S)
            try:
                backlog, lag = await self.ledger.backlog()
            except (RedisError, OSError):
                continue
            self.metrics.sync_backlog.set(backlog)
            self.metrics.sync_lag.set(lag)
            now = asyncio.get_running_loop().time()
            behind = lag > 3 * self.max_lag_s
            if now - last_report >= REPORT_S or (behind and now - last_report >= 10):
                done = self.results - reported
                (log.warning if behind else log.info)(
                    "upstream sync: %d sessions behind, oldest change %.1f s old; "
                    "last %.0f s: %d handed over, %d already in sync, %d failed", backlog,
                    lag, now - last_report, done["ok"], done["unchanged"], done["failed"])
                last_report, reported = now, Counter(self.results)

    async def close(self, grace_s: float) -> None:
        """Stop claiming; let running rounds finish within ``grace_s``; give back the
        claims of the rest."""
        self._closing = True
        self._wake.set()
        await cancel_and_wait(self._tasks[0] if self._tasks else None)
        if self._running:
            await asyncio.wait([r.task for r in self._running.values()], timeout=grace_s)
        left = list(self._running.values())
        for running in left:
            await cancel_and_wait(running.task)
        for running in left:
            try:
                await self.ledger.done(running.claim, "retry", 0, running.claim.step)
            except (RedisError, OSError):
                pass
        for task in self._tasks[1:]:
            await cancel_and_wait(task)
        log.info("upstream sync stopped (%d rounds given back)", len(left))
