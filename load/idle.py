"""What a whole-session PUT pays for coming after a pause, against the floor.

The benchmark samples every request after an idle pause (load/sampling.py), so each target
at each size starts from the same machine state. On this machine (a VM of two cores) that
state is cold: an idle core sleeps, a process woken on it waits for it, and the code a
request runs is out of the caches. A PUT through the proxy runs more code than the floor's
(which only receives the body and echoes it) and makes one Redis round trip, so it pays
more for the pause. This run tells the two apart: PUTs back to back and after a pause, to
the proxy and to the floor, and Redis PINGs the same way.

    python -m load.idle [--size 4000] [--mix chat] [--samples 60] [--ack buffered]

It starts its own stack (two Redis servers, the upstream, the proxy without the sync, the
floor answering with the proxy's answer), like the benchmark, and prints a table in
milliseconds (p50).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from load.common import JSON_HEADERS, Clock, history, put_body, put_path, turn
from load.stack import start_floor, start_proxy
from proxy.localstack import ProcessGroup, cache_root, ensure_stack, start_redis, start_upstream

PAUSES = (0.0, 0.1)  # seconds before each sample: back to back, and the benchmark's pause


@dataclass(frozen=True)
class IdleRow:
    pause: float
    ping_ms: float  # Redis PING p50
    floor_ms: float  # PUT p50, the floor
    proxy_ms: float  # PUT p50, the proxy


async def _p50s(calls: list[Callable[[], Awaitable[float]]], pause: float,
                samples: int) -> list[float]:
    """The median of what each of ``calls`` reports it took (seconds), in ms. The calls are
    interleaved, in an order that turns each round, so a drift of the host's state over
    the run falls on all of them alike."""
    took: list[list[float]] = [[] for _ in calls]
    for i in range(samples):
        for k in range(len(calls)):
            at = (k + i) % len(calls)
            if pause:
                await asyncio.sleep(pause)
            took[at].append(await calls[at]())
    return [statistics.median(t) * 1000 for t in took]


async def measure(proxy_url: str, floor_url: str, redis: aioredis.Redis, *, size: int,
                  mix: str, samples: int, pauses: tuple[float, ...] = PAUSES,
                  session: str = "") -> list[IdleRow]:
    """For each pause: PING, the floor's PUT and the proxy's PUT (+2 messages to a session of
    ``size``, named ``session`` or a fresh name), ``samples`` of each in turn."""
    clock = Clock()
    messages = history(size, clock, mix)
    session = session or f"idle-{os.getpid()}-{time.monotonic_ns()}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        answer = b""

        async def put(url: str, transcript: list[bytes]) -> float:
            nonlocal answer
            transcript.extend(turn(clock, mix))
            body = put_body(session, transcript)  # built before the clock starts
            started = time.perf_counter()
            async with http.put(url, data=body, headers=JSON_HEADERS) as resp:
                answer = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"PUT {url}: HTTP {resp.status}")
            return time.perf_counter() - started

        async def ping() -> float:
            started = time.perf_counter()
            await redis.ping()
            return time.perf_counter() - started

        # Each target its own transcript, growing by one turn a PUT.
        proxy_sent, floor_sent = list(messages), list(messages)

        async def to_proxy() -> float:
            return await put(proxy_url + put_path(session), proxy_sent)

        async def to_floor() -> float:
            return await put(floor_url + "/sink", floor_sent)

        for _ in range(2):  # warm: connections, the raw path's first proof
            await to_proxy()
            await to_floor()
        await to_proxy()
        # The floor answers with the bytes the proxy answered (one turn shorter than
        # the floor's own transcript grows to: a few hundred bytes in ~500 KB).
        async with http.put(floor_url + "/body", data=answer, headers=JSON_HEADERS) as resp:
            if resp.status != 200:
                raise RuntimeError(f"PUT /body: HTTP {resp.status}")
        rows = []
        for pause in pauses:
            ping_ms, floor_ms, proxy_ms = await _p50s([ping, to_floor, to_proxy], pause,
                                                      samples)
            rows.append(IdleRow(pause, ping_ms, floor_ms, proxy_ms))
        return rows


def table(rows: list[IdleRow], size: int, mix: str) -> list[str]:
    out = [f"PUT full session (+2 messages), {size:,} messages, {mix} mix; p50 in ms", "",
           "| pause before each | Redis PING | floor PUT | proxy PUT | proxy - floor "
           "| proxy / floor |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.pause * 1000:.0f} ms | {r.ping_ms:.3f} | {r.floor_ms:.2f} | "
                   f"{r.proxy_ms:.2f} | {r.proxy_ms - r.floor_ms:.2f} | "
                   f"{r.proxy_ms / r.floor_ms:.2f}x |")
    return out


def idle_section(rows: list[IdleRow], size: int, mix: str) -> list[str]:
    """Part h) of the benchmark: this run's host, paused and not (see the module's doc)."""
    if not rows:
        return []
    out = ["## h) The cost of an idle pause on this host", "",
           "Part a samples every request after a 100 ms idle pause. How much that pause "
           "costs depends on the host (a sleeping core's wake-up, cold caches), and it "
           "costs a PUT through the proxy more than the floor's: the proxy runs more code "
           "and makes one Redis round trip. Here the proxy (upstream sync off), the floor "
           "(answering with the proxy's answer) and a Redis PING, back to back and after "
           "the pause (`python -m load.idle` runs this alone):", "", *table(rows, size, mix)]
    paused = [r for r in rows if r.pause]
    if paused:
        r = paused[-1]
        out += ["", f"After the pause: PING {r.ping_ms:.2f} ms, proxy - floor "
                    f"{r.proxy_ms - r.floor_ms:.2f} ms."]
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m load.idle", description=__doc__)
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--mix", choices=("chat", "bench"), default="chat")
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--ack", choices=("flushed", "buffered"), default="flushed",
                        help="the proxy's ack_mode")
    args = parser.parse_args()
    stack = ensure_stack(cache_root(os.environ))
    group = ProcessGroup()
    try:
        upstream = start_upstream(group, stack, start_redis(group, stack, "upstream-redis").url)
        proxy_redis = start_redis(group, stack, "proxy-redis", modules=False)
        proxy = start_proxy(group, upstream.url, proxy_redis.url,
                            settings={"upstream_sync": "false", "ack_mode": args.ack})
        floor = start_floor(group)

        async def run() -> list[IdleRow]:
            async with aioredis.Redis.from_url(proxy_redis.url) as redis:
                return await measure(proxy.url, floor.url, redis, size=args.size,
                                     mix=args.mix, samples=args.samples)

        print(f"ack_mode {args.ack}")
        print("\n".join(table(asyncio.run(run()), args.size, args.mix)))
    finally:
        group.stop()


if __name__ == "__main__":
    main()
