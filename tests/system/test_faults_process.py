"""The proxy process itself dies or is stopped under a 25-session load: a real
``agent-memory-proxy serve`` (one worker), on a real redis-server.

kill -9, flushed mode: a PUT is answered only once Redis has it, so nothing acknowledged
can be in the dead process alone. SIGTERM, buffered mode (Redis made slow, 20 ms per
command, so writes are still on their way when the signal comes): the process stops intake,
lands every acknowledged write within ``shutdown_timeout``, then exits.
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from proxy.localstack import Service
from tests.conftest import ProxyFactory
from tests.observability.serving import serve_process
from tests.support.faultproxy import fault_proxy
from tests.system.cluster_fixtures import FIGURES
from tests.system.faultload import Load, reader, verify

pytestmark = pytest.mark.faults


async def test_kill_9_of_the_proxy_under_load_loses_nothing_acknowledged(
        upstream: Service, proxy_redis: Service, redis_client: aioredis.Redis,
        proxy_factory: ProxyFactory) -> None:
    with serve_process(upstream, proxy_redis, workers=1) as served:
        async with aiohttp.ClientSession() as http:
            load = Load(served.url, prefix="k9")
            load.start(http)
            await asyncio.sleep(3.0)
            served.proc.send_signal(signal.SIGKILL)
            served.proc.wait()
            killed = time.monotonic()
            await asyncio.sleep(0.2)
            await load.stop()
    unanswered = [s for s in load.between(killed - 1, killed + 1) if s.status == 0]
    after = await proxy_factory()
    async with aiohttp.ClientSession() as http:
        lost = await verify(load.acked, reader(http, str(after.make_url("")).rstrip("/")),
                            exact=False)
    line = (f"kill -9 of the proxy under load (flushed, 25 sessions): "
            f"{len(load.between(0, killed, 'put'))} PUTs answered before, {len(unanswered)} "
            f"requests unanswered around the kill; {load.acknowledged} messages "
            f"acknowledged, {lost} lost")
    print("\n" + line)
    FIGURES.append(line)
    assert load.acknowledged > 100 and lost == 0


async def test_sigterm_in_buffered_mode_lands_every_acknowledged_write(
        upstream: Service, proxy_redis: Service, redis_client: aioredis.Redis,
        proxy_factory: ProxyFactory) -> None:
    shutdown = 10.0
    with fault_proxy(proxy_redis.url) as slow, serve_process(
            upstream, proxy_redis, redis_url=slow.url(), ack_mode="buffered", workers=1,
            drain_seconds=0.5, shutdown_timeout=shutdown) as served:
        async with aiohttp.ClientSession() as http:
            load = Load(served.url, prefix="term")
            load.start(http)
            await asyncio.sleep(2.0)
            slow.set_latency(0.01, 0.01)  # 20 ms per command: writes pile up behind
            await asyncio.sleep(1.0)
            served.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            exited = await asyncio.to_thread(served.proc.wait, shutdown + 5)
            took = time.monotonic() - signalled
            await load.stop()
        log = served.log()
    after = await proxy_factory()
    async with aiohttp.ClientSession() as http:
        lost = await verify(load.acked, reader(http, str(after.make_url("")).rstrip("/")),
                            exact=True)
    acked_late = [s for s in load.between(signalled, signalled + 60, "put") if s.status == 200]
    line = (f"SIGTERM in buffered mode under load (25 sessions, Redis at 20 ms per command): "
            f"exit {exited} after {took:.2f} s (drain 0.5 s, shutdown_timeout {shutdown:.0f} "
            f"s); {len(acked_late)} PUTs acknowledged after the signal; "
            f"{load.acknowledged} messages acknowledged, {lost} lost")
    print("\n" + line)
    FIGURES.append(line)
    assert exited == 0 and took < shutdown + 2
    assert "not written at shutdown" not in log and "lost" not in log
    assert lost == 0
