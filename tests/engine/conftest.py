"""Fixtures of the engine tests."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.localstack import Service
from tests.conftest import ProxyFactory
from tests.engine_fixtures import SIZE, Message, keys_of, msgs, own_client, own_redis, put_ok

__all__ = ["own_client", "own_redis"]


@pytest.fixture
async def big_session(proxy_factory: ProxyFactory, own_redis: Service,
                      own_client: aioredis.Redis) -> tuple[TestClient[Any, Any], list[Message]]:
    """A 50,000-message session, written with one PUT through a proxy."""
    proxy = await proxy_factory(redis_url=own_redis.url)
    history = msgs(SIZE)
    await put_ok(proxy, "big", {"messages": history})
    assert await own_client.llen(keys_of("big").messages) == SIZE
    return proxy, history
