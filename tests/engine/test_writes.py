"""Writes in buffered mode: acknowledged from memory, landed behind, never undone."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import orjson
import redis.asyncio as aioredis

from proxy.http.appkeys import CACHE, ENGINE
from proxy.store.keys import SessionKeys
from proxy.tasks import spawn
from tests.conftest import ProxyFactory, app_of
from tests.engine.test_flusher import put
from tests.engine_fixtures import WM, msgs


async def test_buffered_put_answers_before_redis_and_lands_at_shutdown(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    proxy = await proxy_factory(ack_mode="buffered")
    keys = SessionKeys.build("amp", "buf")
    assert (await put(proxy, "buf", {"messages": msgs(3)}))[0] == 200
    await asyncio.sleep(0.2)
    await redis_client.execute_command("CLIENT", "PAUSE", "600", "WRITE")
    started = time.monotonic()
    status, _ = await put(proxy, "buf", {"messages": msgs(5)})
    assert status == 200 and time.monotonic() - started < 0.3
    # Acknowledged, not yet in Redis (writes are paused), and read back at once.
    assert await redis_client.llen(keys.messages) == 3
    got = await (await proxy.get(WM + "buf?recent_messages_limit=2")).json()
    assert got["messages"] == msgs(5)[-2:]
    assert (await (await proxy.get(WM + "buf")).json())["messages"] == msgs(5)
    await proxy.close()  # cleanup drains the flusher, waiting out the pause
    assert await redis_client.llen(keys.messages) == 5
    cold = await proxy_factory()
    assert (await (await cold.get(WM + "buf")).json())["messages"] == msgs(5)


async def test_buffered_delete_is_not_undone_by_a_write_still_queued(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    proxy = await proxy_factory(ack_mode="buffered")
    assert (await put(proxy, "bd", {"messages": msgs(2)}))[0] == 200
    await asyncio.sleep(0.1)
    await redis_client.execute_command("CLIENT", "PAUSE", "300", "WRITE")
    # The flusher is stuck on this one's pipeline while the next write waits in its queue.
    assert (await put(proxy, "bd-other", {"messages": msgs(1)}))[0] == 200
    await asyncio.sleep(0.02)
    assert (await put(proxy, "bd", {"messages": msgs(3)}))[0] == 200
    resp = await proxy.delete(WM + "bd")
    assert resp.status == 200
    await asyncio.sleep(0.5)
    assert (await proxy.get(WM + "bd")).status == 404
    assert await redis_client.exists(*SessionKeys.build("amp", "bd").all()) == 0


async def test_a_buffered_write_that_landed_leaves_its_tail_cached(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    # The next PUT proves itself against the cached tail and the next read is served
    # from it; a tail dropped on every landing would send both to Redis.
    proxy = await proxy_factory(ack_mode="buffered")
    keys = SessionKeys.build("amp", "kept")
    engine, cache = app_of(proxy)[ENGINE], app_of(proxy)[CACHE]
    for count in (3, 5, 6):
        assert (await put(proxy, "kept", {"messages": msgs(count)}))[0] == 200
        await engine.writes.settle(keys.logical)
        entry = cache.peek(keys.logical)
        assert entry is not None and not entry.pending
        assert entry.meta.version == await stored_version(redis_client, keys)
        assert entry.count == count == await redis_client.llen(keys.messages)
    got = await (await proxy.get(WM + "kept?recent_messages_limit=2")).json()
    assert got["messages"] == msgs(6)[-2:]


async def test_a_buffered_write_raced_by_another_writer_leaves_what_redis_holds(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    buffered, flushed = await proxy_factory(ack_mode="buffered"), await proxy_factory()
    keys = SessionKeys.build("amp", "raced")
    assert (await put(buffered, "raced", {"messages": msgs(2)}))[0] == 200
    await app_of(buffered)[ENGINE].writes.settle(keys.logical)
    # Both writes wait out the pause, planned on the same version: one lands as planned,
    # the other conflicts and is re-sent whole (last writer wins).
    await redis_client.execute_command("CLIENT", "PAUSE", "300", "WRITE")
    other = spawn(put(flushed, "raced", {"messages": msgs(2) + msgs(9)[-1:]}), name="other")
    await asyncio.sleep(0.05)
    assert (await put(buffered, "raced", {"messages": msgs(4)}))[0] == 200
    assert (await other)[0] == 200
    await app_of(buffered)[ENGINE].writes.settle(keys.logical)
    entry = app_of(buffered)[CACHE].peek(keys.logical)
    assert entry is None or entry.meta.version == await stored_version(redis_client, keys)
    stored = [orjson.loads(m)["id"] for m in await redis_client.lrange(keys.messages, 0, -1)]
    assert stored in ([m["id"] for m in msgs(4)], [m["id"] for m in msgs(2) + msgs(9)[-1:]])
    for client in (buffered, flushed):
        got = await (await client.get(WM + "raced")).json()
        assert [m["id"] for m in got["messages"]] == stored


async def stored_version(redis_client: aioredis.Redis, keys: SessionKeys) -> int:
    return int(cast(bytes, await redis_client.hget(keys.meta, "v")))
