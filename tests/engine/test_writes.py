"""Writes in buffered mode: acknowledged from memory, landed behind, never undone."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from proxy.store.keys import SessionKeys
from tests.conftest import ProxyFactory
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
