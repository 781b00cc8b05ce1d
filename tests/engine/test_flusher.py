"""The group-commit flusher: one pipeline for many writes, buffered acknowledgement,
draining at shutdown, backpressure, and a Redis that is slow or gone."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.coherence import Coherence
from proxy.engine.flusher import Flusher
from proxy.errors import Conflict, Overloaded
from proxy.http.appkeys import WRITES
from proxy.localstack import free_port
from proxy.store.keys import SessionKeys
from proxy.store.store import Meta, Store, Write, index_member
from tests.conftest import ProxyFactory, app_of
from tests.engine_fixtures import WM, msg

Client = TestClient[Any, Any]
JSON = {"Content-Type": "application/json"}


async def put(client: Client, sid: str, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await client.put(WM + sid, data=orjson.dumps(body), headers=JSON)
    return resp.status, resp


def create(store: Store, sid: str, version: int = 0) -> Write:
    meta = Meta(count=1, doc=b"{}", index_member=index_member(sid, None, None))
    return Write(store.keys(sid), True, version, meta, [b"{}"], [1], None, 1.0)


async def test_group_commit_and_conflicts(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, "t")
    flusher = Flusher(store, Coherence(store), batch_max=64, queue_max=1000, queue_wait=0.1,
                      linger=0.002)
    flusher.start()
    try:
        futures = [await flusher.submit(create(store, f"s{i}")) for i in range(200)]
        versions = await asyncio.gather(*futures)
        assert all(v > 0 for v in versions)
        assert flusher.writes == 200 and flusher.batches <= 200 // 64 + 2
        # A create of a session that exists, or a stale version, is a Conflict.
        stale = await flusher.submit(create(store, "s0"))
        with pytest.raises(Conflict) as caught:
            await stale
        assert caught.value.current_version == versions[0]
        assert await (await flusher.submit(create(store, "s0", versions[0]))) == versions[0] + 1
    finally:
        await flusher.close(1.0)
    with pytest.raises(Overloaded):
        await flusher.submit(create(store, "late"))


async def test_concurrent_puts_share_pipelines(proxy: Client,
                                               redis_client: aioredis.Redis) -> None:
    flusher = app_of(proxy)[WRITES].flusher
    before = flusher.batches
    results = await asyncio.gather(*(put(proxy, f"gc{i}", {"messages": [msg(i)]})
                                     for i in range(100)))
    assert [status for status, _ in results] == [200] * 100
    assert flusher.batches - before < 50, "PUTs were not committed in groups"


async def test_full_queue_answers_503_with_retry_after(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    proxy = await proxy_factory(queue_max=1, queue_wait_ms=5)
    assert (await put(proxy, "bp-seed", {"messages": [msg(0)]}))[0] == 200
    await redis_client.execute_command("CLIENT", "PAUSE", "500", "WRITE")
    results = await asyncio.gather(*(put(proxy, f"bp{i}", {"messages": [msg(i)]})
                                     for i in range(8)))
    statuses = [status for status, _ in results]
    assert 503 in statuses and 200 in statuses, statuses
    for status, resp in results:
        if status == 503:
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["detail"] == "write queue full"
    # Nothing partial: a refused PUT left no session behind.
    for i, (status, _) in enumerate(results):
        stored = await redis_client.exists(SessionKeys.build("amp", f"bp{i}").meta)
        assert stored == (status == 200)


@pytest.mark.parametrize("mode", ["flushed", "buffered"])
async def test_redis_down_gives_503_json(mode: str, proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0", ack_mode=mode)
    for resp in (await proxy.put(WM + "down", data=orjson.dumps({"messages": [msg(1)]}),
                                 headers=JSON),
                 await proxy.get(WM + "down"), await proxy.get(WM + "down?recent_messages_limit=3"),
                 await proxy.get(WM), await proxy.delete(WM + "down")):
        assert resp.status == 503, await resp.text()
        assert resp.content_type == "application/json"
        assert (await resp.json())["detail"] == "redis unavailable"
