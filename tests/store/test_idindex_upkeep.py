"""The id index kept by the store's writes, through a real proxy: a new session is filed
under its tags, a change of scope on the same key moves it, and deletes, immediate expiry
and TTL expiry take it out."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from proxy.store.idindex import combos
from proxy.store.keys import id_index_key
from proxy.store.store import index_member
from tests.conftest import ProxyFactory
from tests.engine_fixtures import WM, put_ok


async def filed(client: aioredis.Redis, member: bytes) -> list[bool]:
    """Per combination of ``member``'s tags, whether its set holds it."""
    return [bool(await client.sismember(id_index_key("amp", c), member))  # type: ignore[arg-type]
            for c in combos(member)]


def body(**scope: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi", "id": "m1",
                          "created_at": "2024-01-01T00:00:00Z"}], **scope}


async def test_writes_file_and_unfile_sessions(proxy_factory: ProxyFactory,
                                               redis_client: aioredis.Redis) -> None:
    proxy = await proxy_factory()
    await put_ok(proxy, "Col,Two", body(namespace="X"))
    first = index_member("Col,Two", "X", None)
    assert await filed(redis_client, first) == [True] * 4  # col, two; each with/without X
    await put_ok(proxy, "Col,Two", body(user_id="X"))  # the same key, another scope
    second = index_member("Col,Two", None, "X")
    assert await filed(redis_client, first) == [False] * 4
    assert await filed(redis_client, second) == [True] * 4
    resp = await proxy.delete(WM + "Col,Two?namespace=X")
    assert resp.status == 200
    assert await filed(redis_client, second) == [False] * 4
    assert await redis_client.keys("amp:id:{*") == []


async def test_expiry_unfiles_sessions(proxy_factory: ProxyFactory,
                                       redis_client: aioredis.Redis) -> None:
    proxy = await proxy_factory()
    await put_ok(proxy, "short", body(ttl_seconds=1))
    member = index_member("short", None, None)
    assert await filed(redis_client, member) == [True]
    await put_ok(proxy, "short", body(ttl_seconds=-1))  # the upstream deletes it at once
    assert await filed(redis_client, member) == [False]
    await put_ok(proxy, "short", body(ttl_seconds=1))
    await asyncio.sleep(1.2)
    resp = await proxy.get(WM + "?namespace=x")  # listing drops what expired
    assert resp.status == 200
    assert await filed(redis_client, member) == [False]
