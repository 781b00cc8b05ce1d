"""The engine, replica and parity suites again, on a Redis Cluster (3 masters, 3 replicas)
named by the upstream's URL convention: the same tests, with ``proxy_factory``, ``proxy``
and ``redis_client`` swapped for the cluster's.

Which tests: every test of tests/system/test_replicas.py (coherence between proxies:
leases, sharded invalidation, concurrent writers) and of tests/system/test_parity.py (the
upstream's answers, listing through the sharded index included), and of the engine suite
the ones that drive a proxy over HTTP or the flusher directly: tests/engine/test_append.py
and two of tests/engine/test_flusher.py. Left out: engine tests that count one server's
commands (Meter, INFO) or pause it (CLIENT PAUSE), which measure a single Redis by design.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio.cluster import RedisCluster

from proxy.localstack.cluster import Cluster
from tests.conftest import ProxyFactory
from tests.engine import test_append, test_flusher
from tests.system import test_parity, test_replicas
from tests.system.cluster_fixtures import (
    adopt,
    cluster_proxy_factory,
    emptied,
    redis_cluster,
)

__all__ = ["cluster_proxy_factory", "redis_cluster"]

pytestmark = pytest.mark.cluster


@pytest.fixture
def proxy_factory(cluster_proxy_factory: ProxyFactory) -> ProxyFactory:
    return cluster_proxy_factory


@pytest.fixture
async def proxy(cluster_proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await cluster_proxy_factory()


@pytest.fixture
async def redis_client(redis_cluster: Cluster) -> AsyncIterator[RedisCluster]:
    client = await emptied(redis_cluster)
    yield client
    await client.aclose()


adopt(globals(), test_replicas)
adopt(globals(), test_parity)
adopt(globals(), test_append)
adopt(globals(), test_flusher, ["test_group_commit_and_conflicts",
                                "test_concurrent_puts_share_pipelines"])
