"""25 long sessions written concurrently and steadily through the proxy (a process of its
own): the hand-overs stay within their bound (one per session per ``sync_max_lag_ms``
while it is written, plus one when it goes quiet), the lag within the max lag plus what
the concurrency bound makes the backlog wait, and the upstream (long-term memory on)
spends a fraction of what the same PUTs would cost it directly."""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.localstack import ProcessGroup, Service
from tests.engine_fixtures import WM
from tests.sync.ledgers import ledger
from tests.sync.sessions import eventually
from tests.sync.stack import LtmStack, metrics, serve

pytestmark = pytest.mark.upstream

SESSIONS, HISTORY, SECONDS, EVERY_S = 25, 300, 10.0, 0.2
QUIET_MS, MAX_LAG_MS, CONCURRENCY = 500, 2_000, 2
OK = 'amp_sync_handovers_total{result="ok"}'


def message(i: int) -> dict[str, Any]:
    # assistant turns: nothing for the upstream's extraction to turn into memories, so
    # what is measured is the hand-overs themselves
    return {"role": "assistant", "content": f"Step {i} of a long task, done and checked.",
            "id": f"m{i}", "created_at": f"2025-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}Z"}


async def user(http: aiohttp.ClientSession, base: str, ns: str, session: str, stop: float,
               latencies: list[float]) -> int:
    history = [message(i) for i in range(HISTORY)]
    while time.monotonic() < stop:
        history.append(message(len(history)))
        started = time.monotonic()
        async with http.put(f"{base}{WM}{session}", data=orjson.dumps(
                {"namespace": ns, "messages": history}),
                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 200, await resp.text()
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(EVERY_S)
    return len(history)


def cpu_seconds(service: Service) -> float:
    """User + system CPU time of ``service``'s process (/proc/<pid>/stat)."""
    with open(f"/proc/{service.process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_25_long_sessions_keep_the_hand_over_rate_within_its_bound(
        ltm: LtmStack, proxy_redis: Service, redis_client: Any, group: ProcessGroup) -> None:
    proxy = serve(group, "sync-load-proxy", ltm.upstream.url, proxy_redis.url,
                  upstream_sync=True, sync_quiet_ms=QUIET_MS, sync_max_lag_ms=MAX_LAG_MS,
                  sync_concurrency=CONCURRENCY)
    ns, led = f"load-{uuid.uuid4().hex[:6]}", ledger(redis_client)
    upstream_cpu, proxy_cpu = cpu_seconds(ltm.upstream), cpu_seconds(proxy)
    started = time.monotonic()
    stop, latencies, lags = started + SECONDS, list[float](), list[float]()

    async def sample() -> None:
        while time.monotonic() < stop:
            lags.append((await led.backlog())[1])
            await asyncio.sleep(0.25)

    async with aiohttp.ClientSession() as http:
        *final, _ = await asyncio.gather(*(user(http, proxy.url, ns, f"s{i}", stop, latencies)
                                           for i in range(SESSIONS)), sample())
        written = time.monotonic() - started
        while_written = (await metrics(proxy.url)).get(OK, 0)

        async def drained() -> bool | None:
            return True if (await led.backlog())[0] == 0 else None
        await eventually(drained, timeout=60, every=0.1)
        took = time.monotonic() - started
        upstream_cpu, proxy_cpu = cpu_seconds(ltm.upstream) - upstream_cpu, \
            cpu_seconds(proxy) - proxy_cpu
        for i in (0, SESSIONS - 1):
            async with http.get(f"{ltm.upstream.url}{WM}s{i}?namespace={ns}") as resp:
                assert len((await resp.json())["messages"]) == final[i]
    seen = await metrics(proxy.url)
    handed = seen.get(OK, 0)
    rounds = seen["amp_sync_round_duration_seconds_count"]
    mean = seen["amp_sync_round_duration_seconds_sum"] / rounds
    puts = len(latencies)
    latencies.sort()
    bound = SESSIONS * (math.ceil(written / (MAX_LAG_MS / 1000)) + 1)
    print(f"\n{SESSIONS} sessions x {HISTORY}+ messages, {written:.1f} s: {puts} PUTs "
          f"({puts / written:.0f}/s, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms); {handed:.0f} "
          f"hand-overs ({while_written:.0f} while written: {while_written / written:.1f}/s; "
          f"bound {bound}), {rounds:.0f} rounds of {mean * 1000:.0f} ms on average; lag max "
          f"{max(lags):.2f} s; over {took:.1f} s CPU: upstream {upstream_cpu:.1f} s "
          f"({upstream_cpu / took:.2f} cores), proxy {proxy_cpu:.1f} s")
    assert handed <= bound
    assert handed <= puts / 3  # coalesced: PUTs come every 0.2 s, the quiet period is 0.5 s
    # Within the max lag while the upstream keeps up (sessions / max lag rounds a second);
    # beyond, the concurrency bound wins: the backlog waits its turn.
    assert max(lags) <= MAX_LAG_MS / 1000 + SESSIONS * mean / CONCURRENCY + 1.0
