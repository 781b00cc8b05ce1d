"""Big bodies and slow clients against a proxy running in its own process, as deployed
(handlers run to completion when a client leaves), in front of the real upstream:
health stays responsive while a 50 MB PUT is processed, memory stays bounded under
several big bodies at once, and 300 slow clients stall nothing else."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.localstack import Service, free_port

pytestmark = pytest.mark.upstream

SERVE = """
import os
from aiohttp import web
from proxy.app import create_app
from proxy.config import Settings
settings = Settings.load(os.environ)
web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
"""
WM = "/v1/working-memory/"
NO_SUMMARY = "?context_window_max=1000000000"  # a window no test body fills


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]

    def rss_mb(self, field: str = "VmRSS") -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            line = next(x for x in status if x.startswith(field + ":"))
        return int(line.split()[1]) / 1024


@pytest.fixture
async def serve(upstream: Service, proxy_redis: Service, redis_client: Any,
                tmp_path: Any) -> AsyncIterator[Callable[..., Any]]:
    started: list[Served] = []

    async def start(**settings: Any) -> Served:
        port = free_port()
        env = {**os.environ, "AMP_UPSTREAM_URL": upstream.url,
               "AMP_REDIS_URL": proxy_redis.url, "AMP_PORT": str(port),
               "AMP_UPSTREAM_SYNC": "false", "AMP_LOG_LEVEL": "WARNING",
               **{f"AMP_{k.upper()}": str(v) for k, v in settings.items()}}
        log = open(tmp_path / f"proxy-{port}.log", "wb")  # noqa: SIM115 (closed below)
        process = subprocess.Popen([sys.executable, "-c", SERVE], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        log.close()
        served = Served(f"http://127.0.0.1:{port}", process)
        started.append(served)
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(served.url + "/-/readyz") as resp:
                        if resp.status == 200:
                            return served
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("proxy did not start: "
                           + (tmp_path / f"proxy-{port}.log").read_text()[-2000:])

    yield start
    for served in started:
        served.process.terminate()
        served.process.wait(10)


def big_body(megabytes: float, messages: int) -> bytes:
    size = int(megabytes * 1024 * 1024) // messages
    text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    return orjson.dumps({"messages": [
        {"role": "user", "content": text, "id": f"m{i}", "created_at": "2025-01-01T00:00:00Z"}
        for i in range(messages)]})


class Prober:
    """GET /-/healthz back to back (10 ms apart) from a thread of its own, so that the
    test's own work on big bodies never delays a probe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self._stop.is_set():
                started = time.perf_counter()
                async with session.get(self.url + "/-/healthz") as resp:
                    await resp.read()
                self.seconds.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self._stop.set()
        self._thread.join()

    def percentile(self, p: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def test_health_answers_while_a_50_mb_put_is_processed(serve: Callable[..., Any]
                                                             ) -> None:
    proxy = await serve()
    body = big_body(50, 10_000)
    async with aiohttp.ClientSession() as session:
        with Prober(proxy.url) as probe:
            started = time.perf_counter()
            async with session.put(proxy.url + WM + "big-50" + NO_SUMMARY, data=BytesIO(body),
                                   headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 200
                echoed = await resp.read()
            took = time.perf_counter() - started
        async with session.get(proxy.url + WM + "big-50?recent_messages_limit=1") as resp:
            assert resp.status == 200
    p50, p99 = probe.percentile(0.5), probe.percentile(0.99)
    print(f"\n50 MB PUT: {took:.1f} s, {len(echoed) / 2**20:.0f} MB echoed; /-/healthz "
          f"n={len(probe.seconds)} p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms "
          f"max={max(probe.seconds) * 1000:.0f} ms; proxy peak RSS "
          f"{proxy.rss_mb('VmHWM'):.0f} MB")
    # Parsing 50 MB on the event loop would stall it for seconds; off the loop the probes
    # answer in milliseconds. The bound leaves room for a loaded machine's scheduling noise.
    assert len(probe.seconds) >= 5
    assert p99 <= 0.250


async def _put_until_landed(session: aiohttp.ClientSession, url: str, body: bytes,
                            refused: list[int]) -> None:
    """PUT, honouring 503 + Retry-After: a refused write never landed."""
    while True:
        async with session.put(url, data=BytesIO(body),
                               headers={"Content-Type": "application/json"}) as resp:
            await resp.read()
            if resp.status == 200:
                return
            assert resp.status == 503 and resp.headers["Retry-After"] == "1", resp.status
            refused.append(resp.status)
        async with session.get(url.split("?")[0]) as check:
            assert check.status == 404  # nothing of it was stored
        await asyncio.sleep(0.2)


async def _six_big_puts(serve: Callable[..., Any], budget: int) -> tuple[float, float, int]:
    proxy = await serve(bodies_in_flight_bytes=budget, cache_max_bytes=2**20)
    body = big_body(20, 4000)
    before = proxy.rss_mb()
    refused: list[int] = []
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(_put_until_landed(
            session, f"{proxy.url}{WM}conc-{budget}-{i}{NO_SUMMARY}", body, refused)
            for i in range(6)))
        for i in range(6):
            async with session.get(f"{proxy.url}{WM}conc-{budget}-{i}"
                                   "?recent_messages_limit=1") as resp:
                assert resp.status == 200
    return before, proxy.rss_mb("VmHWM") - before, len(refused)


async def test_memory_stays_bounded_under_concurrent_big_bodies(serve: Callable[..., Any]
                                                                ) -> None:
    """Six 20 MB PUTs at once: with a 48 MB budget two are processed at a time and the
    rest are told to come back (503 + Retry-After); every one lands in the end. Without
    a budget all six are held at once."""
    before, bounded, refused = await _six_big_puts(serve, 48 * 2**20)
    _, unbounded, none_refused = await _six_big_puts(serve, 2**40)
    print(f"\nsix concurrent 20 MB PUTs: peak RSS +{bounded:.0f} MB over {before:.0f} MB "
          f"with bodies_in_flight_bytes = 48 MB ({refused} answers of 503 + Retry-After), "
          f"+{unbounded:.0f} MB without")
    assert refused and not none_refused
    assert bounded < 0.8 * unbounded


async def test_300_slow_clients_on_pass_through_routes_stall_nothing_else(
        serve: Callable[..., Any]) -> None:
    proxy = await serve(body_read_timeout=4)
    port = int(proxy.url.rsplit(":", 1)[1])
    head = (b"POST /v1/long-term-memory/search HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n")
    slow = []
    for _ in range(300):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b'{"text": "')
        slow.append((reader, writer))
    await asyncio.gather(*(w.drain() for _, w in slow))
    await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as session:
        timings = {}
        for name, method, path, data in [
                ("readyz", "GET", "/-/readyz", None),
                ("pass-through", "GET", "/v1/health", None),
                ("put", "PUT", WM + "beside-slow", b'{"messages": []}'),
                ("get", "GET", WM + "beside-slow", None)]:
            started = time.perf_counter()
            async with session.request(method, proxy.url + path, data=data, headers={
                    "Content-Type": "application/json"}) as resp:
                assert resp.status == 200, (name, resp.status, await resp.text())
            timings[name] = time.perf_counter() - started
        print("\nwith 300 slow clients: " + ", ".join(
            f"{k} {v * 1000:.0f} ms" for k, v in timings.items()))
        assert max(timings.values()) < 1.0
    # The slow ones are cut at body_read_timeout with 408.
    statuses = await asyncio.gather(*(asyncio.wait_for(r.readline(), 10) for r, _ in slow))
    assert {line.split(b" ")[1] for line in statuses} == {b"408"}
    for _, writer in slow:
        writer.close()
