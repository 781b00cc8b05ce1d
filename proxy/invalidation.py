"""Cache invalidation across proxies: every write script PUBLISHes "<meta key> <version>"
(version 0 for a DELETE) on ``<prefix>:invalidate``, and each proxy listens.

While the subscription is up, a cached tail that no message has contradicted is served
without asking Redis for its version: the message leaves Redis in the same step as the
writer's acknowledgement, one hop from here, while a client that saw that
acknowledgement needs two more hops (to the writer's client and back to this proxy)
before it can ask. Sessions with a TTL, whose expiry publishes nothing, are still checked
in Redis on every read; so is everything while the subscription is down. When the
subscription breaks, every cached tail is dropped (messages may have been missed), and it
reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

import redis.asyncio as aioredis
from cachetools import LRUCache
from redis.exceptions import RedisError

from proxy.tasks import cancel_and_wait, spawn

log = logging.getLogger("proxy.invalidation")

RECENT_EVENTS = 100_000  # per-key memory of the last message, for reads racing a message


class Invalidation:
    def __init__(self, redis: aioredis.Redis, prefix: str,
                 on_change: Callable[[str, int], None], on_reset: Callable[[], None]) -> None:
        self.redis = redis
        self.channel = f"{prefix}:invalidate"
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
                await conn.send_command("SUBSCRIBE", self.channel)
                while True:
                    # math.inf: block without the socket timeout; push: RESP3 delivers
                    # pub/sub as push frames.
                    kind, _channel, data = await conn.read_response(timeout=math.inf,
                                                                    push_request=True)
                    if kind == b"subscribe":
                        self.healthy = True
                        log.info("listening for invalidations on %s", self.channel)
                    elif kind == b"message":
                        self._receive(data)
            except (RedisError, OSError) as exc:
                log.warning("invalidation subscription lost (%r); dropping cached tails", exc)
            finally:
                self.healthy = False
                self.on_reset()
                await conn.disconnect()
            await asyncio.sleep(0.5)

    def _receive(self, data: bytes) -> None:
        key, _, version_text = data.decode().rpartition(" ")
        version = int(version_text)
        self.seq += 1
        self._last[key] = (version, self.seq)
        self.on_change(key, version)
