"""The upstream sync in front of agent-memory-server 0.15.2, whose GET of a missing key
answers with another session found by id (case-insensitively, in any scope): such an
answer is never merged into a session of the proxy's, so nothing crosses sessions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.localstack import ProcessGroup, Service, Stack, start_redis, start_upstream
from tests.conftest import ProxyFactory
from tests.engine_fixtures import WM, msg, msgs
from tests.sync.conftest import FAST, divergences
from tests.sync.sessions import eventually

pytestmark = [pytest.mark.v015, pytest.mark.upstream, pytest.mark.timeout(600)]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def upstream_0152(stack: Stack, processes: ProcessGroup) -> Iterator[Service]:
    redis = start_redis(processes, stack, "upstream-redis-sync-0152")
    service = start_upstream(processes, stack, redis.url, name="upstream-sync-0152",
                             version="0.15.2")
    yield service
    processes.stop(service)
    processes.stop(redis)


@pytest.fixture
async def direct(upstream_0152: Service) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(upstream_0152.url) as session:
        yield session


async def messages_at(client: Any, path: str) -> list[str] | None:
    resp = await client.get(path)
    if resp.status == 404:
        return None
    assert resp.status == 200, await resp.text()
    return [m["content"] for m in orjson.loads(await resp.read())["messages"]]


async def test_another_session_found_by_id_is_never_merged(
        proxy_factory: ProxyFactory, upstream_0152: Service,
        direct: aiohttp.ClientSession) -> None:
    base = uuid.uuid4().hex[:8]
    theirs, ours = f"fb-{base}", f"FB-{base}"  # one id, two spellings
    # Someone else's session, written straight to the upstream, in another user's scope.
    secret = {"messages": [msg(1, "another user's secret", mid="secret")], "user_id": "eve"}
    resp = await direct.put(f"{WM}{theirs}", data=orjson.dumps(secret), headers=JSON)
    assert resp.status == 200, await resp.text()
    proxy = await proxy_factory(upstream_url=upstream_0152.url, upstream_version="0.15.2",
                                **FAST)
    resp = await proxy.put(f"{WM}{ours}", data=orjson.dumps({"messages": msgs(2)}),
                           headers=JSON)
    assert resp.status == 200, await resp.text()
    mine = [m["content"] for m in msgs(2)]

    async def handed_over() -> list[str] | None:
        found = await messages_at(direct, f"{WM}{ours}")
        return found if found == mine else None

    # The upstream's lookup by id first answers GET /FB-... with eve's session; the
    # hand-over writes the exact key with the proxy's copy alone.
    assert await eventually(handed_over) == mine
    assert await messages_at(proxy, f"{WM}{ours}") == mine
    assert await messages_at(direct, f"{WM}{theirs}?user_id=eve") == ["another user's secret"]
    assert divergences(proxy, "foreign") == 0
