"""The Redis store: conditional writes, tail reads, TTL, DELETE and the session index,
directly and through HTTP side by side with the upstream (contract §3.1, §3.4, §5.3)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.store.keys import SessionKeys
from proxy.store.store import Meta, Revocation, Store, Write, index_member
from tests.engine_fixtures import WM, msg

Client = TestClient[Any, Any]


def write(store: Store, sid: str, messages: list[bytes], *, version: int, rewrite: bool,
          ttl: int | None = None, count: int | None = None) -> Write:
    meta = Meta(count=len(messages) if count is None else count, doc=b"{}",
                index_member=index_member(sid, None, None))
    return Write(store.keys(sid), rewrite, version, meta, messages, [1] * len(messages),
                 ttl, time.time())


async def run(store: Store, w: Write) -> Any:
    if not store.scripts_loaded:
        await store.load_scripts()  # as the flusher does before its first pipeline
    async with store.redis.pipeline(transaction=False) as pipe:
        store.queue_write(pipe, w)
        return (await pipe.execute())[0][:2]  # applied?, version (leases: see below)


async def test_ttl_covers_every_key_and_survives_writes_without_one(
        redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, "t")
    keys = store.keys("s")
    _, v = await run(store, write(store, "s", [b"1"], version=0, rewrite=True, ttl=100))
    assert [await redis_client.ttl(k) for k in keys.all()] == [100, 100, 100]
    await redis_client.expire(keys.meta, 50)
    # A rewrite without a TTL recreates the message keys: they inherit the session's TTL.
    _, v = await run(store, write(store, "s", [b"2", b"3"], version=v, rewrite=True))
    assert all([40 < await redis_client.ttl(k) <= 50 for k in keys.all()])
    await run(store, write(store, "s", [b"4"], version=v, rewrite=False, count=3))
    assert all([40 < await redis_client.ttl(k) <= 50 for k in keys.all()])


async def test_delete_removes_the_session_and_its_index_entry(
        redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, "t")
    await run(store, write(store, "s", [b"1"], version=0, rewrite=True, ttl=100))
    assert await store.list_sessions(None, None, 10, 0, 0.0) == (["s"], 1)
    assert await store.delete(store.keys("s")) == Revocation(0, (), 0.0)
    assert await redis_client.keys("t:*") == []
    assert await store.delete(store.keys("s")) == Revocation(0, (), 0.0)  # nothing left


async def test_list_drops_expired_sessions(redis_client: aioredis.Redis) -> None:
    store = Store(redis_client, "t")
    await run(store, write(store, "a", [b"1"], version=0, rewrite=True, ttl=5))
    await run(store, write(store, "b", [b"1"], version=0, rewrite=True))
    await redis_client.delete(*store.keys("a").all())  # as if expired
    assert await store.list_sessions(None, None, 10, 0, now=time.time() + 10) == (["b"], 1)
    assert await redis_client.zcard(store.expiry_key) == 0


# --- through HTTP, beside the upstream -------------------------------------------------


async def put_both(proxy: Client, direct: aiohttp.ClientSession, sid: str,
                   body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    headers = {"Content-Type": "application/json"}
    for resp in (await proxy.put(WM + sid, data=raw, headers=headers),
                 await direct.put(WM + sid, data=raw, headers=headers)):
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["ttl_seconds"] == body.get("ttl_seconds")


async def get_both(proxy: Client, direct: aiohttp.ClientSession,
                   path: str) -> tuple[Any, Any]:
    ours, theirs = await proxy.get(path), await direct.get(path)
    assert ours.status == theirs.status, path
    return orjson.loads(await ours.read()), orjson.loads(await theirs.read())


async def test_ttl_as_the_upstream(proxy: Client, direct: aiohttp.ClientSession,
                                   redis_client: aioredis.Redis,
                                   upstream_redis: Any) -> None:
    theirs_redis = aioredis.Redis.from_url(upstream_redis.url)
    sid = f"ttl-{uuid.uuid4().hex[:8]}"
    keys = SessionKeys.build("amp", sid)
    try:
        await put_both(proxy, direct, sid, {"messages": [msg(1)], "ttl_seconds": 300})
        await put_both(proxy, direct, sid, {"messages": [msg(1), msg(2)]})
        ours, theirs = await get_both(proxy, direct, WM + sid)
        assert ours["ttl_seconds"] is None and theirs["ttl_seconds"] is None
        assert 290 < await theirs_redis.ttl(f"working_memory:{sid}") <= 300
        assert all([290 < await redis_client.ttl(k) <= 300 for k in keys.all()])
        await put_both(proxy, direct, sid, {"messages": [msg(1)], "ttl_seconds": 1000})
        assert all([990 < await redis_client.ttl(k) <= 1000 for k in keys.all()])
        # ttl_seconds <= 0 deletes the session at once, though the PUT answers 200.
        await put_both(proxy, direct, sid, {"messages": [msg(1)], "ttl_seconds": 0})
        for resp in (await proxy.get(WM + sid), await direct.get(WM + sid)):
            assert resp.status == 404
        assert await redis_client.exists(*keys.all()) == 0
        assert (await (await proxy.get(WM + f"?namespace={sid}")).json())["total"] == 0
        # A TTL running out removes the session from GET and from the list.
        await put_both(proxy, direct, sid, {"messages": [msg(1)], "namespace": sid,
                                            "ttl_seconds": 1})
        await asyncio.sleep(1.3)
        ours, theirs = await get_both(proxy, direct, WM + f"?namespace={sid}")
        assert ours == theirs == {"sessions": [], "total": 0}
    finally:
        await theirs_redis.aclose()


async def test_delete_as_the_upstream(proxy: Client, direct: aiohttp.ClientSession,
                                      redis_client: aioredis.Redis) -> None:
    sid = f"del-{uuid.uuid4().hex[:8]}"
    await put_both(proxy, direct, sid, {"messages": [msg(1)], "namespace": "n", "user_id": "u"})
    # Without the right scope DELETE is a silent no-op.
    for query in ("", "?namespace=n", "?user_id=u", "?namespace=u&user_id=n"):
        ours, theirs = await proxy.delete(WM + sid + query), await direct.delete(WM + sid + query)
        assert ours.status == theirs.status == 200
        assert await ours.json() == await theirs.json() == {"status": "ok"}
    await get_both(proxy, direct, WM + sid + "?namespace=n&user_id=u")
    for client in (proxy, direct):
        resp = await client.delete(WM + sid + "?namespace=n&user_id=u")
        assert resp.status == 200
        resp.release()
    await get_both(proxy, direct, WM + sid + "?namespace=n&user_id=u")  # both 404


@pytest.mark.parametrize("query", [
    "", "limit=2", "limit=2&offset=1", "offset=4", "offset=10", "limit=100&offset=0",
    "user_id=U1", "user_id=u2&limit=1", "user_id=nobody", "user_id=",
])
async def test_list_as_the_upstream(query: str, proxy: Client, direct: aiohttp.ClientSession,
                                    redis_client: aioredis.Redis) -> None:
    ns = f"lst-{uuid.uuid4().hex[:8]}"
    writes = [("a", "u1"), ("b", "u2"), ("c", None), ("a", "u2"), ("d", "u1"), ("b", "u2")]
    for sid, user in writes:  # b/u2 is written again: it moves to the end
        await put_both(proxy, direct, sid, {"messages": [msg(1)], "namespace": ns,
                                            "user_id": user})
        await asyncio.sleep(0.01)
    ours, theirs = await get_both(proxy, direct, f"{WM}?namespace={ns.upper()}&{query}")
    assert ours == theirs
    assert ours["total"] > 0 or "nobody" in query
    for sid in "abcd":
        for user in ("u1", "u2", ""):
            (await direct.delete(f"{WM}{sid}?namespace={ns}&user_id={user}")).release()
