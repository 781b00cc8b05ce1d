"""The engine through real HTTP on a real redis-server: what each request costs in Redis
(commands and bytes, counted by Redis itself), and that edits are detected.

Each test here runs its proxies on a redis-server of this module's own, whose statistics
(CONFIG RESETSTAT, INFO) then see only the request under test.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.localstack import Service
from tests import engine_fixtures as ef
from tests.conftest import ProxyFactory
from tests.engine_fixtures import WM, Message, Meter, msg, msgs

own_redis = ef.own_redis
own_client = ef.own_client
put, get, keys_of, SIZE, KB = ef.put_ok, ef.get_ok, ef.keys_of, ef.SIZE, ef.KB

async def test_append_of_two_writes_only_those_two(
        big_session: tuple[TestClient[Any, Any], list[Message]],
        proxy_factory: ProxyFactory, own_redis: Service, own_client: aioredis.Redis) -> None:
    proxy, history = big_session
    meter = Meter(own_client)
    body_size = len(orjson.dumps({"messages": history}))
    new = [msg(SIZE), msg(SIZE + 1)]
    new_size = len(orjson.dumps(new))

    await meter.reset()
    echo = await put(proxy, "big", {"messages": history + new})
    warm = await meter.read()
    assert echo["messages"][-3:] == (history + new)[-3:]
    assert len(echo["messages"]) == SIZE + 2
    assert warm.bytes_in < new_size + 2 * KB, warm
    assert warm.bytes_out < 1 * KB, warm
    assert warm.count("rpush") == 1 and warm.count("del") == 0, warm.calls

    cold_proxy = await proxy_factory(redis_url=own_redis.url)
    newer = [msg(SIZE + 2), msg(SIZE + 3)]
    await meter.reset()
    await put(cold_proxy, "big", {"messages": history + new + newer})
    cold = await meter.read()
    assert cold.bytes_in < new_size + 2 * KB, cold
    assert cold.bytes_out < 2 * KB, cold
    assert cold.count("rpush") == 1 and cold.count("del") == 0, cold.calls
    assert await own_client.llen(keys_of("big").messages) == SIZE + 4
    got = await get(proxy, "big", "recent_messages_limit=5")
    assert got["messages"] == (history + new + newer)[-5:]
    print(f"\nPUT +2 on {SIZE} (body {body_size} B): warm {warm}, cold {cold}")


async def test_ttl_renewal_and_delete_are_constant_work(
        big_session: tuple[TestClient[Any, Any], list[Message]],
        own_client: aioredis.Redis) -> None:
    proxy, history = big_session
    meter = Meter(own_client)
    keys = keys_of("big")

    await meter.reset()
    await put(proxy, "big", {"messages": history, "ttl_seconds": 600})
    renew = await meter.read()
    assert renew.bytes_in < 2 * KB and renew.count("expire") == 3, renew
    # script, version, TTL read, one HSET, 3 EXPIRE, the invalidation PUBLISH, index upkeep,
    # and the read leases: clock, holders, the writer's own lease and its expiry
    assert renew.total_calls <= 15, renew.calls
    for key in keys.all():
        assert 590 < await own_client.ttl(key) <= 600

    await meter.reset()
    resp = await proxy.delete(f"{WM}big")
    assert resp.status == 200
    deleted = await meter.read()
    # + the read leases: clock and holders
    assert deleted.total_calls <= 10 and deleted.bytes_in < 1 * KB, deleted
    assert not await own_client.exists(*keys.all())
    assert (await proxy.get(f"{WM}big")).status == 404
    print(f"\nTTL renewal {renew}; DELETE {deleted}")


# --- edit detection --------------------------------------------------------------------

EDITS = {
    "content of message 3": lambda h: [*h[:3], {**h[3], "content": "changed"}, *h[4:]],
    "drop message 3": lambda h: h[:3] + h[4:],
    "swap messages 3 and 4": lambda h: [*h[:3], h[4], h[3], *h[5:]],
    "id of message 3": lambda h: [*h[:3], {**h[3], "id": "other"}, *h[4:]],
    "created_at of message 3": lambda h: [*h[:3], {**h[3], "created_at": ef.stamp(2)}, *h[4:]],
    "role of the last message": lambda h: [*h[:-1], {**h[-1], "role": "system"}],
    "drop the last message": lambda h: h[:-1],
    "replace all": lambda h: [msg(i, "new") for i in range(3)],
    "empty": lambda h: [],
}


@pytest.mark.parametrize("edit", list(EDITS))
async def test_edits_are_detected_and_rewritten(edit: str, proxy_factory: ProxyFactory,
                                                own_redis: Service,
                                                own_client: aioredis.Redis) -> None:
    proxy = await proxy_factory(redis_url=own_redis.url)
    history = msgs(5_000)
    await put(proxy, "ed", {"messages": history})
    meter = Meter(own_client)
    changed = EDITS[edit](history) + [msg(9_000)]  # an edit and an append at once
    await meter.reset()
    assert (await put(proxy, "ed", {"messages": changed}))["messages"] == changed
    usage = await meter.read()
    assert usage.count("del") == 1, usage.calls  # a rewrite, not an append
    cold = await proxy_factory(redis_url=own_redis.url)
    for client in (proxy, cold):
        assert (await get(client, "ed"))["messages"] == changed
        assert (await get(client, "ed", "recent_messages_limit=2"))["messages"] == \
            sorted(changed, key=lambda m: m["created_at"])[-2:]
    # The rewrite leaves a state the next append is proven against again.
    await meter.reset()
    await put(cold, "ed", {"messages": changed + [msg(9_001)]})
    assert (await meter.read()).count("del") == 0
    assert (await get(proxy, "ed"))["messages"] == changed + [msg(9_001)]


async def test_session_fields_change_without_rewriting_messages(
        proxy_factory: ProxyFactory, own_redis: Service, own_client: aioredis.Redis) -> None:
    proxy = await proxy_factory(redis_url=own_redis.url)
    history = msgs(1_000)
    await put(proxy, "fields", {"messages": history, "context": "a"})
    meter = Meter(own_client)
    await meter.reset()
    await put(proxy, "fields", {"messages": history, "context": "b", "data": {"k": 1}})
    usage = await meter.read()
    assert usage.count("del", "rpush") == 0 and usage.bytes_in < 2 * KB, usage
    got = await get(proxy, "fields")
    assert (got["context"], got["data"], got["messages"]) == ("b", {"k": 1}, history)


async def test_non_canonical_input_is_stored_canonically(
        proxy_factory: ProxyFactory, own_redis: Service, own_client: aioredis.Redis) -> None:
    """Bodies without the optional fields (as most clients send) still append O(new)."""
    proxy = await proxy_factory(redis_url=own_redis.url)
    short = [{k: m[k] for k in ("role", "content", "id", "created_at")} for m in msgs(2_000)]
    await put(proxy, "nc", {"messages": short[:1_998]})
    meter = Meter(own_client)
    await meter.reset()
    echo = await put(proxy, "nc", {"messages": short})
    usage = await meter.read()
    assert echo["messages"] == msgs(2_000)
    assert usage.count("del") == 0 and usage.bytes_in < 2 * KB, usage
    cold = await proxy_factory(redis_url=own_redis.url)
    assert (await get(cold, "nc"))["messages"] == msgs(2_000)


# --- restarts and sessions that so far live only in the upstream -----------------------


async def test_data_survives_a_new_app_instance(proxy_factory: ProxyFactory,
                                                own_redis: Service) -> None:
    first = await proxy_factory(redis_url=own_redis.url)
    history = msgs(300)
    await put(first, "rs", {"messages": history, "context": "kept", "namespace": "n"})
    await first.close()
    second = await proxy_factory(redis_url=own_redis.url)
    got = await get(second, "rs", "namespace=n&recent_messages_limit=7")
    assert (got["messages"], got["context"]) == (history[-7:], "kept")
    assert (await get(second, "rs", "namespace=n"))["messages"] == history
    await put(second, "rs", {"messages": history + [msg(300)], "namespace": "n"})
    assert (await get(second, "rs", "namespace=n"))["messages"][-2:] == history[-1:] + [msg(300)]
