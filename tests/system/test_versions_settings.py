"""agent-memory-server 0.15.2 run with ENABLE_WORKING_MEMORY_SUMMARIZATION=false and
SUMMARIZATION_THRESHOLD=0.5, side by side with a proxy told the same (its
``upstream_summarization`` and ``upstream_summarization_threshold``): PUTs past the
threshold are not summarized, the percentages use 0.5, and the proxy answers them itself
(with the link to the upstream cut). With default settings it hands them to the upstream,
whose answer is the same."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis

from proxy.localstack import ProcessGroup, Service, Stack, start_redis, start_upstream
from tests.conftest import ProxyFactory
from tests.differential import WM, Sides
from tests.support.faultproxy import FaultProxy, fault_proxy

pytestmark = [pytest.mark.v015, pytest.mark.timeout(600)]

SETTINGS = {"upstream_summarization": False, "upstream_summarization_threshold": 0.5}
THREE = orjson.dumps({"messages": [
    {"role": "user", "content": c, "id": f"t{i}", "created_at": f"2024-01-01T00:00:0{i}Z"}
    for i, c in enumerate(["one two three four five", "six seven eight",
                           "nine ten eleven twelve"])]})  # 7 + 5 + 4 = 16 tokens


@pytest.fixture(scope="module")
def quiet_upstream(stack: Stack, processes: ProcessGroup) -> Iterator[Service]:
    redis = start_redis(processes, stack, "upstream-redis-quiet")
    service = start_upstream(processes, stack, redis.url, name="upstream-quiet",
                             version="0.15.2",
                             extra_env={"ENABLE_WORKING_MEMORY_SUMMARIZATION": "false",
                                        "SUMMARIZATION_THRESHOLD": "0.5"})
    yield service
    processes.stop(service)
    processes.stop(redis)


@pytest.fixture
def link(quiet_upstream: Service) -> Iterator[FaultProxy]:
    with fault_proxy(quiet_upstream.url) as proxy:
        yield proxy


@pytest.fixture
async def direct(quiet_upstream: Service) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(quiet_upstream.url, auto_decompress=False) as session:
        yield session


async def sides(direct: aiohttp.ClientSession, proxy_factory: ProxyFactory, link: FaultProxy,
                **settings: Any) -> Sides:
    proxy = await proxy_factory(upstream_url=link.url("http"), **settings)
    return Sides(direct, proxy)


@pytest.mark.parametrize("qs", ["context_window_max=20", "context_window_max=0",
                                "context_window_max=30", "model_name=gpt-4"])
async def test_told_the_upstreams_settings_the_proxy_answers_itself(
        direct: aiohttp.ClientSession, proxy_factory: ProxyFactory, link: FaultProxy,
        redis_client: aioredis.Redis, qs: str) -> None:
    both = await sides(direct, proxy_factory, link, **SETTINGS)
    want = await both.one("direct", "PUT", WM + "SIDE-s?" + qs, THREE)
    link.cut()  # nothing reaches the upstream now
    got = await both.one("proxy", "PUT", WM + "SIDE-s?" + qs, THREE)
    assert (got.status, got.body) == (want.status, want.body)
    assert want.status == 200 and len(want.json()["messages"]) == 3
    link.restore()
    await both.same("GET", WM + "SIDE-s?context_window_max=40")  # 16 / int(40 * 0.5)
    if qs == "context_window_max=20":
        assert want.json()["context_percentage_until_summarization"] == 100.0


async def test_with_default_settings_such_puts_go_to_the_upstream(
        direct: aiohttp.ClientSession, proxy_factory: ProxyFactory, link: FaultProxy,
        redis_client: aioredis.Redis) -> None:
    both = await sides(direct, proxy_factory, link, upstream_summarization_threshold=0.5)
    await both.same("PUT", WM + "SIDE-d?context_window_max=20", THREE)
    link.cut()
    got = await both.one("proxy", "PUT", WM + "SIDE-d?context_window_max=20", THREE)
    assert got.status == 502  # handed to the upstream, which is unreachable
    link.restore()
    await both.same("GET", WM + "SIDE-d")
