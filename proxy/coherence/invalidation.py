"""Cache invalidation across proxies: every write script PUBLISHes
"<version> <revoked lease holders or -> <meta key>" (version 0 for a DELETE) on
``<prefix>:invalidate``, and each proxy listens.

A proxy named among the revoked holders drops its old copy, then announces
"<version> <holder> <meta key>" on ``<prefix>:released``, which the writer waits for before
acknowledging (leases.py). Cached tails are trusted without asking Redis only while this
subscription is up and a lease is held; sessions with a TTL, whose expiry publishes nothing,
are checked in Redis on every read. When the subscription breaks, every cached tail and
lease is dropped (messages may have been missed), and it reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import redis.asyncio as aioredis
from cachetools import LRUCache
from redis.exceptions import RedisError

from proxy.coherence.leases import Leases
from proxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("proxy.coherence.invalidation")

RECENT_EVENTS = 100_000  # per-key memory of the last message, for reads racing a message


class Invalidation:
    def __init__(self, redis: aioredis.Redis, prefix: str, leases: Leases,
                 on_change: Callable[[str, int], None], on_reset: Callable[[], None]) -> None:
        self.redis = redis
        self.leases = leases
        self.channel = f"{prefix}:invalidate"
        self.released_channel = f"{prefix}:released"
        self.on_change = on_change
        self.on_reset = on_reset
        self.healthy = False
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
        current: the subscription is up and no later message names another version."""
        if not self.healthy:
            return False
        last = self._last.get(meta_key)
        return last is None or last[1] <= since or last[0] == version

    async def _run(self) -> None:
        # A connection of its own, outside the pool, read by hand: redis-py's PubSub would
        # reconnect silently, hiding the gap in which messages were lost.
        while True:
            conn = self.redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()
                await conn.send_command("SUBSCRIBE", self.channel, self.released_channel)
                subscribed = 0
                while True:
                    # math.inf: block without the socket timeout; push: RESP3 delivers
                    # pub/sub as push frames.
                    kind, channel, data = await conn.read_response(timeout=math.inf,
                                                                   push_request=True)
                    if kind == b"subscribe":
                        subscribed += 1
                        self.healthy = subscribed == 2
                        if self.healthy:
                            log.info("listening for invalidations on %s", self.channel)
                    elif kind == b"message" and channel == self.channel.encode():
                        self._receive(data)
                    elif kind == b"message":
                        version, holder, key = data.decode().split(" ", 2)
                        self.leases.release_seen(key, int(version), holder)
            except (RedisError, OSError) as exc:
                log.warning("invalidation subscription lost (%r); dropping cached tails", exc)
            finally:
                self.healthy = False
                self.leases.clear()
                self.on_reset()
                await conn.disconnect()
            await asyncio.sleep(0.5)

    def _receive(self, data: bytes) -> None:
        version_text, holders, key = data.decode().split(" ", 2)
        version = int(version_text)
        self.seq += 1
        self._last[key] = (version, self.seq)
        self.on_change(key, version)
        if self.leases.holder in holders.split(","):
            self.leases.revoked(key)
            # After the lines above no read here serves the old version: say so.
            spawn(self._release(f"{version} {self.leases.holder} {key}"), name="release")

    async def _release(self, message: str) -> None:
        try:
            await self.redis.publish(self.released_channel, message)
        except (RedisError, OSError) as exc:  # the writer waits out the lease instead
            log.warning("could not announce a lease release: %r", exc)
