"""Helpers of the coherence tests: proxies with read leases, and Redis command counts."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.coherence import LeasedCoherence
from proxy.http.appkeys import COHERENCE
from tests.conftest import ProxyFactory, app_of

Client = TestClient[Any, Any]


def coherence(client: Client) -> LeasedCoherence:
    coherence = app_of(client)[COHERENCE]
    assert isinstance(coherence, LeasedCoherence)
    return coherence


async def healthy(client: Client) -> None:
    inv = coherence(client).invalidation
    assert inv is not None
    for _ in range(100):
        if inv.healthy:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("invalidation subscription did not come up")


async def commands(redis: aioredis.Redis) -> int:
    info = await redis.info("stats")
    return int(info["total_commands_processed"])


async def two_proxies(proxy_factory: ProxyFactory, **settings: Any) -> tuple[Client, Client]:
    a, b = await proxy_factory(**settings), await proxy_factory(**settings)
    await healthy(a)
    await healthy(b)
    return a, b
