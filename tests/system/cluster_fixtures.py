"""Fixtures of the cluster tests: one real local Redis Cluster (3 masters, 3 replicas) for
the whole test session, proxies on it, and a way to run other modules' tests against it.

Import what a module needs (``from tests.system.cluster_fixtures import ...``); pytest
finds fixtures among a module's globals.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio.cluster import RedisCluster

from proxy.app import create_app
from proxy.localstack import ProcessGroup, Service, Stack
from proxy.localstack.cluster import Cluster, start_cluster
from tests.conftest import ProxyFactory, make_settings

FIGURES: list[str] = []


@pytest.fixture(scope="session")
def redis_cluster(stack: Stack, processes: ProcessGroup) -> Iterator[Cluster]:
    started = time.monotonic()
    cluster = start_cluster(processes, stack, name="proxy-cluster")
    FIGURES.append(f"cluster of 6 formed in {time.monotonic() - started:.1f} s")
    try:
        yield cluster
    finally:
        cluster.stop()


class WholeCluster(RedisCluster):
    """A cluster client whose KEYS asks every master, as tests written for one server
    expect (redis-py sends it to one node)."""

    async def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        kwargs.setdefault("target_nodes", RedisCluster.PRIMARIES)
        return await super().keys(pattern, **kwargs)


async def emptied(cluster: Cluster) -> RedisCluster:
    """A client of the cluster after FLUSHALL on every master (and its replicas synced)."""
    cluster.wait_healthy()  # a test before may have killed and restarted a node
    client = WholeCluster.from_url(cluster.redis_url)
    await client.initialize()
    await client.flushall(target_nodes=RedisCluster.PRIMARIES)
    return client


@pytest.fixture
async def cluster_client(redis_cluster: Cluster) -> AsyncIterator[RedisCluster]:
    client = await emptied(redis_cluster)
    yield client
    await client.aclose()


@pytest.fixture(name="redis_client")
async def cluster_as_redis_client(redis_cluster: Cluster) -> AsyncIterator[RedisCluster]:
    """``redis_client`` in a module that imports this: suites written for one redis-server
    (adopted, see ``adopt``) run against the whole cluster, emptied."""
    client = await emptied(redis_cluster)
    yield client
    await client.aclose()


@pytest.fixture
def cluster_proxy_factory(aiohttp_client: Any, upstream: Service,
                          redis_cluster: Cluster) -> ProxyFactory:
    """Proxy apps whose Redis is the cluster (by the upstream's URL convention)."""

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(overrides.pop("upstream_url", upstream.url),
                                 overrides.pop("redis_url", redis_cluster.url), **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
        return client

    return start


def adopt(namespace: dict[str, Any], module: ModuleType, names: list[str] | None = None
          ) -> None:
    """Collect ``module``'s tests (all, or ``names``) and its own fixtures again in the
    module whose globals are ``namespace``, where ``proxy_factory`` and ``redis_client``
    are the cluster's: the same tests, run against the cluster."""
    for name, value in vars(module).items():
        is_test = name.startswith("test_") and (names is None or name in names)
        is_fixture = hasattr(value, "_fixture_function_marker")
        if (is_test or is_fixture) and name not in namespace:
            namespace[name] = value
    if names is not None:
        missing = [n for n in names if n not in vars(module)]
        assert not missing, f"{module.__name__} has no {missing}"
