"""The upstream sync's ledger on a Redis Cluster (3 masters, 3 replicas): its shards spread
over the masters with the sessions they mark, a master refusing writes fails only the
writes whose session or due mark is there, and the ledger's own tests
(tests/sync/test_scripts.py, tests/sync/test_ledger_shards.py) again, on the cluster."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
from aiohttp import ClientSession
from redis.asyncio.cluster import RedisCluster

from proxy.coherence import Coherence
from proxy.engine.flusher import Flusher
from proxy.errors import StoreUnavailable
from proxy.localstack.cluster import Cluster, ClusterNode
from proxy.observability.metrics import Metrics
from proxy.store.batch import key_of
from proxy.store.keys import SYNC_SHARDS, SessionKeys, SyncKeys
from proxy.store.slots import SLOTS, slot_of
from proxy.store.store import Store
from tests.conftest import ProxyFactory
from tests.sync import test_ledger_shards, test_records, test_scripts
from tests.sync.conftest import FAST, SYNC
from tests.sync.ledgers import PREFIX, due_at, ledger, member, total
from tests.sync.sessions import eventually, msgs
from tests.sync.test_handover import put, until_handed_over
from tests.sync.test_handover import sid as new_sid
from tests.sync.test_ledger_shards import create
from tests.system.cluster_fixtures import (
    adopt,
    cluster_as_redis_client,
    cluster_proxy_factory,
    redis_cluster,
)
from tests.system.test_metrics import value

__all__ = ["cluster_as_redis_client", "cluster_proxy_factory", "redis_cluster"]

pytestmark = pytest.mark.cluster


adopt(globals(), test_scripts)
adopt(globals(), test_records, ["test_saved_records_expire_with_their_session",
                                "test_a_delete_leaves_a_short_lived_mark"])
adopt(globals(), test_ledger_shards, [
    "test_backlog_and_due_count_add_up_over_the_shards",
    "test_claims_from_several_shards_stay_within_the_limit_of_all_proxies",
    "test_a_mark_is_applied_only_after_its_write_succeeded",
    "test_the_unsharded_ledger_of_an_earlier_version_moves_into_the_shards"])


def masters_by_slot(cluster: Cluster) -> Callable[[str], ClusterNode]:
    """The master serving a key, by one read of the cluster's slot map."""
    cluster.wait_healthy()
    owners: list[ClusterNode | None] = [None] * SLOTS
    for view in cluster.view():
        if view.is_master and not view.failed:
            for lo, hi in view.slots:
                owners[lo:hi + 1] = [cluster.by_id(view.node_id)] * (hi + 1 - lo)

    def master_of(key: str) -> ClusterNode:
        owner = owners[slot_of(key)]
        assert owner is not None
        return owner
    return master_of


async def test_the_shards_spread_over_the_masters_with_the_sessions_they_mark(
        redis_cluster: Cluster) -> None:
    master_of = masters_by_slot(redis_cluster)
    held = Counter(master_of(k.due).port for k in SyncKeys.shards(PREFIX))
    masters = {m.port for m in redis_cluster.masters()}
    assert set(held) == masters
    assert min(held.values()) >= SYNC_SHARDS // len(masters) - 1  # 5 or 6 each
    sessions = [SessionKeys.build(PREFIX, f"s{i}") for i in range(1_000)]
    together = sum(master_of(s.meta) is master_of(
        SyncKeys.build(PREFIX, SyncKeys.shard_of(s)).due) for s in sessions)
    assert together >= 900  # a mark goes where its session is (96% on 3 masters)


async def test_a_master_refusing_writes_fails_only_the_writes_marked_or_stored_there(
        redis_cluster: Cluster, redis_client: RedisCluster) -> None:
    master_of = masters_by_slot(redis_cluster)
    store = Store(redis_client, PREFIX)
    led = ledger(redis_client)
    store.enable_sync_marks(60_000, 120_000, led.note_due)

    def where(sid: str, sick: ClusterNode) -> tuple[bool, bool, bool]:
        """Whether the session, the rest of its write (index upkeep), its due mark are
        on ``sick``."""
        write, pipe = create(store, sid), store.pipeline()
        store.queue_write(pipe, write)
        others = [master_of(key_of(args)) is sick
                  for args, _ in pipe.command_stack[1:]]
        mark = SyncKeys.build(PREFIX, SyncKeys.shard_of(write.keys)).due
        return (master_of(write.keys.meta) is sick, any(others),
                master_of(mark) is sick)

    def find(wanted: tuple[bool, bool, bool], sick: ClusterNode, count: int) -> list[str]:
        found = [sid for sid in (f"w{i}" for i in range(5_000)) if where(sid, sick) == wanted]
        return found[:count]

    # A master holding the due marks of some sessions stored on another master.
    sick, marked_there = next((m, found[0]) for m in redis_cluster.masters()
                              if (found := find((False, False, True), m, 1)))
    healthy = find((False, False, False), sick, 6)  # nothing on the sick master
    stored_there = find((True, True, True), sick, 1)[0]
    metrics = Metrics()
    flusher = Flusher(store, Coherence(store), batch_max=64, queue_max=100, queue_wait=0.1,
                      linger=0, metrics=metrics)
    flusher.start()
    try:
        sick.command("CONFIG", "SET", "min-replicas-to-write", "10")  # refuses every write
        try:
            futures = [await flusher.submit(create(store, name))
                       for name in [*healthy, marked_there, stored_there]]
            results = await asyncio.gather(*futures, return_exceptions=True)
            assert flusher.owed == 1  # the write that landed, its mark not
            assert value(metrics.exposition().decode(), "amp_sync_marks_owed") == 1
        finally:
            sick.command("CONFIG", "SET", "min-replicas-to-write", "0")
        *fine, mark_failed, write_failed = results
        assert all(isinstance(v, int) for v in fine), fine
        assert isinstance(mark_failed, StoreUnavailable)
        assert isinstance(write_failed, StoreUnavailable)
        for name in healthy:
            assert await due_at(redis_client, member(name)) is not None
        # The write whose mark failed landed all the same (answered 503: the client's
        # retry writes again and marks it); its mark is sent again until it lands.
        assert await redis_client.exists(store.keys(marked_there).meta)

        async def paid() -> bool | None:
            return True if flusher.owed == 0 else None
        await eventually(paid)
        assert value(metrics.exposition().decode(), "amp_sync_marks_owed") == 0
        assert await due_at(redis_client, member(marked_there)) is not None
        # The write refused on its own master left nothing.
        assert not await redis_client.exists(store.keys(stored_there).meta)
        assert await due_at(redis_client, member(stored_there)) is None
    finally:
        await flusher.close(1.0)

@pytest.mark.upstream
async def test_sessions_written_through_two_proxies_are_handed_over_by_either(
        cluster_proxy_factory: ProxyFactory, redis_client: RedisCluster,
        direct: ClientSession) -> None:
    one = await cluster_proxy_factory(**FAST, sync_concurrency=2)
    two = await cluster_proxy_factory(**FAST, sync_concurrency=2)
    sessions = [new_sid() for _ in range(6)]
    for i, s in enumerate(sessions):
        await put(one if i % 2 else two, s, {"messages": msgs(2)})
    for s in sessions:
        await until_handed_over(one, direct, s)

    async def idle() -> bool | None:
        running = one.app[SYNC].running + two.app[SYNC].running
        return True if running == 0 and await total(redis_client, "dirty") == 0 else None
    await eventually(idle)
    assert await redis_client.zcard(one.app[SYNC].ledger.permits) == 0
