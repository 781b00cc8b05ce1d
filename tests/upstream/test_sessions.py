"""Sessions that exist only in the upstream are imported once; missing ones are 404 in both."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from proxy.localstack import Service
from tests import engine_fixtures as ef
from tests.conftest import ProxyFactory
from tests.engine_fixtures import WM, msgs

own_redis = ef.own_redis
put, get, keys_of, SIZE, KB = ef.put_ok, ef.get_ok, ef.keys_of, ef.SIZE, ef.KB


own_client = ef.own_client


@pytest.mark.parametrize("scope", ["", "namespace=ns-imp&user_id=u-imp"])
async def test_upstream_session_is_imported_once(
        scope: str, proxy_factory: ProxyFactory, direct: Any, own_redis: Service,
        own_client: aioredis.Redis) -> None:
    sid = f"imp-{uuid.uuid4().hex[:8]}"
    given = dict(p.split("=") for p in scope.split("&")) if scope else {}
    scope_body = {"namespace": given.get("namespace"), "user_id": given.get("user_id")}
    body = {"messages": msgs(40), "context": "from before", "data": {"a": 1}, **scope_body}
    resp = await direct.put(f"{WM}{sid}", data=orjson.dumps(body),
                            headers={"Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    upstream_view = orjson.loads(await (await direct.get(f"{WM}{sid}?{scope}")).read())

    proxy = await proxy_factory(redis_url=own_redis.url)
    ours = await get(proxy, sid, scope)
    assert ours == upstream_view
    assert (await get(proxy, sid, scope + "&recent_messages_limit=3"))["messages"] == msgs(40)[-3:]
    resp = await direct.get(f"{WM}{sid}?{scope}")
    assert resp.status == 404, "the upstream copy should be gone after the import"
    resp.release()
    # From now on the proxy answers alone: a new upstream copy is not imported over it.
    resp = await direct.put(f"{WM}{sid}", data=orjson.dumps({**body, "messages": msgs(2)}),
                            headers={"Content-Type": "application/json"})
    resp.release()
    cold = await proxy_factory(redis_url=own_redis.url)
    assert (await get(cold, sid, scope))["messages"] == msgs(40)
    await put(cold, sid, {**body, "messages": msgs(41)})
    assert (await get(proxy, sid, scope))["messages"] == msgs(41)
    (await direct.delete(f"{WM}{sid}?{scope}")).release()


async def test_missing_session_is_404_in_both(proxy_factory: ProxyFactory, direct: Any,
                                              own_redis: Service) -> None:
    proxy = await proxy_factory(redis_url=own_redis.url)
    sid = f"none-{uuid.uuid4().hex[:8]}"
    ours, theirs = await proxy.get(f"{WM}{sid}"), await direct.get(f"{WM}{sid}")
    assert ours.status == theirs.status == 404
    assert await ours.read() == await theirs.read()
