"""The sharded ledger: backlog and due counts over every shard, the limit across proxies
and shards (permits), claims only from the shards due, marks only after their write, and
the unsharded ledger of an earlier version moved into the shards.
tests/system/test_cluster_sync.py runs them on a Redis Cluster too."""

from __future__ import annotations

import asyncio

from proxy.coherence import Coherence
from proxy.engine.flusher import Flusher
from proxy.errors import Conflict
from proxy.store.connect import RedisClient
from proxy.store.keys import legacy_sync_keys
from proxy.store.store import Meta, Store, Write, index_member
from proxy.sync.ledger import Claim
from tests.sync.ledgers import (
    PREFIX,
    due_at,
    keys_of,
    ledger,
    mark,
    member,
    redis_ms,
    shard_of,
)


def spread(count: int, name: str = "s") -> list[bytes]:
    """Members of ``count`` sessions, each in its own ledger shard."""
    found: dict[int, bytes] = {}
    i = 0
    while len(found) < count:
        m = member(f"{name}{i}")
        found.setdefault(shard_of(m), m)
        i += 1
    return list(found.values())


def create(store: Store, sid: str, at: float = 1.0) -> Write:
    """A write creating session ``sid`` at version ``at`` µs (the planner's clock)."""
    meta = Meta(count=1, doc=b"{}", index_member=index_member(sid, None, None))
    return Write(store.keys(sid), True, 0, meta, [b"{}"], [1], None, at)


async def test_backlog_and_due_count_add_up_over_the_shards(redis_client: RedisClient) -> None:
    led = ledger(redis_client)
    oldest, *rest = spread(6)
    await mark(redis_client, oldest)
    await asyncio.sleep(0.2)
    for m in rest:
        await mark(redis_client, m)
    count, lag = await led.backlog()
    assert count == 6 and 0.18 <= lag < 10
    assert await led.due_count() == 6


async def test_claims_from_several_shards_stay_within_the_limit_of_all_proxies(
        redis_client: RedisClient) -> None:
    for m in spread(6):
        await mark(redis_client, m, quiet_ms=0)
    one, two = ledger(redis_client, "h1", limit=3), ledger(redis_client, "h2", limit=3)
    mine = (await one.claim(2)).claims
    theirs = (await two.claim(5)).claims
    held: list[Claim] = [*mine, *theirs]
    assert (len(mine), len(theirs)) == (2, 1)
    assert len({c.shard for c in held}) == 3  # one session due per shard
    assert await redis_client.zcard(one.permits) == 3  # a permit per claim, no more
    assert (await two.claim(5)).claims == [] and (await one.claim(5)).claims == []
    assert await one.done(mine[0], "clean")  # its permit is free again, for whoever asks
    [taken] = (await two.claim(5)).claims
    assert taken.member not in {c.member for c in held}
    for c in [*mine[1:], *theirs, taken]:
        assert await (one if c in mine else two).done(c, "clean")
    assert await redis_client.zcard(one.permits) == 0


async def test_a_mark_is_applied_only_after_its_write_succeeded(
        redis_client: RedisClient) -> None:
    store = Store(redis_client, PREFIX)
    led = ledger(redis_client)
    woken = asyncio.Event()
    led.on_due = woken.set
    await led.claim(1)  # knows every shard: nothing is due
    flusher = Flusher(store, Coherence(store), batch_max=64, queue_max=100,
                      queue_wait=0.1, linger=0)
    flusher.start()
    try:
        first = await (await flusher.submit(create(store, "taken")))  # before the sync
        store.enable_sync_marks(60_000, 120_000, led.note_due)
        landed = await (await flusher.submit(create(store, "landed")))
        refused = await flusher.submit(create(store, "taken", 2.0))  # exists: refused
        try:
            await refused
            raise AssertionError("a create of an existing session was written")
        except Conflict:
            pass
        assert landed > 0 and first > 0
    finally:
        await flusher.close(1.0)
    due = await due_at(redis_client, member("landed"))
    assert due is not None and woken.is_set()
    assert led.schedule.at[shard_of(member("landed"))] == due  # the claim loop knows it
    taken = keys_of(member("taken"))  # no trace of the refused write
    assert await due_at(redis_client, member("taken")) is None
    assert await redis_client.zscore(taken.dirty, member("taken")) is None
    assert await redis_client.hget(taken.state, member("taken")) is None


async def test_a_ledger_with_nothing_due_asks_redis_nothing_until_it_rescans(
        redis_client: RedisClient) -> None:
    led = ledger(redis_client)
    led.rescan_ms = 60_000
    assert (await led.claim(2)).claims == []  # the first claim reads every shard
    calls = await _commands(redis_client)
    for _ in range(20):
        assert (await led.claim(2)).claims == []
    assert await _commands(redis_client) == calls
    m = member("due")
    await mark(redis_client, m, quiet_ms=0)
    led.note_due(shard_of(m), 0)  # as this proxy's own write would tell it
    [claim] = (await led.claim(2)).claims
    assert claim.member == m
    assert await led.done(claim, "clean")


async def test_the_unsharded_ledger_of_an_earlier_version_moves_into_the_shards(
        redis_client: RedisClient) -> None:
    due, dirty, state, claims, owner = legacy_sync_keys(PREFIX)
    a, b, c = member("a"), member("b"), member("c")
    await redis_client.zadd(due, {a: 1_000, b: 2_000, c: 3_000})
    await redis_client.zadd(dirty, {a: 900})
    await redis_client.hset(state, mapping={a: "3 900 0 0 0", b: "0 0 0 1 0"})
    now = await redis_ms(redis_client)
    await redis_client.zadd(claims, {b: 5_000, c: now + 60_000})  # b's claim ran out
    await redis_client.hset(owner, mapping={b: "gone 0 1", c: f"old 0 {now}"})
    led = ledger(redis_client)
    assert await led.adopt_legacy() == 2  # c is in a round of a proxy of that version
    assert await due_at(redis_client, c) is None
    await redis_client.zrem(claims, c)  # that round ended, c still due
    assert await led.adopt_legacy() == 1
    assert await due_at(redis_client, c) == 3_000
    assert await due_at(redis_client, a) == 1_000 and await due_at(redis_client, b) == 2_000
    assert await redis_client.zscore(keys_of(a).dirty, a) == 900
    assert await redis_client.hget(keys_of(b).state, b) == b"0 0 0 1 0"
    assert not await redis_client.exists(due, dirty, state, claims, owner)
    [first, second, third] = (await led.claim(3)).claims  # claimed from the shards
    assert (first.member, first.seq, second.member, third.member) == (a, 3, b, c)


async def _commands(redis: RedisClient) -> int:
    """Commands the Redis server has run, but this INFO."""
    stats = await redis.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
