"""Reads of the last k messages cost what they return, warm or cold."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.localstack import Service
from tests import engine_fixtures as ef
from tests.conftest import ProxyFactory
from tests.engine_fixtures import Message, Meter

own_redis = ef.own_redis
put, get, keys_of, SIZE, KB = ef.put_ok, ef.get_ok, ef.keys_of, ef.SIZE, ef.KB


own_client = ef.own_client


async def test_recent_get_reads_a_few_kilobytes_warm_and_cold(
        big_session: tuple[TestClient[Any, Any], list[Message]],
        proxy_factory: ProxyFactory, own_redis: Service, own_client: aioredis.Redis) -> None:
    proxy, history = big_session
    meter = Meter(own_client)
    stored = await own_client.memory_usage(keys_of("big").messages)
    assert stored is not None and stored > 5_000 * KB

    await meter.reset()
    warm = await get(proxy, "big", "recent_messages_limit=10")
    warm_usage = await meter.read()
    assert warm["messages"] == history[-10:]
    assert warm_usage.bytes_out < 1 * KB, warm_usage
    assert warm_usage.total_calls <= 2, warm_usage.calls

    cold_proxy = await proxy_factory(redis_url=own_redis.url)  # a new app: empty cache
    await meter.reset()
    cold = await get(cold_proxy, "big", "recent_messages_limit=10")
    cold_usage = await meter.read()
    assert cold["messages"] == history[-10:]
    assert cold_usage.bytes_out < 8 * KB, cold_usage
    assert cold_usage.count("lrange") == 1 and cold_usage.total_calls <= 6, cold_usage.calls

    # Truncation by a context window also reads only the tail it returns.
    await meter.reset()
    window = await get(cold_proxy, "big", "recent_messages_limit=10&context_window_max=30")
    assert 1 <= len(window["messages"]) < 10
    assert window["messages"] == history[-len(window["messages"]):]
    assert (await meter.read()).bytes_out < 1 * KB
    print(f"\nGET recent 10 of {SIZE}: warm {warm_usage}, cold {cold_usage}")
