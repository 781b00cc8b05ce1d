"""Read leases: how a proxy answers warm reads without asking Redis and still returns every
write acknowledged through any other proxy.

A proxy holding a lease on a session (granted with the version check, scripts.LEASE, or by
its own write) serves that session's reads from its cache until the lease ends. A write
through another proxy ends the lease inside the script that changes the session and
announces it; this proxy drops the old version and announces that in turn; the writer
acknowledges its client only after that announcement, or after the lease has run out (this
proxy may be gone). So the next read here, started after that acknowledgement, cannot be
served the old version.

Lease times are Redis's clock for the writer and this process's monotonic clock for the
holder, counted from before the grant was asked for, and cut short by a margin: the holder
always stops trusting before the writer stops waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from cachetools import LRUCache

from proxy.errors import StoreUnavailable
from proxy.observability.metrics import Metrics
from proxy.store.store import Revocation
from proxy.tasks import spawn

log = logging.getLogger("proxy.coherence.leases")

MARGIN = 0.9  # the holder trusts a lease for this share of its length
REMEMBERED = 100_000  # leases held, and releases seen before their writer asked


class Leases:
    def __init__(self, holder: str, length_ms: int, metrics: Metrics | None = None) -> None:
        self.holder = holder
        m = metrics if metrics is not None else Metrics()
        self._grants, self._revocations = m.lease_grants, m.lease_revocations
        self.length_ms = length_ms
        # meta key -> deadline, in grant order: the oldest grant is the first to end, so
        # past REMEMBERED the first one goes (a plain dict: a read costs one lookup).
        self._until: dict[str, float] = {}
        self._waiting: dict[tuple[str, int, str], asyncio.Future[None]] = {}
        self._released: LRUCache[tuple[str, int, str], bool] = LRUCache(REMEMBERED)
        self._renewing: set[str] = set()

    # --- the holder's side ----------------------------------------------------------

    def live(self, meta_key: str) -> bool:
        until = self._until.get(meta_key)
        return until is not None and time.monotonic() < until

    def granted(self, meta_key: str, asked_at: float) -> None:
        """Redis granted a lease asked for at monotonic time ``asked_at``."""
        until = self._until
        until.pop(meta_key, None)
        until[meta_key] = asked_at + self.length_ms / 1000 * MARGIN
        if len(until) > REMEMBERED:
            del until[next(iter(until))]
        self._grants.inc()

    def renew_if_due(self, meta_key: str, version: int,
                     ask: Callable[[], Awaitable[int]]) -> None:
        """Past half its length, renew a lease in the background (``ask`` takes one and
        returns the session's version), so a session read steadily never waits for one."""
        until = self._until.get(meta_key)
        if until is None or meta_key in self._renewing:
            return
        if until - time.monotonic() > self.length_ms / 1000 * MARGIN / 2:
            return
        self._renewing.add(meta_key)
        spawn(self._renew(meta_key, version, ask), name="lease renewal")

    async def _renew(self, meta_key: str, version: int,
                     ask: Callable[[], Awaitable[int]]) -> None:
        try:
            asked_at = time.monotonic()
            # An unchanged version means no write came between: the cached copy stays good.
            if await ask() == version:
                self.granted(meta_key, asked_at)
        except StoreUnavailable as exc:  # the next read checks in Redis instead
            log.debug("lease renewal failed: %r", exc)
        finally:
            self._renewing.discard(meta_key)

    def ended(self, meta_key: str) -> None:
        self._until.pop(meta_key, None)

    def revoked(self, meta_key: str) -> None:
        """Another proxy's write ended this proxy's lease."""
        self.ended(meta_key)
        self._revocations.inc()

    def clear(self) -> None:
        self._until.clear()

    # --- the writer's side ----------------------------------------------------------

    def release_seen(self, meta_key: str, version: int, holder: str) -> None:
        """``holder`` announced it dropped what preceded ``version`` of this session."""
        key = (meta_key, version, holder)
        waiter = self._waiting.get(key)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        else:  # the announcement beat the writer's own reply
            self._released[key] = True

    async def released(self, meta_key: str, revocation: Revocation) -> None:
        """Wait until every revoked holder has released, or its lease has run out."""
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[None]] = []
        keys = [(meta_key, revocation.version, h) for h in revocation.holders]
        for key in keys:
            if self._released.pop(key, False):
                continue
            waiter = self._waiting[key] = loop.create_future()
            waiters.append(waiter)
        try:
            if waiters:
                # A little past the lease's end, measured from after the write: by then
                # the holder has stopped trusting its copy.
                await asyncio.wait(waiters, timeout=revocation.wait_s + 0.005)
        finally:
            for key in keys:
                self._waiting.pop(key, None)
