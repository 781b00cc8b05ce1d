"""Coherence with read leases off: every read asks Redis for the version."""

from __future__ import annotations

import redis.asyncio as aioredis

from proxy.coherence import Coherence
from proxy.http.appkeys import COHERENCE
from proxy.store.keys import SessionKeys
from tests.coherence import leased
from tests.conftest import ProxyFactory, app_of
from tests.engine_fixtures import messages, msgs, put


async def test_leases_off_checks_every_read(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    b = await proxy_factory(read_lease_ms=0)
    assert app_of(b)[COHERENCE].__class__ is Coherence
    assert await put(b, "off", {"messages": msgs(3)}) == 200
    assert await messages(b, "off") == msgs(3)
    before = await leased.commands(redis_client)
    assert await messages(b, "off") == msgs(3)
    assert await leased.commands(redis_client) - before == 2  # HGET v, then INFO
    assert not await redis_client.exists(SessionKeys.build("amp", "off").leases)
