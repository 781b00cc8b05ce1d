"""Cache invalidation across proxies: every write script PUBLISHes
"<version> <revoked lease holders or -> <meta key>" (version 0 for a DELETE) on
``<prefix>:invalidate``, and each proxy listens.

A proxy named among the revoked holders drops its old copy, then announces
"<version> <holder> <meta key>" on ``<prefix>:released``, which the writer waits for before
acknowledging (leases.py). Cached tails are trusted without asking Redis only while this
subscription is up and a lease is held; sessions with a TTL, whose expiry publishes nothing,
are checked in Redis on every read.

When the subscription breaks, messages may be missed, but a missed revocation costs no
correctness: its writer waits for the release or for the lease to run out. What a gap can
cost is the lease *records*: a Redis that restarted without them, or a replica promoted
before it had them, lets a writer go on without waiting. So leases already held stay
trusted through a gap for at most ``grace`` seconds (the lease length on one server; on a
cluster also less than half the failover time, so a promoted replica cannot beat it), no
new lease is taken, and once subscribed again to servers of another incarnation (run id:
a restart or a failover), every cached tail and lease is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from cachetools import LRUCache
from redis.exceptions import RedisError

from proxy.coherence.leases import Leases
from proxy.store.connect import RedisClient
from proxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("proxy.coherence.invalidation")

RECENT_EVENTS = 100_000  # per-key memory of the last message, for reads racing a message
RECONNECT_S = 0.5  # between attempts to subscribe again


class Invalidation:
    def __init__(self, redis: RedisClient, prefix: str, leases: Leases,
                 on_change: Callable[[str, int], None], on_reset: Callable[[], None]) -> None:
        self.redis = redis
        self.leases = leases
        self.channel = f"{prefix}:invalidate"
        self.released_channel = f"{prefix}:released"
        self.on_change = on_change
        self.on_reset = on_reset
        self.healthy = False
        self.grace = leases.length_ms / 1000  # leases trusted through a gap (see above)
        self._gap_ends = 0.0  # monotonic time until which the current gap is tolerated
        self._incarnation: object = None  # the servers subscribed to last time
        self.seq = 0  # messages received so far
        self._last: LRUCache[str, tuple[int, int]] = LRUCache(RECENT_EVENTS)  # key -> (v, seq)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = spawn(self._run(), name="invalidation")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self.healthy = False

    def trusts(self, meta_key: str, version: int, since: int) -> bool:
        """Whether a tail at ``version``, known good when ``seq`` was ``since``, is still
        current: the subscription is up (or went down less than ``grace`` ago) and no
        later message names another version."""
        if not self.healthy and time.monotonic() >= self._gap_ends:
            return False
        last = self._last.get(meta_key)
        return last is None or last[1] <= since or last[0] == version

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisError, OSError) as exc:
                log.warning("invalidation subscription lost (%r)", exc)
            finally:
                if self.healthy:
                    self._gap_ends = time.monotonic() + self.grace
                self.healthy = False
            await asyncio.sleep(RECONNECT_S)

    def _subscribed(self, incarnation: object) -> None:
        """Every channel is subscribed, on servers identified by ``incarnation``."""
        if self._incarnation is not None and incarnation != self._incarnation:
            log.warning("redis restarted or failed over; dropping cached tails and leases")
            self.leases.clear()
            self.on_reset()
        self._incarnation = incarnation
        self.healthy = True

    async def _listen(self) -> None:
        # A connection of its own, outside the pool, read by hand: redis-py's PubSub would
        # reconnect silently, hiding the gap in which messages were lost.
        assert isinstance(self.redis, aioredis.Redis)  # one server (sharded.py: a cluster)
        conn = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.connect()
            incarnation = await run_id(conn)
            await conn.send_command("SUBSCRIBE", self.channel, self.released_channel)
            subscribed = 0
            while True:
                # math.inf: block without the socket timeout; push: RESP3 delivers
                # pub/sub as push frames.
                kind, channel, data = await conn.read_response(timeout=math.inf,
                                                               push_request=True)
                if kind == b"subscribe":
                    subscribed += 1
                    if subscribed == 2:
                        self._subscribed(incarnation)
                        log.info("listening for invalidations on %s", self.channel)
                elif kind == b"message" and channel == self.channel.encode():
                    self._receive(data)
                elif kind == b"message":
                    self._release_seen(data)
        finally:
            await conn.disconnect()

    def _release_seen(self, data: bytes) -> None:
        version, holder, key = data.decode().split(" ", 2)
        self.leases.release_seen(key, int(version), holder)

    def _receive(self, data: bytes) -> None:
        version_text, holders, key = data.decode().split(" ", 2)
        version = int(version_text)
        self.seq += 1
        self._last[key] = (version, self.seq)
        self.on_change(key, version)
        if self.leases.holder in holders.split(","):
            self.leases.revoked(key)
            # After the lines above no read here serves the old version: say so.
            spawn(self._release(version, key), name="release")

    async def _release(self, version: int, key: str) -> None:
        try:
            await self._announce_release(f"{version} {self.leases.holder} {key}", key)
        except (RedisError, OSError) as exc:  # the writer waits out the lease instead
            log.warning("could not announce a lease release: %r", exc)

    async def _announce_release(self, message: str, meta_key: str) -> None:
        await self.redis.publish(self.released_channel, message)


async def run_id(conn: Any) -> str:
    """The run id of the server behind ``conn`` (new after every restart)."""
    await conn.send_command("INFO", "server")
    info = await conn.read_response()
    text = info.decode() if isinstance(info, bytes) else str(info)
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("run_id:")), "")
