"""The upstream down (connections refused, through the TCP fault proxy): the working-memory
routes the proxy answers from its own state keep working under a 25-session load, every
route passed through answers 502 at once, and with auth on only credentials whose verdict
is remembered are served, until that verdict runs out (fail closed).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from proxy.app import create_app
from proxy.localstack import Service
from tests.conftest import ProxyFactory, make_settings
from tests.http.conftest import AuthStack, token_stack
from tests.support.faultproxy import fault_proxy
from tests.system.cluster_fixtures import FIGURES
from tests.system.faultload import WM, Load, message, ms

__all__ = ["token_stack"]

pytestmark = pytest.mark.faults

PASS_THROUGH = ("/v1/health", "/v1/summary-views", "/v1/long-term-memory/search")


def url_of(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


async def timed(http: aiohttp.ClientSession, method: str, url: str,
                **kwargs: Any) -> tuple[int, float]:
    started = time.perf_counter()
    async with http.request(method, url, **kwargs) as resp:
        await resp.read()
        return resp.status, time.perf_counter() - started


async def test_upstream_down_working_memory_goes_on(upstream: Service,
                                                   proxy_factory: ProxyFactory,
                                                   redis_client: aioredis.Redis) -> None:
    with fault_proxy(upstream.url) as down:
        proxy = await proxy_factory(upstream_url=down.url("http"))
        base = url_of(proxy)
        async with aiohttp.ClientSession() as http:
            load = Load(base, prefix="up")
            load.start(http)
            await asyncio.sleep(1.0)
            down.cut()
            cut = time.monotonic()
            await asyncio.sleep(3.0)
            passed = [await timed(http, "GET" if p != PASS_THROUGH[2] else "POST", base + p,
                                  json={"text": "x"} if p == PASS_THROUGH[2] else None)
                      for p in PASS_THROUGH for _ in range(5)]
            new = await timed(http, "PUT", f"{base}{WM}up-new",
                              json={"messages": [message("up-new", 0)]})
            await load.stop()
            down.restore()
    during = load.between(cut, time.monotonic())
    line = (f"upstream down, 25 sessions: {len(during)} working-memory requests, statuses "
            f"{sorted({s.status for s in during})}, latency "
            f"{ms([s.latency for s in during])}; a new session's PUT {new[0]}; pass-through "
            f"answers {sorted({s for s, _ in passed})} in {ms([t for _, t in passed])}")
    print("\n" + line)
    FIGURES.append(line)
    assert during and {s.status for s in during} == {200}
    assert new[0] == 200
    assert {s for s, _ in passed} == {502} and max(t for _, t in passed) < 0.5


async def test_upstream_down_with_auth_serves_remembered_verdicts_then_fails_closed(
        token_stack: AuthStack, proxy_redis: Service, redis_client: aioredis.Redis,
        aiohttp_client: Any) -> None:
    ttl = 3.0
    valid = {"Authorization": f"Bearer {token_stack.valid}"}
    other = token_stack.add_token("another")  # valid too, never seen by the proxy
    with fault_proxy(token_stack.upstream.url) as down:
        settings = make_settings(down.url("http"), proxy_redis.url, auth_mode="on",
                                 auth_cache_ttl=ttl, upstream_service_token=token_stack.valid)
        base = url_of(await aiohttp_client(create_app(settings)))
        async with aiohttp.ClientSession() as http:
            sid = f"{WM}auth-up"
            body = {"messages": [message("auth-up", 0)]}
            assert (await timed(http, "PUT", base + sid, json=body, headers=valid))[0] == 200
            remembered = time.monotonic()
            down.cut()
            served = [await timed(http, "GET", base + sid, headers=valid) for _ in range(5)]
            stranger = await timed(http, "GET", base + sid,
                                   headers={"Authorization": f"Bearer {other['token']}"})
            passed = await timed(http, "GET", base + "/v1/summary-views", headers=valid)
            await asyncio.sleep(max(0.0, remembered + ttl + 0.2 - time.monotonic()))
            expired = await timed(http, "GET", base + sid, headers=valid)
            down.restore()
            again = await timed(http, "GET", base + sid, headers=valid)
    line = (f"upstream down, auth on (verdicts kept {ttl:.0f} s): a remembered credential "
            f"served {sorted({s for s, _ in served})}; a credential never seen {stranger[0]} "
            f"in {1000 * stranger[1]:.1f} ms; pass-through {passed[0]}; the remembered one "
            f"after its verdict ran out {expired[0]}; after the upstream returned {again[0]}")
    print("\n" + line)
    FIGURES.append(line)
    assert {s for s, _ in served} == {200}
    assert stranger[0] == 503 and passed[0] == 502
    assert expired[0] == 503 and again[0] == 200
