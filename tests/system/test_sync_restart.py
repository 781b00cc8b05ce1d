"""Hand-overs survive a proxy killed with ``kill -9`` and an upstream that is down: what
was due is in Redis, a restarted proxy takes it over, retries while the upstream is away,
and hands it over once it is back; the upstream then promotes and extracts as usual."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.localstack import ProcessGroup, Service
from tests.engine_fixtures import WM
from tests.support.faultproxy import fault_proxy
from tests.sync.ledgers import total
from tests.sync.sessions import eventually
from tests.sync.stack import LtmStack, metrics, serve

pytestmark = [pytest.mark.upstream, pytest.mark.faults]


def kill_9(service: Service) -> None:
    os.killpg(service.process.pid, signal.SIGKILL)
    service.process.wait()


async def call(http: aiohttp.ClientSession, method: str, url: str,
               body: Any = None) -> tuple[int, Any]:
    data = None if body is None else orjson.dumps(body)
    async with http.request(method, url, data=data,
                            headers={"Content-Type": "application/json"}) as resp:
        raw = await resp.read()
        return resp.status, (orjson.loads(raw) if raw else None)


async def test_hand_overs_due_at_a_crash_are_made_after_restart_once_the_upstream_is_back(
        ltm: LtmStack, proxy_redis: Service, redis_client: Any,
        group: ProcessGroup) -> None:
    ns = f"crash-{uuid.uuid4().hex[:6]}"
    sessions = [f"s{i}" for i in range(5)]
    with fault_proxy(ltm.upstream.url) as link:
        # A proxy with a long quiet period: nothing is handed over before it dies.
        first = serve(group, "proxy-1", link.url("http"), proxy_redis.url,
                      sync_quiet_ms=5_000, sync_max_lag_ms=20_000)
        async with aiohttp.ClientSession() as http:
            for s in sessions:
                status, _ = await call(http, "PUT", f"{first.url}{WM}{s}", {
                    "namespace": ns, "messages": [
                        {"role": "user", "content": f"My favourite number is {s[1]}.",
                         "id": "m0", "created_at": "2025-03-01T10:00:00Z"}]})
                assert status == 200
            kill_9(first)
            assert await total(redis_client, "due") == len(sessions)
            for s in sessions:
                status, _ = await call(http, "GET", f"{ltm.upstream.url}{WM}{s}?namespace={ns}")
                assert status == 404
            # The upstream is down when the next proxy starts: its rounds fail and retry.
            link.cut()
            second = serve(group, "proxy-2", link.url("http"), proxy_redis.url,
                           sync_quiet_ms=50, sync_max_lag_ms=200)

            async def failed_rounds() -> bool | None:
                failed = (await metrics(second.url)).get(
                    'amp_sync_handovers_total{result="failed"}', 0)
                return True if failed else None
            await eventually(failed_rounds, timeout=30, every=0.2)
            link.restore()

            async def all_handed_over() -> bool | None:
                for s in sessions:
                    status, _ = await call(http, "GET",
                                           f"{ltm.upstream.url}{WM}{s}?namespace={ns}")
                    if status != 200:
                        return None
                return True
            await eventually(all_handed_over, timeout=40, every=0.2)

            # The upstream extracts as it would have directly; the stamps come back.
            async def extracted() -> bool | None:
                status, doc = await call(http, "GET", f"{second.url}{WM}s0?namespace={ns}")
                ok = status == 200 and doc["messages"][0]["discrete_memory_extracted"] == "t"
                return True if ok else None
            await eventually(extracted, timeout=30, every=0.2)
