"""One object answers "may this cached copy be served without asking Redis?" and keeps the
writer's side of that promise: read leases (leases.py) plus the invalidation listener
(invalidation.py), behind a small interface the engine and the flusher call.

``Coherence`` itself is the null version, for ``read_lease_ms = 0``: nothing is trusted,
every read asks Redis for the version, writes wait for nobody. ``LeasedCoherence`` adds
the leases.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio.cluster import RedisCluster

from proxy.coherence.invalidation import Invalidation
from proxy.coherence.leases import Leases
from proxy.coherence.sharded import ShardedInvalidation
from proxy.observability.metrics import Metrics
from proxy.store.connect import RedisClient
from proxy.store.keys import SessionKeys
from proxy.store.store import Revocation, Store


class Cached(Protocol):
    """What coherence needs to know of a cached session."""

    @property
    def keys(self) -> SessionKeys: ...
    @property
    def version(self) -> int: ...
    @property
    def expires(self) -> bool: ...
    @property
    def checked(self) -> int: ...


class Coherence:
    """Read leases off (``read_lease_ms = 0``): nothing is trusted without asking Redis,
    every read checks the version (one HGET), writes wait for nobody."""

    waits_for_release = False

    def __init__(self, store: Store) -> None:
        self.store = store

    def seen(self) -> int:
        """Invalidation messages received so far (-1: none are listened to)."""
        return -1

    def trusted(self, entry: Cached) -> bool:
        """Whether ``entry`` may be served without asking Redis."""
        return False

    async def check_version(self, keys: SessionKeys) -> int:
        """The stored version (0: none)."""
        return await self.store.version(keys)

    def after_write(self, keys: SessionKeys, asked_at: float) -> None:
        """This proxy's own write landed (asked for at monotonic time ``asked_at``)."""

    async def after_delete(self, keys: SessionKeys, revocation: Revocation) -> None:
        """This proxy deleted the session; ``revocation`` names the leases that ended."""

    async def await_release(self, meta_key: str, revocation: Revocation) -> None:
        """Until every revoked holder dropped the old version (or its lease ran out)."""

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class LeasedCoherence(Coherence):
    """Read leases: warm reads ask Redis nothing while a lease is held and no invalidation
    contradicts it; writes through other proxies wait for this one to drop its copy."""

    waits_for_release = True

    def __init__(self, store: Store, redis: RedisClient, prefix: str, lease_ms: int,
                 on_change: Callable[[str, int], None], on_reset: Callable[[], None],
                 metrics: Metrics | None = None) -> None:
        super().__init__(store)
        self.leases = Leases(store.holder, lease_ms, metrics)
        # On a cluster, sharded pub/sub: per-slot channels, one listener per master.
        self.invalidation = (
            ShardedInvalidation(redis, prefix, self.leases, on_change, on_reset)
            if isinstance(redis, RedisCluster)
            else Invalidation(redis, prefix, self.leases, on_change, on_reset))

    def seen(self) -> int:
        return self.invalidation.seq

    def trusted(self, entry: Cached) -> bool:
        """Current without asking Redis: a lease is held, no invalidation since contradicts
        it, and it cannot expire unseen. A lease past half its life is renewed behind."""
        meta_key = entry.keys.meta
        if entry.expires or not self.leases.live(meta_key) or not self.invalidation.trusts(
                meta_key, entry.version, entry.checked):
            return False
        keys = entry.keys
        self.leases.renew_if_due(meta_key, entry.version, lambda: self.store.lease(keys))
        return True

    async def check_version(self, keys: SessionKeys) -> int:
        """The stored version (0: none), taking a read lease on it while revocations can
        be heard (a lease is only worth holding while its revocation reaches us)."""
        if not self.invalidation.healthy:
            return await self.store.version(keys)
        asked_at = time.monotonic()
        version = await self.store.lease(keys)
        if version:
            self.leases.granted(keys.meta, asked_at)
        return version

    def after_write(self, keys: SessionKeys, asked_at: float) -> None:
        self.leases.granted(keys.meta, asked_at)  # the write script granted one

    async def after_delete(self, keys: SessionKeys, revocation: Revocation) -> None:
        self.leases.ended(keys.meta)  # the delete took this proxy's lease along
        if revocation.holders:
            await self.leases.released(keys.meta, revocation)

    async def await_release(self, meta_key: str, revocation: Revocation) -> None:
        await self.leases.released(meta_key, revocation)

    def start(self) -> None:
        self.invalidation.start()

    async def close(self) -> None:
        await self.invalidation.close()

