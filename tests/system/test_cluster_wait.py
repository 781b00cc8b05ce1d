"""What ``write_replicas = 1`` costs a PUT: WAIT after each flush pipeline until a replica
holds it, on one redis-server with a real replica (REPLICAOF) and on the local cluster
(WAIT per master). One client, PUTs one after another, so each pays the whole round trip;
under load the flusher's pipelines share one WAIT.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from proxy.localstack import ProcessGroup, Service, Stack, start_redis
from proxy.localstack.cluster import Cluster
from proxy.store.batch import Batches
from tests.conftest import ProxyFactory
from tests.support.replication import replicate
from tests.system.cluster_fixtures import (
    FIGURES,
    cluster_client,
    cluster_proxy_factory,
    redis_cluster,
)
from tests.system.faultload import JSON, WM, message, ms

__all__ = ["cluster_client", "cluster_proxy_factory", "redis_cluster"]

PUTS = 150


@pytest.fixture(scope="module")
def replicated(stack: Stack, processes: ProcessGroup) -> tuple[Service, Service]:
    """A redis-server and its replica."""
    primary = start_redis(processes, stack, "wait-primary", modules=False)
    replica = start_redis(processes, stack, "wait-replica", modules=False)
    return primary, replica


async def put_latencies(proxy: Any, prefix: str) -> list[float]:
    latencies = []
    for i in range(PUTS):
        sid = f"{prefix}-{i % 10}"
        body = orjson.dumps({"messages": [message(sid, j) for j in range(i // 10 + 1)]})
        started = time.perf_counter()
        resp = await proxy.put(WM + sid, data=body, headers=JSON)
        await resp.read()
        latencies.append(time.perf_counter() - started)
        assert resp.status == 200, await resp.text()
    return latencies[10:]  # after each session's first write


async def pipeline_latencies(client: Any, replicas: int) -> list[float]:
    """One flush pipeline's round trip alone (a small write, then WAIT when asked)."""
    batches = Batches(client, replicas, 1000)
    latencies = []
    for i in range(1000):
        pipe = batches.pipeline()
        pipe.set(f"{{wait}}:{i % 10}", i)
        started = time.perf_counter()
        replies = await batches.run(pipe)
        latencies.append(time.perf_counter() - started)
        assert replies == [True]
    await batches.close()
    return latencies


async def compare(start: Any, where: str, client: Any) -> dict[int, list[float]]:
    got: dict[int, list[float]] = {}
    for replicas in (0, 1, 0, 1):  # interleaved, so drift hits both alike
        proxy = await start(write_replicas=replicas)
        got.setdefault(replicas, []).extend(await put_latencies(proxy, f"w{replicas}"))
        await proxy.close()
    alone = {r: await pipeline_latencies(client, r) for r in (0, 1)}
    line = (f"WAIT cost on {where}: {len(got[0])} sequential PUTs each, write_replicas=0 "
            f"{ms(got[0])}; write_replicas=1 {ms(got[1])}; median "
            f"{1000 * (statistics.median(got[1]) - statistics.median(got[0])):+.2f} ms. "
            f"A flush pipeline alone (1,000 each): {ms(alone[0])} without WAIT, "
            f"{ms(alone[1])} with; median "
            f"{1e6 * (statistics.median(alone[1]) - statistics.median(alone[0])):+.0f} us")
    print("\n" + line)
    FIGURES.append(line)
    return got


async def test_wait_cost_on_one_server_with_a_replica(
        proxy_factory: ProxyFactory, replicated: tuple[Service, Service]) -> None:
    primary, replica = replicated
    await replicate(primary.url, replica.url)

    async def start(**settings: Any) -> Any:
        return await proxy_factory(redis_url=primary.url, **settings)

    async with aioredis.Redis.from_url(primary.url) as r:
        await r.config_resetstat()
        await compare(start, "one redis-server + a replica", r)
        waits = (await r.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert waits >= 2 * (PUTS - 10)  # every acknowledged PUT waited for the replica


@pytest.mark.cluster
async def test_wait_cost_on_the_cluster(redis_cluster: Cluster, cluster_client: Any,
                                        cluster_proxy_factory: ProxyFactory) -> None:
    await cluster_client.config_resetstat(target_nodes=RedisCluster.PRIMARIES)
    await compare(cluster_proxy_factory, "the cluster (3 masters, 3 replicas)", cluster_client)
    stats = await cluster_client.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    waits = sum(node.get("cmdstat_wait", {}).get("calls", 0) for node in stats.values())
    assert waits >= 2 * (PUTS - 10)
