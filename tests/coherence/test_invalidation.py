"""The invalidation listener: a lost subscription drops what it can no longer vouch for."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from tests.coherence import leased
from tests.conftest import ProxyFactory
from tests.engine_fixtures import messages, msgs, put

Client = TestClient[Any, Any]


async def test_sessions_with_a_ttl_are_always_checked(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    b = await proxy_factory()
    await leased.healthy(b)
    assert await put(b, "ttl", {"messages": msgs(3), "ttl_seconds": 600}) == 200
    assert await messages(b, "ttl") == msgs(3)
    before = await leased.commands(redis_client)
    assert await messages(b, "ttl") == msgs(3)
    assert await leased.commands(redis_client) - before >= 2  # the version check, then INFO
    # Expiry publishes nothing, yet the next read sees it.
    await redis_client.delete(*[k async for k in redis_client.scan_iter("amp:*:m*")])
    assert await messages(b, "ttl") is None


async def test_lost_subscription_falls_back_to_checks(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a, b = await leased.two_proxies(proxy_factory)
    assert await put(a, "lost", {"messages": msgs(4)}) == 200
    assert await messages(b, "lost") == msgs(4)
    assert await messages(b, "lost") == msgs(4)
    await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    inv = leased.coherence(b).invalidation
    assert inv is not None
    for _ in range(2000):  # B notices the lost subscription (at once, unless loaded)
        if not inv.healthy:
            break
        await asyncio.sleep(0.005)
    # While B is unsubscribed it must not trust its cache; a write it cannot hear about
    # is still what it returns.
    assert await put(a, "lost", {"messages": msgs(6)}) == 200
    assert await messages(b, "lost") == msgs(6)
    await leased.healthy(b)  # and it subscribes again
    assert await messages(b, "lost") == msgs(6)
