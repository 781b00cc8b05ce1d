"""Batches: one pipeline per server, replies in command order, WAIT for replicas, on a real
redis-server with a real replica and on the local cluster."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, ResponseError

from proxy.errors import NotReplicated
from proxy.localstack import ProcessGroup, Service, Stack, start_redis
from proxy.localstack.cluster import Cluster
from proxy.store.batch import Batches
from proxy.store.slots import slot_of
from tests.support.replication import replicate
from tests.system.cluster_fixtures import cluster_client, redis_cluster

__all__ = ["cluster_client", "redis_cluster"]


@pytest.fixture(scope="module")
def primary_and_replica(stack: Stack, processes: ProcessGroup) -> tuple[Service, Service]:
    primary = start_redis(processes, stack, "batch-primary", modules=False)
    replica = start_redis(processes, stack, "batch-replica", modules=False)
    return primary, replica


@pytest.fixture
async def primary(primary_and_replica: tuple[Service, Service]
                  ) -> AsyncIterator[aioredis.Redis]:
    primary, replica = primary_and_replica
    await replicate(primary.url, replica.url)
    client = aioredis.Redis.from_url(primary.url)
    await client.flushall()
    yield client
    await client.aclose()


async def test_one_server_waits_for_its_replica(primary: aioredis.Redis) -> None:
    batches = Batches(primary, replicas=1, timeout_ms=1000)
    pipe = batches.pipeline()
    pipe.set("a", 1)
    pipe.incr("a")
    pipe.hset("h", "f", "v")
    assert await batches.run(pipe) == [True, 2, 1]


async def test_fewer_replicas_than_asked_is_not_acknowledged(primary: aioredis.Redis) -> None:
    batches = Batches(primary, replicas=2, timeout_ms=100)
    pipe = batches.pipeline()
    pipe.set("a", 1)
    pipe.lpush("a", "x")  # fails on its own
    started = time.monotonic()
    replies = await batches.run(pipe)
    assert time.monotonic() - started >= 0.09  # WAIT waited its timeout
    assert isinstance(replies[0], NotReplicated) and "1 of 2" in replies[0].detail
    assert isinstance(replies[1], ResponseError)
    assert await primary.get("a") == b"1"  # written on the primary all the same


@pytest.mark.cluster
async def test_a_cluster_batch_goes_to_every_master_in_order(
        redis_cluster: Cluster, cluster_client: RedisCluster) -> None:
    keys = [f"{{b{i}}}:k" for i in range(30)]
    assert len({redis_cluster.master_for_slot(slot_of(k)).port for k in keys}) == 3
    batches = Batches(cluster_client, replicas=1, timeout_ms=1000)
    pipe = batches.pipeline()
    for i, key in enumerate(keys):
        pipe.set(key, i)
        pipe.evalsha("0" * 40, 1, key)  # NOSCRIPT, in its place
        pipe.incr(key)
    replies = await batches.run(pipe)
    assert replies[0::3] == [True] * 30 and replies[2::3] == list(range(1, 31))
    assert all(isinstance(r, NoScriptError) for r in replies[1::3])
    await batches.close()


@pytest.mark.cluster
async def test_a_cluster_batch_waits_per_master(redis_cluster: Cluster,
                                                cluster_client: RedisCluster) -> None:
    batches = Batches(cluster_client, replicas=2, timeout_ms=50)  # one replica each
    pipe = batches.pipeline()
    for i in range(10):
        pipe.set(f"{{w{i}}}:k", i)
    replies = await batches.run(pipe)
    assert all(isinstance(r, NotReplicated) for r in replies)
    await batches.close()
