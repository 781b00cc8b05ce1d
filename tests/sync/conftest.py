"""A proxy with the upstream sync on, on the emptied proxy Redis, in front of the shared
upstream (long-term memory off: these tests are about what is handed over, not about
what the upstream makes of it; tests/system/test_sync_*.py run it with memory on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.app import SYNC
from proxy.http.appkeys import ENGINE, METRICS
from tests.conftest import ProxyFactory

SyncProxy = Callable[..., Awaitable[TestClient[Any, Any]]]
FAST = {"upstream_sync": True, "sync_quiet_ms": 30, "sync_max_lag_ms": 300}


@pytest.fixture
def sync_proxy(proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> SyncProxy:
    """Start a proxy with the sync on and short periods; keywords override settings."""

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        return await proxy_factory(**{**FAST, **overrides})

    return start


def divergences(client: TestClient[Any, Any], kind: str) -> float:
    value = client.app[METRICS].sync_divergences.labels(kind)._value.get()
    return float(value)


__all__ = ["ENGINE", "SYNC", "SyncProxy", "divergences"]
