"""The worker: bounded concurrency across proxies, one round per session at a time,
retries through an outage, and claims given back on shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientSession

from proxy.localstack import Service
from proxy.sync.ledger import Claim
from tests.support.faultproxy import fault_proxy
from tests.sync.conftest import SYNC, SyncProxy
from tests.sync.ledgers import total
from tests.sync.sessions import eventually, msgs
from tests.sync.test_handover import get, put, sid, until_handed_over

pytestmark = [pytest.mark.upstream, pytest.mark.faults]


async def test_rounds_stay_within_the_limit_of_all_proxies_and_one_per_session(
        sync_proxy: SyncProxy, upstream: Service) -> None:
    with fault_proxy(upstream.url) as slow:
        slow.set_latency(0.05, 0.05)  # every round takes a while
        settings = {"upstream_url": slow.url("http"), "sync_concurrency": 2,
                    "auth_mode": "off"}
        one, two = await sync_proxy(**settings), await sync_proxy(**settings)
        in_flight: dict[bytes, int] = {}
        peak = {"all": 0, "same": 0}

        def watch(worker: Any) -> None:
            run = worker.handover.run

            async def counted(claim: Claim, claimed_ms: int) -> Any:
                in_flight[claim.member] = in_flight.get(claim.member, 0) + 1
                peak["all"] = max(peak["all"], sum(in_flight.values()))
                peak["same"] = max(peak["same"], in_flight[claim.member])
                try:
                    return await run(claim, claimed_ms)
                finally:
                    in_flight[claim.member] -= 1
            worker.handover.run = counted

        watch(one.app[SYNC])
        watch(two.app[SYNC])
        sessions = [sid() for _ in range(8)]
        for round_ in range(3):
            for i, s in enumerate(sessions):
                await put(one if (i + round_) % 2 else two, s, {"messages": msgs(round_ + 1)})
            await asyncio.sleep(0.1)

        async def settled() -> bool | None:
            for s in sessions:
                doc = await get(slow_client, s)
                if doc is None or len(doc["messages"]) != 3:
                    return None
            return None if any(in_flight.values()) else True
        async with ClientSession(slow.url("http")) as slow_client:
            await eventually(settled, timeout=20)
        assert peak["all"] == 2  # the limit, reached, never passed
        assert peak["same"] == 1


async def test_a_failed_hand_over_is_retried_until_the_upstream_is_back(
        sync_proxy: SyncProxy, upstream: Service, direct: ClientSession) -> None:
    with fault_proxy(upstream.url) as link:
        proxy = await sync_proxy(upstream_url=link.url("http"), auth_mode="off")
        s = sid()
        link.cut()  # the upstream is down
        await put(proxy, s, {"messages": msgs(3)})  # acknowledged all the same
        worker = proxy.app[SYNC]
        await eventually(lambda: _true(worker.results["failed"] >= 2), timeout=10)
        assert await get(direct, s) is None
        link.restore()
        await until_handed_over(proxy, direct, s)
        await eventually(lambda: _true(worker.results["ok"] == 1))  # and the round ends


async def test_shutdown_gives_back_the_claims_of_rounds_it_stops(
        sync_proxy: SyncProxy, upstream: Service) -> None:
    with fault_proxy(upstream.url) as link:
        proxy = await sync_proxy(upstream_url=link.url("http"), auth_mode="off",
                                 shutdown_timeout=0.3)
        redis = proxy.app[SYNC].ledger.redis
        link.pause()  # the round hangs on the upstream
        await put(proxy, sid(), {"messages": msgs(1)})
        await eventually(lambda: _true(proxy.app[SYNC].running == 1))
        await proxy.close()
        link.resume()
        assert await total(redis, "claims") == 0  # given back: whoever runs next takes it
        assert await total(redis, "due") == 1
        assert await redis.zcard(proxy.app[SYNC].ledger.permits) == 0


async def _true(value: bool) -> bool | None:
    return True if value else None
