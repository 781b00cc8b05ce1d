"""A gap in the invalidation subscription: leases already held stay trusted for at most
their length (a missed revocation only makes its writer wait the lease out), and a Redis
that comes back with another run id (restarted, its lease records gone) makes the proxy
drop every cached tail and lease."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from proxy.localstack import ProcessGroup, Service, Stack, free_port, start_redis
from tests.coherence import leased
from tests.conftest import ProxyFactory
from tests.engine_fixtures import messages, msgs, put


async def until(check: object, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


READS = ("hget", "hgetall", "lrange", "getrange", "evalsha", "exec")


async def session_reads(redis: aioredis.Redis) -> int:
    """Commands that read a session (the listener's own reconnection aside)."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in READS)


async def test_leases_outlive_a_short_gap(proxy_factory: ProxyFactory,
                                          redis_client: aioredis.Redis) -> None:
    a, b = await leased.two_proxies(proxy_factory)
    assert await put(a, "gap", {"messages": msgs(3)}) == 200
    assert await messages(b, "gap") == msgs(3)  # cached (a miss reads, it leases nothing)
    assert await messages(b, "gap") == msgs(3)  # the version checked, and leased
    inv = leased.coherence(b).invalidation
    await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    await until(lambda: not inv.healthy)
    before = await session_reads(redis_client)
    assert await messages(b, "gap", "recent_messages_limit=2") == msgs(3)[-2:]
    assert await session_reads(redis_client) == before  # served from the cache
    await leased.healthy(b)  # the same server again: nothing dropped
    assert await messages(b, "gap") == msgs(3)
    assert await session_reads(redis_client) == before


@pytest.fixture
def own_server(stack: Stack, processes: ProcessGroup) -> Iterator[tuple[int, Service]]:
    port = free_port()
    service = start_redis(processes, stack, "gap-redis", port=port, modules=False)
    yield port, service
    processes.stop(service)


async def test_a_restarted_redis_drops_cached_tails_and_leases(
        proxy_factory: ProxyFactory, stack: Stack, processes: ProcessGroup,
        own_server: tuple[int, Service]) -> None:
    port, service = own_server
    a, b = await leased.two_proxies(proxy_factory, redis_url=service.url)
    assert await put(a, "gone", {"messages": msgs(2)}) == 200
    assert await messages(b, "gone") == msgs(2)
    assert await messages(b, "gone") == msgs(2)  # leased
    inv = leased.coherence(b).invalidation
    processes.stop(service)  # no persistence: the session and B's lease record go with it
    await until(lambda: not inv.healthy)
    restarted = start_redis(processes, stack, "gap-redis-2", port=port, modules=False)
    try:
        await leased.healthy(b)
        assert await messages(b, "gone") is None  # not the copy B cached
    finally:
        processes.stop(restarted)
