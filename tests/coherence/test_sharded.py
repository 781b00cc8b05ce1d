"""Sharded invalidation on the real local cluster: every slot's channel subscribed on the
master serving it, lease revocations and releases across proxies over them, and a
failover that promotes a replica without the leases it never received: the listener moves
to the new master and drops what it cached."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster

from proxy.coherence.sharded import ShardedInvalidation
from proxy.localstack.cluster import Cluster
from proxy.store.keys import SessionKeys
from proxy.store.slots import SLOTS, slot_of
from tests.coherence import leased
from tests.conftest import ProxyFactory
from tests.engine_fixtures import messages, msgs, put
from tests.system.cluster_fixtures import cluster_client, cluster_proxy_factory, redis_cluster

__all__ = ["cluster_client", "cluster_proxy_factory", "redis_cluster"]

pytestmark = pytest.mark.cluster


def listener(client: Any) -> ShardedInvalidation:
    inv = leased.coherence(client).invalidation
    assert isinstance(inv, ShardedInvalidation)
    return inv


async def test_every_slot_channel_is_subscribed_on_its_master(
        redis_cluster: Cluster, cluster_client: RedisCluster,
        cluster_proxy_factory: ProxyFactory) -> None:
    started = time.monotonic()
    proxy = await cluster_proxy_factory()
    await leased.healthy(proxy)
    print(f"\nstarted and subscribed to {SLOTS} slot channels in "
          f"{time.monotonic() - started:.2f} s")
    assert listener(proxy).grace == 0.5  # half of cluster-node-timeout (1 s), under 5 s
    for master in redis_cluster.masters():
        owned = next(v.slots for v in redis_cluster.view() if v.node_id == master.node_id)
        channels = master.command("PUBSUB", "SHARDCHANNELS", "amp:invalidate:*")
        assert {slot_of(c) for c in channels} == {
            s for lo, hi in owned for s in range(lo, hi + 1)}


async def test_a_write_waits_only_for_the_holders_release(
        cluster_client: RedisCluster, cluster_proxy_factory: ProxyFactory) -> None:
    a, b = await leased.two_proxies(cluster_proxy_factory)
    assert await put(a, "rel", {"messages": msgs(3)}) == 200
    assert await messages(b, "rel") == msgs(3)  # cached
    assert await messages(b, "rel") == msgs(3)  # checked, and leased
    assert leased.coherence(b).leases.live(SessionKeys.build("amp", "rel").meta)
    started = time.monotonic()
    assert await put(a, "rel", {"messages": msgs(4)}) == 200
    took = time.monotonic() - started
    print(f"\nPUT that revoked another proxy's lease: {1000 * took:.1f} ms (lease 5 s)")
    assert took < 1.0  # B's release came over the slot's channel, not the lease's end
    assert await messages(b, "rel") == msgs(4)


async def test_a_failover_moves_the_listener_and_drops_the_cache(
        redis_cluster: Cluster, cluster_client: RedisCluster,
        cluster_proxy_factory: ProxyFactory) -> None:
    a, b = await leased.two_proxies(cluster_proxy_factory)
    sid = "fo-lease"
    victim = redis_cluster.master_for_slot(slot_of(SessionKeys.build("amp", sid).meta))
    assert await put(a, sid, {"messages": msgs(2)}) == 200
    assert await messages(b, sid) == msgs(2)
    assert await messages(b, sid) == msgs(2)  # leased
    assert leased.coherence(b).leases.live(SessionKeys.build("amp", sid).meta)
    inv = listener(b)
    redis_cluster.kill(victim)
    try:
        for _ in range(200):  # B hears its master go at once (connection reset)
            if not inv.healthy:
                break
            await asyncio.sleep(0.01)
        lost_at = time.monotonic()
        assert not inv.healthy
        took = await asyncio.to_thread(redis_cluster.wait_failover, victim)
        assert time.monotonic() - lost_at > inv.grace  # its leases were no longer trusted
        for _ in range(300):  # subscribed again, to the promoted replica
            if inv.healthy:
                break
            await asyncio.sleep(0.02)
        assert inv.healthy
        print(f"\nfailover {took:.2f} s; the listener subscribed again "
              f"{time.monotonic() - lost_at:.2f} s after losing the master")
        # A new master, which may lack B's lease: B must not trust what it cached.
        assert await put(a, sid, {"messages": msgs(5)}) == 200
        assert await messages(b, sid) == msgs(5)
    finally:
        if not victim.alive:
            await asyncio.to_thread(redis_cluster.restart, victim)
