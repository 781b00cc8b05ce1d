"""Cross-proxy cache invalidation: warm reads skip Redis only while it is safe."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.appkeys import ENGINE
from tests.conftest import ProxyFactory
from tests.engine_fixtures import msgs
from tests.test_replicas import messages, put

Client = TestClient[Any, Any]


async def _healthy(client: Client) -> None:
    inv = client.server.app[ENGINE].invalidation
    assert inv is not None
    for _ in range(100):
        if inv.healthy:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("invalidation subscription did not come up")


async def _announced(client: Client, seen: int) -> None:
    """Wait until ``client`` has received an announcement after the ``seen``-th."""
    inv = client.server.app[ENGINE].invalidation
    assert inv is not None
    for _ in range(100):
        if inv.seq > seen:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no invalidation arrived")


def _seq(client: Client) -> int:
    inv = client.server.app[ENGINE].invalidation
    assert inv is not None
    return inv.seq


async def _commands(redis: aioredis.Redis) -> int:
    info = await redis.info("stats")
    return int(info["total_commands_processed"])


async def test_warm_read_skips_redis_and_sees_other_writers(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a, b = await proxy_factory(invalidation=True), await proxy_factory(invalidation=True)
    await _healthy(a)
    await _healthy(b)
    history = msgs(10)
    assert await put(a, "inv", {"messages": history}) == 200
    assert await messages(b, "inv") == history  # B caches it
    before = await _commands(redis_client)
    for _ in range(5):
        assert await messages(b, "inv", "recent_messages_limit=3") == history[-3:]
    # Only the INFO call itself: B answered five warm reads without Redis.
    assert await _commands(redis_client) - before <= 1
    # Once A's write is announced, B returns it, though B asks Redis nothing first.
    seen = _seq(b)
    assert await put(a, "inv", {"messages": history + msgs(2, 10)}) == 200
    await _announced(b, seen)
    assert await messages(b, "inv") == history + msgs(2, 10)
    # So is a delete.
    seen = _seq(b)
    resp = await a.delete("/v1/working-memory/inv")
    assert resp.status == 200
    await _announced(b, seen)
    assert await messages(b, "inv") is None


async def test_sessions_with_a_ttl_are_always_checked(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    b = await proxy_factory(invalidation=True)
    await _healthy(b)
    assert await put(b, "ttl", {"messages": msgs(3), "ttl_seconds": 600}) == 200
    assert await messages(b, "ttl") == msgs(3)
    before = await _commands(redis_client)
    assert await messages(b, "ttl") == msgs(3)
    assert await _commands(redis_client) - before >= 2  # the version check, then INFO
    # Expiry publishes nothing, yet the next read sees it.
    await redis_client.delete(*[k async for k in redis_client.scan_iter("amp:*:m*")])
    assert await messages(b, "ttl") is None


async def test_lost_subscription_falls_back_to_checks(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a, b = await proxy_factory(invalidation=True), await proxy_factory(invalidation=True)
    await _healthy(b)
    assert await put(a, "lost", {"messages": msgs(4)}) == 200
    assert await messages(b, "lost") == msgs(4)
    await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    inv = b.server.app[ENGINE].invalidation
    assert inv is not None
    for _ in range(100):  # B notices the lost subscription
        if not inv.healthy:
            break
        await asyncio.sleep(0.005)
    # While B is unsubscribed it must not trust its cache; a write it cannot hear about
    # is still what it returns.
    assert await put(a, "lost", {"messages": msgs(6)}) == 200
    assert await messages(b, "lost") == msgs(6)
    await _healthy(b)  # and it subscribes again
    assert await messages(b, "lost") == msgs(6)
