"""Read leases across proxies: warm reads skip Redis, yet every acknowledged write is what
the next read through any proxy returns, with no waiting on the reader's side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.coherence.leases import Leases
from proxy.http.appkeys import ENGINE
from proxy.store.keys import SessionKeys
from proxy.store.store import Revocation
from tests.coherence import leased
from tests.conftest import ProxyFactory, app_of
from tests.engine_fixtures import messages, msgs, put

Client = TestClient[Any, Any]


async def test_warm_reads_skip_redis_and_see_other_writers_at_once(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a, b = await leased.two_proxies(proxy_factory)
    history = msgs(10)
    assert await put(a, "lease", {"messages": history}) == 200
    assert await messages(b, "lease") == history  # B caches it
    assert await messages(b, "lease", "recent_messages_limit=3") == history[-3:]  # + lease
    before = await leased.commands(redis_client)
    for _ in range(5):
        assert await messages(b, "lease", "recent_messages_limit=3") == history[-3:]
    # Only the INFO call itself: B answered five warm reads without Redis.
    assert await leased.commands(redis_client) - before <= 1
    # A's write is acknowledged only once B has let go of the old version, so B's very
    # next read (no waiting here) returns it.
    for body in (history + msgs(2, 10), msgs(4, 50)):
        assert await put(a, "lease", {"messages": body}) == 200
        assert await messages(b, "lease", "recent_messages_limit=3") == body[-3:]
        assert await messages(b, "lease", "recent_messages_limit=3") == body[-3:]
    resp = await a.delete("/v1/working-memory/lease")
    assert resp.status == 200
    assert await messages(b, "lease") is None


async def test_writes_through_the_holder_need_no_release(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    (a, _) = await leased.two_proxies(proxy_factory)
    assert await put(a, "own", {"messages": msgs(3)}) == 200
    # The write granted A a lease: its reads need nothing from Redis.
    before = await leased.commands(redis_client)
    for count in (5, 7):
        assert await put(a, "own", {"messages": msgs(count)}) == 200
        assert await messages(a, "own", "recent_messages_limit=2") == msgs(count)[-2:]
    meta = SessionKeys.build("amp", "own")
    assert await redis_client.hkeys(meta.leases) == [app_of(a)[ENGINE].store.holder.encode()]
    # The two PUTs' scripts and index upkeep, the INFO calls; no reads.
    assert await leased.commands(redis_client) - before < 40


async def test_a_released_lease_does_not_hold_the_writer(
        proxy_factory: ProxyFactory) -> None:
    a, b = await leased.two_proxies(proxy_factory, read_lease_ms=8000)
    assert await put(a, "quick", {"messages": msgs(3)}) == 200
    assert await messages(b, "quick") == msgs(3)
    assert await messages(b, "quick") == msgs(3)  # B now holds a lease
    assert leased.coherence(b).leases.live(SessionKeys.build("amp", "quick").meta)
    started = time.monotonic()
    assert await put(a, "quick", {"messages": msgs(4)}) == 200
    assert time.monotonic() - started < 4.0  # B released; A did not wait the lease out
    assert not leased.coherence(b).leases.live(SessionKeys.build("amp", "quick").meta)
    assert await messages(b, "quick") == msgs(4)


async def test_a_holder_that_is_gone_is_waited_out(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a = await proxy_factory()
    await leased.healthy(a)
    assert await put(a, "ghost", {"messages": msgs(3)}) == 200
    # A proxy that took a lease and vanished: nobody will announce its release.
    keys = SessionKeys.build("amp", "ghost")
    seconds, micros = await redis_client.time()
    await redis_client.hset(keys.leases, "gone", str(seconds * 1000 + micros // 1000 + 600))
    started = time.monotonic()
    assert await put(a, "ghost", {"messages": msgs(4)}) == 200
    waited = time.monotonic() - started
    assert 0.5 < waited < 5.0  # until its lease ran out, not a moment less
    assert await redis_client.hkeys(keys.leases) == [app_of(a)[ENGINE].store.holder.encode()]
    # A delete waits the same way.
    seconds, micros = await redis_client.time()
    await redis_client.hset(keys.leases, "gone", str(seconds * 1000 + micros // 1000 + 400))
    started = time.monotonic()
    assert (await a.delete("/v1/working-memory/ghost")).status == 200
    assert 0.3 < time.monotonic() - started < 5.0
    assert not await redis_client.exists(keys.leases, keys.meta)


@pytest.mark.parametrize(("wait_ms", "holders", "expected"), [
    (0, b"", ()), (250, b"p1", ("p1",)), (b"900", b"p1,p2", ("p1", "p2"))])
def test_revocation_from_a_script_reply(wait_ms: int | bytes, holders: bytes,
                                        expected: tuple[str, ...]) -> None:
    revocation = Revocation.from_reply(7, wait_ms, holders)
    assert revocation.holders == expected
    assert revocation.wait_s == int(wait_ms) / 1000


async def test_a_release_announced_before_the_writer_asks_is_kept() -> None:
    leases = Leases("me", 1000)
    leases.release_seen("k", 5, "other")
    started = time.monotonic()
    await leases.released("k", Revocation(5, ("other",), 3.0))
    assert time.monotonic() - started < 1.0
    # A release for another version does not count.
    leases.release_seen("k", 4, "other")
    started = time.monotonic()
    await leases.released("k", Revocation(6, ("other",), 0.2))
    assert time.monotonic() - started >= 0.2


async def test_a_deleted_session_recreated_elsewhere_is_not_trusted_on_an_old_lease(
        proxy_factory: ProxyFactory) -> None:
    a, b = await leased.two_proxies(proxy_factory, read_lease_ms=1000)
    assert await put(a, "again", {"messages": msgs(3)}) == 200  # A holds a lease
    assert (await a.delete("/v1/working-memory/again")).status == 200  # and ends it
    # From here on A hears announcements late (they queue up), as under a slow network.
    inv = leased.coherence(a).invalidation
    assert inv is not None
    late: list[bytes] = []
    inv._receive = late.append  # type: ignore[method-assign,assignment]
    assert await put(b, "again", {"messages": msgs(4)}) == 200
    assert await messages(a, "again") == msgs(4)
    assert await messages(a, "again") == msgs(4)
    # Only a lease A really holds in Redis may spare it the version check: B's write
    # must either name A (and wait for it) or find A checking.
    assert await put(b, "again", {"messages": msgs(5)}) == 200
    assert await messages(a, "again") == msgs(5)
    assert late  # the announcements were held back indeed


async def test_a_steadily_read_session_renews_its_lease_in_the_background(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    (a, _) = await leased.two_proxies(proxy_factory, read_lease_ms=400)
    assert await put(a, "steady", {"messages": msgs(3)}) == 200
    leases = leased.coherence(a).leases
    meta = SessionKeys.build("amp", "steady").meta
    for _ in range(12):  # 1.2 s of reads, three lease lengths
        assert await messages(a, "steady", "recent_messages_limit=2") == msgs(3)[-2:]
        assert leases.live(meta)
        await asyncio.sleep(0.1)
    # Renewed in Redis too: a writer elsewhere would have to wait for A's release.
    assert await redis_client.hkeys(SessionKeys.build("amp", "steady").leases) == [
        app_of(a)[ENGINE].store.holder.encode()]


def test_leases_held_are_bounded_and_the_oldest_grant_goes_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from proxy.coherence import leases as leases_module

    monkeypatch.setattr(leases_module, "REMEMBERED", 3)
    held = Leases("me", 10_000)
    now = time.monotonic()
    for key in ("a", "b", "c"):
        held.granted(key, now)
    held.granted("a", now)  # renewed: now the newest grant
    held.granted("d", now)  # past the bound: the oldest grant ("b") is forgotten
    assert [held.live(k) for k in ("a", "b", "c", "d")] == [True, False, True, True]
    held.ended("c")
    assert not held.live("c")
