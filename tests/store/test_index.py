"""The session index: one pair of sorted sets on one server, 64 slot-range shards on a
cluster, each on the master of the sessions it lists."""

from __future__ import annotations

import random
import time

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from proxy.localstack.cluster import Cluster
from proxy.store.index import SHARDS, SessionIndex
from proxy.store.keys import SessionKeys
from proxy.store.slots import slot_of
from proxy.store.store import Meta, Store, Write, index_member
from tests.system.cluster_fixtures import cluster_client, redis_cluster

__all__ = ["cluster_client", "redis_cluster"]


def test_one_server_keeps_the_layout_of_one_index(redis_client: aioredis.Redis) -> None:
    index = SessionIndex(redis_client, "amp", sharded=False)
    (shard,) = index.shards
    assert (shard.index, shard.expiry) == ("amp:index", "amp:expiry")


@pytest.mark.cluster
def test_shards_sit_with_the_sessions_they_list(redis_cluster: Cluster,
                                                cluster_client: RedisCluster) -> None:
    index = SessionIndex(cluster_client, "amp", sharded=True)
    assert len(index.shards) == SHARDS
    master_of = {slot: v.port for v in redis_cluster.view() if v.is_master and not v.failed
                 for lo, hi in v.slots for slot in range(lo, hi + 1)}
    owner = {}
    for shard in index.shards:
        assert slot_of(shard.index) == slot_of(shard.expiry)
        owner[shard.index] = master_of[slot_of(shard.index)]
    assert len(set(owner.values())) == 3
    sessions = [SessionKeys.build("amp", f"ns:u:s{i}") for i in range(3000)]
    together = sum(master_of[slot_of(k.meta)] == owner[index.shard(k).index] for k in sessions)
    print(f"index entry on the session's own master: {together / len(sessions):.1%}")
    assert together / len(sessions) > 0.9


def write(store: Store, sid: str, score: float, ttl: int | None = None) -> Write:
    meta = Meta(count=1, doc=b"{}", index_member=index_member(sid, "ns", None))
    return Write(store.keys(f"ns:{sid}"), True, 0, meta, [b"{}"], [1], ttl, score)


@pytest.mark.cluster
async def test_listing_merges_the_shards_in_write_order(cluster_client: RedisCluster) -> None:
    store = Store(cluster_client, "amp")
    await store.load_scripts()
    scores = random.Random(7).sample(range(1_000, 100_000), 200)
    pipe = store.pipeline()
    for i, score in enumerate(scores):
        store.queue_write(pipe, write(store, f"s{i}", float(score), ttl=5 if i < 20 else None))
    assert not [r for r in await store.execute(pipe) if isinstance(r, Exception)]
    sizes = [await cluster_client.zcard(s.index) for s in store.index.shards]
    shards_used = sum(1 for size in sizes if size)
    assert shards_used > SHARDS // 2
    ordered = [f"s{i}" for i in sorted(range(200), key=lambda i: scores[i])]
    assert await store.list_sessions("ns", None, 500, 0, time.time()) == (ordered, 200)
    assert await store.list_sessions(None, None, 10, 50, time.time()) == (ordered[50:60], 200)
    # Expired sessions (here: deleted as if by their TTL) drop out of every shard.
    for i in range(20):
        await cluster_client.delete(*store.keys(f"ns:s{i}").all())
    listed, total = await store.list_sessions(None, None, 500, 0, time.time() + 10)
    assert total == 180 and listed == [s for s in ordered if int(s[1:]) >= 20]
    # A delete takes the entry out of its shard.
    assert (await store.delete(store.keys("ns:s100"))).version == 0
    member = orjson.dumps(["ns", None, "s100"])
    assert await cluster_client.zscore(store.index.shard(store.keys("ns:s100")).index,
                                       member) is None
    await store.batches.close()
