"""A real local Redis Cluster (3 masters, 3 replicas) and what redis-py's asyncio
RedisCluster does on it: hash tags, scripts, sharded pub/sub, failover after kill -9.

Sharded pub/sub with redis-py 8.1 (``RedisCluster.pubsub()`` -> ``ClusterPubSub``):
- ``ssubscribe`` needs the client's slot map first (``await client.initialize()``), else
  it raises SlotNotCoveredError; ``spublish`` is routed to the channel's slot owner;
- one connection per node owning a subscribed channel; ``get_sharded_message`` polls them
  round-robin, one per call;
- after a failover a subscribe-only client does not follow by itself: polling the dead
  node raises ConnectionError (at once, connection refused) and the channel stays
  subscribed there. Refreshing the slot map (``await client.nodes_manager.initialize()``,
  or any command that hits the dead node) makes ClusterPubSub move the subscription to
  the new master; the dead node's connection stays in the round-robin and raises
  ConnectionError on its turn until that node is back, and while the move runs (a
  background task) the new node's pubsub can be polled before it has connected, which
  raises RuntimeError("pubsub connection not set"). A listener catches both and polls on
  (``poll`` below). redis-py's pull request #4076 reworks this path; 8.1.0, the newest
  release, predates it.
- The other way: a plain ``redis.asyncio.Redis`` on the node that owns the channel's slot,
  SSUBSCRIBE there, and re-resolve the owner after an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException

from proxy.localstack import ProcessGroup, Stack
from proxy.localstack.cluster import SLOTS, Cluster, ClusterNode, start_cluster


@pytest.fixture(scope="module")
def cluster(stack: Stack) -> Iterator[Cluster]:
    group = ProcessGroup()
    try:
        started = time.monotonic()
        formed = start_cluster(group, stack)
        print(f"cluster of 6 formed in {time.monotonic() - started:.2f} s")
        yield formed
    finally:
        group.stop()


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RedisCluster]:
    rc = cluster.async_client(decode_responses=True)
    await rc.initialize()
    yield rc
    await rc.aclose()


def channel_on(cluster: Cluster, master: ClusterNode, prefix: str) -> str:
    """A channel name whose slot ``master`` serves."""
    for i in range(10_000):
        name = f"{prefix}{i}"
        if cluster.master_for_slot(key_slot(name.encode())) is master:
            return name
    raise LookupError(master.port)


async def poll(pubsub: ClusterPubSub, client: RedisCluster | None = None,
               timeout: float = 0.05) -> dict[str, Any] | None:
    """One round-robin turn of ``get_sharded_message``, surviving a failover: a dead
    node's ConnectionError refreshes ``client``'s slot map (ClusterPubSub then moves the
    subscription to the new owner, in a background task), and a node pubsub that task
    registered but has not connected yet raises RuntimeError; both are a turn without a
    message."""
    try:
        message = await pubsub.get_sharded_message(ignore_subscribe_messages=True,
                                                   timeout=timeout)
    except RedisConnectionError:
        if client is None:
            raise
        await client.nodes_manager.initialize()
        return None
    except RuntimeError as exc:  # "pubsub connection not set"
        if client is None or "connection not set" not in str(exc):
            raise
        await asyncio.sleep(timeout)
        return None
    return None if message is None else dict(message)


async def next_message(pubsub: ClusterPubSub, timeout: float = 5.0,
                       client: RedisCluster | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (message := await poll(pubsub, client)) is not None:
            return message
    raise AssertionError(f"no sharded message within {timeout} s")


async def test_cluster_forms_three_masters_each_with_a_synced_replica(
    cluster: Cluster, client: RedisCluster
) -> None:
    masters = cluster.masters()
    assert len(masters) == 3 and len(cluster.nodes) == 6
    assert cluster.url.startswith("redis+cluster://127.0.0.1:")
    served = sum(hi - lo + 1 for v in cluster.view() if v.is_master for lo, hi in v.slots)
    assert served == SLOTS
    for master in masters:
        (replica,) = cluster.replicas_of(master)
        with replica.client() as c:
            assert c.info("replication")["master_link_status"] == "up"
    info = await client.cluster_info()
    assert info["cluster_state"] == "ok"
    assert await client.ping(target_nodes=RedisCluster.ALL_NODES)


async def test_keys_of_one_hash_tag_share_a_slot_and_a_script(
    cluster: Cluster, client: RedisCluster
) -> None:
    keys = ["amp:{s1}:meta", "amp:{s1}:msgs", "amp:{s1}:toks"]
    slot = key_slot(keys[0].encode())
    assert {key_slot(k.encode()) for k in keys} == {slot}
    assert await client.cluster_keyslot(keys[1]) == slot
    script = """
        redis.call('HSET', KEYS[1], 'n', #ARGV)
        for _, v in ipairs(ARGV) do redis.call('RPUSH', KEYS[2], v) end
        redis.call('APPEND', KEYS[3], 'xy')
        return redis.call('LLEN', KEYS[2])
    """
    assert await client.eval(script, 3, *keys, "a", "b") == 2
    assert await client.evalsha(await client.script_load(script), 3, *keys, "c") == 3
    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(keys[0], "n")
        pipe.lrange(keys[1], 0, -1)
        pipe.get(keys[2])
        assert await pipe.execute() == ["1", ["a", "b", "c"], "xyxy"]
    owner = cluster.master_for_slot(slot)
    assert owner.command("CLUSTER", "COUNTKEYSINSLOT", slot) == 3
    with pytest.raises(RedisClusterException):  # refused by redis-py before sending
        await client.eval(script, 2, keys[0], "amp:{s2}:msgs")
    other = next(m for m in cluster.masters() if m is not owner)
    with pytest.raises(MovedError, match=str(owner.port)), other.client() as c:
        c.get(keys[0])
    await client.delete(*keys)


async def test_sharded_pubsub_reaches_subscribers_on_every_master(
    cluster: Cluster, client: RedisCluster
) -> None:
    channels = [channel_on(cluster, m, "amp:inv:") for m in cluster.masters()]
    assert len({key_slot(c.encode()) for c in channels}) == 3
    pubsub = client.pubsub()
    try:
        await pubsub.ssubscribe(*channels)
        assert len(pubsub.node_pubsub_mapping) == 3  # one connection per owning node
        for channel in channels:
            assert await client.spublish(channel, f"7 - {channel}") == 1
        got = {(m := await next_message(pubsub))["channel"]: m["data"] for _ in channels}
        assert got == {c: f"7 - {c}" for c in channels}
    finally:
        await pubsub.aclose()


async def test_failover_after_kill_9_of_a_master(cluster: Cluster,
                                                 client: RedisCluster) -> None:
    victim = cluster.master_for_slot(key_slot(b"{fo}"))
    (replica,) = cluster.replicas_of(victim)
    await client.set("{fo}:k", "v")
    victim_node = client.get_node(node_name=f"127.0.0.1:{victim.port}")
    assert await client.execute_command("WAIT", 1, 1000, target_nodes=victim_node) == 1
    channel = channel_on(cluster, victim, "amp:inv:")
    subscriber = cluster.async_client(decode_responses=True)
    await subscriber.initialize()
    pubsub = subscriber.pubsub()
    await pubsub.ssubscribe(channel)
    try:
        cluster.kill(victim)
        took = cluster.wait_failover(victim)
        print(f"failover after kill -9 of a master: {took:.2f} s "
              f"(cluster-node-timeout {cluster.node_timeout_ms} ms)")
        assert cluster.master_for_slot(key_slot(b"{fo}")) is replica
        assert took < 10

        started = time.monotonic()
        assert await client.get("{fo}:k") == "v"  # the client re-learns the slot map
        print(f"first read after failover: {1000 * (time.monotonic() - started):.0f} ms")
        await client.set("{fo}:k", "w")

        started = time.monotonic()
        for _ in range(100):  # until the subscription has moved to the new master
            if await client.spublish(channel, "after failover") == 1:
                break
            await poll(pubsub, subscriber)
        heard = await next_message(pubsub, client=subscriber)
        print(f"sharded pub/sub resubscribed on the new master after "
              f"{1000 * (time.monotonic() - started):.0f} ms of polling")
        assert (heard["channel"], heard["data"]) == (channel, "after failover")

        cluster.restart(victim)
        assert cluster.replicas_of(replica) == [victim]
        assert victim.command("ROLE")[0] == "slave"
        with victim.client() as c:
            c.execute_command("READONLY")
            assert c.get("{fo}:k") == "w"  # resynced from the new master
    finally:
        await pubsub.aclose()
        await subscriber.aclose()
        if not victim.alive:
            cluster.restart(victim)
