"""The TCP fault proxy in front of a real redis-server: latency, pause, cut, restore."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.localstack import Service
from tests.support.faultproxy import FaultProxy


@pytest.fixture
def fault(proxy_redis: Service) -> Iterator[FaultProxy]:
    with FaultProxy.to_url(proxy_redis.url) as proxy:
        yield proxy


@pytest.fixture
async def client(fault: FaultProxy) -> AsyncIterator[aioredis.Redis]:
    # no retries, so a fault shows as the first error it causes
    c = aioredis.Redis.from_url(fault.url(), retry=AsyncRetry(NoBackoff(), 0),
                                socket_connect_timeout=1, socket_timeout=2)
    yield c
    await c.aclose()


async def ping_ms(client: aioredis.Redis, n: int = 5) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        assert await client.ping()
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


async def test_latency_is_added_per_command_and_removed(
    fault: FaultProxy, client: aioredis.Redis
) -> None:
    base = await ping_ms(client)
    fault.set_latency(0.05)
    slow = await ping_ms(client)
    fault.set_latency(0.02, to_client=0.02)
    both = await ping_ms(client)
    fault.set_latency(0)
    again = await ping_ms(client)
    print(f"PING median: {base:.2f} ms, +50 ms up: {slow:.1f} ms, +20/+20 ms: {both:.1f} ms, "
          f"restored: {again:.2f} ms")
    assert 50 <= slow < 50 + base + 25
    assert 40 <= both < 40 + base + 25
    assert again < 10
    async with client.pipeline(transaction=False) as pipe:  # one delay for the batch
        fault.set_latency(0.05)
        for i in range(2000):
            pipe.set(f"fp:{i}", "x" * 100)
        started = time.perf_counter()
        await pipe.execute()
        took = time.perf_counter() - started
    print(f"2000-command pipeline (~270 kB, several reads) at +50 ms: {1000 * took:.0f} ms")
    assert 0.05 <= took < 0.05 + 0.25
    fault.restore()
    await client.delete(*(f"fp:{i}" for i in range(2000)))


async def test_cut_fails_fast_and_restore_recovers(fault: FaultProxy,
                                                   client: aioredis.Redis) -> None:
    assert await client.ping()
    assert fault.open_connections == 1
    fault.cut()
    for _ in range(2):  # the dropped connection, then a refused new one
        started = time.perf_counter()
        with pytest.raises(redis.ConnectionError):
            await client.ping()
        failed_ms = 1000 * (time.perf_counter() - started)
        print(f"PING failed after {failed_ms:.1f} ms")
        assert failed_ms < 200
    assert fault.open_connections == 0
    fault.restore()
    assert await client.ping()
    assert fault.open_connections == 1


async def test_pause_holds_traffic_until_resumed(fault: FaultProxy,
                                                 client: aioredis.Redis) -> None:
    assert await client.set("fp:held", "1")
    fault.pause()

    async def incr() -> int:
        return int(await client.incr("fp:held"))

    held = asyncio.get_running_loop().create_task(incr())
    done, _ = await asyncio.wait({held}, timeout=0.3)
    assert not done  # held, not failed
    fault.resume()
    assert await asyncio.wait_for(held, 2) == 2
    await client.delete("fp:held")


def test_usable_from_threads(proxy_redis: Service) -> None:
    with FaultProxy.to_url(proxy_redis.url) as fault:
        client = redis.Redis.from_url(fault.url(), retry=Retry(NoBackoff(), 0))
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                for _ in range(20):
                    client.ping()
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        fault.set_latency(0.01)
        threads = [threading.Thread(target=worker) for _ in range(4)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
        assert not errors
        assert 0.2 <= took < 2  # 20 sequential PINGs per thread at +10 ms, in parallel
        assert 1 <= fault.accepted <= 4  # the client pool's connections
        client.close()
