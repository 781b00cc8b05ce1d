"""Several proxies on one Redis: coherent reads after acknowledged writes, and concurrent
writers that end as some serial order of their PUTs."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import ProxyFactory
from tests.engine_fixtures import WM, Client, Message, messages, msg, msgs, put


async def two(proxy_factory: ProxyFactory, **settings: Any) -> tuple[Client, Client]:
    return await proxy_factory(**settings), await proxy_factory(**settings)


async def test_a_write_through_one_is_read_through_the_other(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a, b = await two(proxy_factory)
    history = msgs(20)
    assert await put(a, "co", {"messages": history}) == 200
    assert await messages(b, "co") == history
    assert await messages(b, "co", "recent_messages_limit=3") == history[-3:]
    # B has the session cached; A appends, then edits, then shortens it.
    for body in (history + [msg(20)], [msg(0, "edited"), *history[1:]], history[:5]):
        assert await put(a, "co", {"messages": body}) == 200
        assert await messages(b, "co", "recent_messages_limit=3") == body[-3:]
        assert await messages(b, "co") == body
    # And the other way round, on top of what A has cached.
    assert await messages(a, "co") == history[:5]
    assert await put(b, "co", {"messages": history[:5] + [msg(30)]}) == 200
    assert await messages(a, "co") == history[:5] + [msg(30)]


async def test_delete_and_recreate_through_another_is_seen(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    """A session deleted and written anew (its version restarts) must not look like the
    copy another proxy still caches."""
    a, b = await two(proxy_factory)
    assert await put(a, "re", {"messages": [msg(1)]}) == 200
    assert await messages(b, "re") == [msg(1)]
    assert (await a.delete(f"{WM}re")).status == 200
    assert await messages(b, "re") is None
    assert await put(a, "re", {"messages": [msg(2)]}) == 200
    assert await messages(b, "re") == [msg(2)]
    # Same again without B looking in between: its cache still holds [msg(2)].
    assert (await a.delete(f"{WM}re")).status == 200
    assert await put(a, "re", {"messages": [msg(3, "other")]}) == 200
    assert await messages(b, "re") == [msg(3, "other")]
    assert await messages(b, "re", "recent_messages_limit=1") == [msg(3, "other")]


async def test_expired_and_recreated_session_is_not_served_stale(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    a, b = await two(proxy_factory)
    assert await put(a, "ex", {"messages": [msg(1)], "ttl_seconds": 1}) == 200
    assert await messages(b, "ex") == [msg(1)]
    await asyncio.sleep(1.2)
    assert await put(a, "ex", {"messages": [msg(2, "fresh")]}) == 200
    assert await messages(b, "ex") == [msg(2, "fresh")]


def _bodies(n: int, history: list[Message]) -> list[list[Message]]:
    """Different kinds of PUT against one history: appends, edits, drops, replacements."""
    rng = random.Random(n)
    out: list[list[Message]] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(history + [msg(1000 + i * 10 + j) for j in range(rng.randint(1, 4))])
        elif kind == 1:
            k = rng.randrange(len(history))
            out.append([*history[:k], {**history[k], "content": f"edit {i}"}, *history[k + 1:]])
        elif kind == 2:
            out.append(history[: rng.randrange(len(history))] + [msg(2000 + i)])
        else:
            out.append([msg(3000 + i * 10 + j, f"writer {i}") for j in range(3)])
    return out


async def _race(clients: list[Client], sid: str, rounds: int) -> None:
    history = msgs(50)
    assert await put(clients[0], sid, {"messages": history}) == 200
    for r in range(rounds):
        bodies = _bodies(12 + r, history)
        statuses = await asyncio.gather(*(put(clients[i % len(clients)], sid,
                                              {"messages": body})
                                          for i, body in enumerate(bodies)))
        assert statuses == [200] * len(bodies)
        seen = [await messages(c, sid) for c in clients]
        assert seen[0] in bodies, "final state is not one of the PUTs"
        assert all(s == seen[0] for s in seen), "replicas disagree"
        assert seen[0] is not None
        tails = [await messages(c, sid, "recent_messages_limit=2") for c in clients]
        # recent_messages_limit sorts by created_at first (stable), as the upstream does
        recent = sorted(seen[0], key=lambda m: m["created_at"])[-2:]
        assert all(t == recent for t in tails)
        history = seen[0]


async def test_concurrent_puts_through_two_proxies_end_as_one_of_them(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    await _race(list(await two(proxy_factory)), "race2", rounds=4)


async def test_concurrent_puts_through_one_proxy_end_as_one_of_them(
        proxy: Client, redis_client: aioredis.Redis) -> None:
    await _race([proxy], "race1", rounds=3)


async def test_concurrent_puts_through_buffered_proxies_settle_on_one_of_them(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    """Buffered mode promises no cross-proxy read-your-writes, but once the writes have
    landed the session is still one of the PUTs, whole."""
    a, b = await two(proxy_factory, ack_mode="buffered")
    history = msgs(30)
    assert await put(a, "rb", {"messages": history}) == 200
    await asyncio.sleep(0.1)
    bodies = _bodies(16, history)
    await asyncio.gather(*(put((a, b)[i % 2], "rb", {"messages": body})
                           for i, body in enumerate(bodies)))
    await asyncio.sleep(0.5)
    cold = await proxy_factory()
    assert await messages(cold, "rb") in bodies


@pytest.mark.parametrize("mode", ["flushed", "buffered"])
async def test_concurrent_appends_through_two_proxies_keep_every_acknowledged_message(
        mode: str, proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    """An append adds to whatever is stored: one that raced another proxy's is re-planned
    on top of it, never written over it."""
    a, b = await two(proxy_factory, ack_mode=mode)
    rng = random.Random(7)
    acknowledged: list[str] = []

    async def client(c: int) -> None:
        for i in range(12):
            mid = f"c{c}-{i}"
            resp = await rng.choice((a, b)).post(
                f"{WM}ap-{mode}/messages", json={"messages": [msg(c * 100 + i, mid=mid)]})
            await resp.read()
            if resp.status == 200:
                acknowledged.append(mid)

    await asyncio.gather(*(client(c) for c in range(4)))
    assert len(acknowledged) == 48
    if mode == "buffered":
        await asyncio.sleep(1.0)  # acknowledged from memory: let the writes land
    cold = await proxy_factory()
    stored = await messages(cold, f"ap-{mode}")
    assert stored is not None
    assert sorted(m["id"] for m in stored) == sorted(acknowledged)
