"""Part a) of the benchmark: one session per target grown to 20,000 messages, sampled as it grows.

At each size the same operations are timed against the upstream and the proxy, interleaved A/B
(the order of targets alternates sample by sample) so machine noise hits both. GET recent and
the whole-session PUT are also timed against the floor server: a GET answered with the bytes
the proxy's GET recent just returned, a PUT of the body the proxy just received answered
with the bytes the proxy answered it with. Every loop is bounded by a sample count and a
time budget.

Every sample starts after the same idle pause (``SizePlan.gap_s``). On a virtual machine an idle
CPU is halted, and how long it idled sets what the next request pays to wake it (measured here:
a bare aiohttp handler 0.48 ms back to back, 0.94 ms after 100 ms idle, no change beyond). Without
the pause, the idle time before a proxy sample would be the upstream's previous request (3 ms at
10 messages, 350 ms at 20,000), and that, not the proxy, would set the proxy's growth across sizes.
The pause puts every sample of every target in the same machine state, the one an agent's request
meets after its LLM call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from load.common import (
    JSON_HEADERS,
    Clock,
    append_body,
    append_path,
    history,
    new_session_id,
    put_body,
    put_path,
    recent_path,
    session_path,
    turn,
)

#: Operation names as they appear in the CSV and the report, in sampling order.
OPS = ("get_recent", "get_full", "put_full", "append")
TARGETS = ("upstream", "proxy")


@dataclass(frozen=True)
class Sample:
    target: str  # upstream, proxy or floor
    op: str  # one of OPS
    size: int  # the nominal size being sampled
    messages: int  # messages in the session when the request was sent
    seq: int
    ms: float
    status: int
    nbytes: int  # response body size


@dataclass
class SizePlan:
    sizes: tuple[int, ...]
    samples: int  # per operation, size and target
    budget_s: float  # per operation and size; sampling stops early past it
    min_samples: int = 3
    timeout_s: float = 120.0  # per request; a target that does not answer fails the run
    gap_s: float = 0.1  # idle pause before every sample (see the module docstring)
    mix: str = "bench"  # the message mix (load/common.py MIXES)
    ops: tuple[str, ...] = OPS
    upstream_max: int | None = None  # the upstream is sampled up to this size only

    @property
    def units(self) -> int:
        """Progress units: one per sampling round of one operation at one size."""
        return len(self.sizes) * len(self.ops) * self.samples


@dataclass
class _Session:
    target: str
    base: str
    http: aiohttp.ClientSession
    session_id: str
    mix: str = "bench"
    messages: list[bytes] = field(default_factory=list)
    last_put: tuple[bytes, bytes] = (b"", b"")  # the last PUT body sent and its answer


async def _timed(http: aiohttp.ClientSession, method: str, url: str,
                 body: bytes | None = None) -> tuple[float, int, bytes]:
    headers = JSON_HEADERS if body is not None else None
    start = time.perf_counter()
    async with http.request(method, url, data=body, headers=headers) as resp:
        data = await resp.read()
    return (time.perf_counter() - start) * 1000.0, resp.status, data


async def _request(s: _Session, op: str, clock: Clock) -> tuple[float, int, bytes]:
    """One operation against one target; the session grows only when a write succeeds."""
    try:
        return await _operation(s, op, clock)
    except TimeoutError as exc:
        raise RuntimeError(f"{s.target} did not answer {op} at {len(s.messages):,} messages "
                           "in time") from exc


async def _operation(s: _Session, op: str, clock: Clock) -> tuple[float, int, bytes]:
    if op == "get_recent":
        return await _timed(s.http, "GET", s.base + recent_path(s.session_id))
    if op == "get_full":
        return await _timed(s.http, "GET", s.base + session_path(s.session_id))
    new = turn(clock, s.mix)
    if op == "put_full":
        body = put_body(s.session_id, s.messages + new)
        result = await _timed(s.http, "PUT", s.base + put_path(s.session_id), body)
        s.last_put = (body, result[2])
    else:
        result = await _timed(s.http, "POST", s.base + append_path(s.session_id),
                              append_body(new))
    if result[1] == 200:
        s.messages.extend(new)
    return result


async def _seed(s: _Session, size: int, clock: Clock) -> None:
    """Bring the session to ``size`` messages with one PUT of the whole list."""
    if len(s.messages) < size:
        s.messages.extend(history(size - len(s.messages), clock, s.mix))
    try:
        ms, status, data = await _timed(s.http, "PUT", s.base + put_path(s.session_id),
                                        put_body(s.session_id, s.messages))
    except TimeoutError as exc:
        raise RuntimeError(f"{s.target} did not answer the seeding PUT of {size:,} "
                           "messages in time") from exc
    if status != 200:
        raise RuntimeError(f"seeding {s.target} to {size} messages: HTTP {status} "
                           f"{data[:300]!r}")


async def sample_sizes(urls: dict[str, str], plan: SizePlan,
                       progress: Callable[[int], None] = lambda n: None) -> list[Sample]:
    """Grow one session per target through ``plan.sizes`` and time every operation.

    ``urls`` maps "upstream" and "proxy" to base URLs, and optionally "floor" to a
    ``load.floor`` server.
    """
    clock = Clock()
    samples: list[Sample] = []
    timeout = aiohttp.ClientTimeout(total=plan.timeout_s)
    https = {name: aiohttp.ClientSession(timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=4))
             for name in urls}
    try:
        sessions = [_Session(t, urls[t], https[t], new_session_id(f"bench-{t}"), plan.mix)
                    for t in TARGETS]
        floor = urls.get("floor")
        append_ok = True
        for size in plan.sizes:
            skip_upstream = plan.upstream_max is not None and size > plan.upstream_max
            targeted = [s for s in sessions if not (skip_upstream and s.target == "upstream")]
            for s in targeted:
                await _seed(s, size, clock)
            for op in plan.ops:
                active = [s for s in targeted if op != "append" or s.target == "proxy"]
                if op == "append" and not append_ok:
                    progress(plan.samples)
                    continue
                # unmeasured requests per target first (connections, cold code paths)
                for _ in range(2 if size <= 1_000 else 0):  # more where it is cheap
                    for s in active:
                        await _request(s, op, clock)
                warm = {s.target: await _request(s, op, clock) for s in active}
                if op == "append" and warm["proxy"][1] != 200:
                    append_ok = False  # the endpoint does not exist (pass-through)
                    samples.append(Sample("proxy", op, size, len(sessions[1].messages), 0,
                                          warm["proxy"][0], warm["proxy"][1], 0))
                    progress(plan.samples)
                    continue
                with_floor = op in ("get_recent", "put_full") and floor is not None
                proxy = sessions[1]
                if with_floor:
                    await _timed(https["floor"], "PUT", f"{floor}/body", warm["proxy"][2])
                deadline = time.monotonic() + plan.budget_s
                for i in range(plan.samples):
                    if i >= plan.min_samples and time.monotonic() > deadline:
                        progress(plan.samples - i)
                        break
                    order: list[_Session | None] = [*active, None] if with_floor else [*active]
                    shift = i % len(order)
                    for one in order[shift:] + order[:shift]:
                        await asyncio.sleep(plan.gap_s)
                        if one is None:
                            if op == "get_recent":
                                ms, status, data = await _timed(https["floor"], "GET",
                                                                f"{floor}/body")
                            else:  # the body the proxy last got, answered as it answered
                                ms, status, data = await _timed(https["floor"], "PUT",
                                                                f"{floor}/sink",
                                                                proxy.last_put[0])
                            samples.append(Sample("floor", op, size, size, i, ms, status,
                                                  len(data)))
                            continue
                        count = len(one.messages)
                        ms, status, data = await _request(one, op, clock)
                        samples.append(Sample(one.target, op, size, count, i, ms, status,
                                              len(data)))
                        if with_floor and op == "put_full" and one is proxy:
                            await _timed(https["floor"], "PUT", f"{floor}/body", data)
                    progress(1)
        for s in sessions:  # leave nothing behind (a session never seeded is not there)
            async with s.http.delete(s.base + session_path(s.session_id)) as resp:
                await resp.read()
    finally:
        for http in https.values():
            await http.close()
    return samples
