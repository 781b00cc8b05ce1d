"""Wiring: every resource is built from Settings at start-up and torn down in reverse."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from proxy.coherence import Coherence, LeasedCoherence
from proxy.http.appkeys import COHERENCE, ENGINE, WRITES
from tests.conftest import ProxyFactory, app_of


async def test_settings_choose_the_collaborators(proxy_factory: ProxyFactory) -> None:
    leased = await proxy_factory()
    assert isinstance(app_of(leased)[COHERENCE], LeasedCoherence)
    plain = await proxy_factory(read_lease_ms=0, ack_mode="buffered")
    app: Any = app_of(plain)
    assert type(app[COHERENCE]) is Coherence
    assert app[WRITES].buffered and app[ENGINE].writes is app[WRITES]
    # One coherence object, shared by the engine and the flusher it writes through.
    assert app[ENGINE].coherence is app[WRITES].flusher.coherence is app[COHERENCE]


async def test_shutdown_drains_writes_before_redis_closes(
        proxy_factory: ProxyFactory, redis_client: aioredis.Redis) -> None:
    client = await proxy_factory(ack_mode="buffered")
    app: Any = app_of(client)
    resp = await client.put("/v1/working-memory/drain?context_window_max=100000000",
                            json={"messages": [{"role": "user", "content": "x", "id": "1",
                                                "created_at": "2024-01-01T00:00:00Z"}]})
    assert resp.status == 200
    store = app[ENGINE].store
    keys = store.keys("drain")
    await client.close()  # runs the cleanup contexts in reverse: the flusher drains first
    assert app[WRITES].flusher.writes == 1
    assert await redis_client.llen(keys.messages) == 1
