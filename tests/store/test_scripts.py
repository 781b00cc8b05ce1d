"""The Lua write scripts: conditional on the version, and ending other holders' leases."""

from __future__ import annotations

import redis.asyncio as aioredis

from proxy.store.store import Store
from tests.store.test_store import run, write


async def test_writes_are_conditional_on_the_version(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, "t")
    first = write(store, "s", [b"1", b"2"], version=0, rewrite=True)
    ok, v1 = await run(store, first)
    # A new session starts at the version its writer proposed: the writer's clock in µs.
    assert ok == 1 and v1 == first.creation_version == first.predicted_version()
    assert v1 > 1_600_000_000 * 10**6
    ok, v2 = await run(store, write(store, "s", [b"3"], version=v1, rewrite=False, count=3))
    assert (ok, v2) == (1, v1 + 1)
    # A write planned against an older version, or as a create, is refused.
    assert list(await run(store, write(store, "s", [b"x"], version=v1, rewrite=False))) == \
        [0, v2]
    assert list(await run(store, write(store, "s", [b"x"], version=0, rewrite=True))) == [0, v2]
    snap = await store.snapshot(store.keys("s"), 2)
    assert snap is not None
    assert (snap.start, snap.messages, list(snap.tokens)) == (1, [b"2", b"3"], [1, 1])
    assert snap.meta.version == v2 and snap.meta.count == 3
    assert await store.messages(store.keys("s"), 0, 3) == [b"1", b"2", b"3"]
    ok, _ = await run(store, write(store, "s", [b"9"], version=v2, rewrite=True))
    assert ok == 1
    assert await store.messages(store.keys("s"), 0, 10) == [b"9"]
    assert list(await store.tokens(store.keys("s"), 0, 1)) == [1]


async def test_writes_and_deletes_end_other_holders_leases(
        redis_client: aioredis.Redis) -> None:
    mine, theirs = Store(redis_client, "t", "me", 5000), Store(redis_client, "t", "them", 5000)
    keys = mine.keys("s")
    assert await theirs.lease(keys) == 0  # no session: no lease
    assert not await redis_client.exists(keys.leases)
    _, version = await run(mine, write(mine, "s", [b"1"], version=0, rewrite=True))
    assert await theirs.lease(keys) == version
    assert set(await redis_client.hkeys(keys.leases)) == {b"me", b"them"}
    # A write by "me" ends "them"'s lease (about 5 s left) and keeps its own.
    pipe = redis_client.pipeline(transaction=False)
    mine.queue_write(pipe, write(mine, "s", [b"2"], version=version, rewrite=False))
    ok, new_version, wait_ms, holders = (await pipe.execute())[0]
    assert (ok, new_version, holders) == (1, version + 1, b"them")
    assert 4000 < wait_ms <= 5000
    assert await redis_client.hkeys(keys.leases) == [b"me"]
    assert 4000 < await redis_client.pttl(keys.leases) <= 5000
    # A delete by "them" ends "me"'s.
    revocation = await theirs.delete(keys)
    assert revocation.holders == ("me",) and 4.0 < revocation.wait_s <= 5.0
    assert not await redis_client.exists(keys.leases)
