"""The engine and the upstream's copy: a session the proxy cannot reproduce byte for byte
stays in the upstream and is served from there; one only the upstream holds is imported."""

from __future__ import annotations

import uuid
from typing import Any, cast

import aiohttp
import redis.asyncio as aioredis

from proxy.http.appkeys import ENGINE
from tests.conftest import ProxyFactory, app_of
from tests.engine_fixtures import WM, msgs

BIG = "?context_window_max=100000000"


async def test_an_unrepresentable_session_is_left_in_the_upstream(
        proxy_factory: ProxyFactory, direct: aiohttp.ClientSession,
        redis_client: aioredis.Redis) -> None:
    proxy = await proxy_factory()
    sid = f"big-int-{uuid.uuid4().hex[:8]}"
    # An integer beyond 64 bits: the upstream keeps it exact, RedisJSON and orjson do not.
    raw = b'{"messages": [], "data": {"n": 123456789012345678901234567890}}'
    resp = await proxy.put(f"{WM}{sid}{BIG}", data=raw,
                           headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    assert b"123456789012345678901234567890" in await resp.read()
    # Nothing of it is stored here; reads fall through to the upstream's copy.
    metas = cast(list[bytes], await redis_client.keys("amp:{*}:meta"))
    members = [cast(bytes, await redis_client.hget(k, "ix") or b"") for k in metas]
    assert not [m for m in members if m.endswith(f'"{sid}"]'.encode())]
    ours = await proxy.get(f"{WM}{sid}")
    theirs = await direct.get(f"{WM}{sid}")
    assert ours.status == theirs.status == 200
    assert await ours.read() == await theirs.read()


async def test_a_session_only_the_upstream_holds_is_imported(
        proxy_factory: ProxyFactory, direct: aiohttp.ClientSession,
        redis_client: aioredis.Redis) -> None:
    sid = f"only-up-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"messages": msgs(3)}
    resp = await direct.put(f"{WM}{sid}{BIG}", json=body)
    assert resp.status == 200, await resp.text()
    proxy = await proxy_factory()
    got = await proxy.get(f"{WM}{sid}")
    assert got.status == 200
    assert [m["id"] for m in (await got.json())["messages"]] == [m["id"] for m in msgs(3)]
    assert await redis_client.exists(app_of(proxy)[ENGINE].store.keys(sid).meta)
