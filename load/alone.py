"""The proxy alone: how its own latency grows with session size, with no upstream traffic
interleaved (whose heavy requests share this machine's two cores and blur small numbers).

Sizes 10, 1,000, 10,000 and 50,000 messages; per size, GET recent (limit 10), GET full, a
PUT of the full session with 2 messages appended, and the append endpoint with 2 messages,
each sampled sequentially; the table gives p50/p99 and the ratio of the largest size's p50
to the smallest's. A full PUT must carry and parse the whole session both ways (the body
in, its echo out), so it grows at C speed; the append endpoint is the O(new) path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from load.common import (
    append_body,
    append_path,
    history,
    new_session_id,
    put_body,
    put_path,
    session_path,
    turn,
)
from load.stats import percentile

SIZES = (10, 1_000, 10_000, 50_000)
OPS = ("GET recent (limit 10)", "GET full", "PUT full (+2 messages)",
       "POST append (+2 messages)")
WARM = 10  # unmeasured rounds per operation: connections, caches, first-use paths


@dataclass(frozen=True)
class AloneRow:
    op: str
    size: int
    p50: float
    p99: float
    samples: int


async def _timed(http: aiohttp.ClientSession, method: str, url: str,
                 body: bytes | None = None) -> float:
    headers = {"content-type": "application/json"} if body is not None else None
    start = time.perf_counter()
    async with http.request(method, url, data=body, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {resp.status}")
    return (time.perf_counter() - start) * 1000.0


async def sample_alone(proxy_url: str, samples: int, sizes: tuple[int, ...] = SIZES
                       ) -> list[AloneRow]:
    rows: list[AloneRow] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(proxy_url, timeout=timeout) as http:
        for size in sizes:
            sid = new_session_id("alone")
            messages = history(size)
            await _timed(http, "PUT", put_path(sid), put_body(sid, messages))
            recent = session_path(sid) + "?recent_messages_limit=10"
            timings: dict[str, list[float]] = {op: [] for op in OPS}
            # One operation at a time: a large GET or PUT leaves work behind (freeing
            # megabytes, in both processes) that would land on the next small request.
            for op in OPS:
                for i in range(samples + WARM):
                    if op == OPS[2]:
                        messages = messages + turn()
                        ms = await _timed(http, "PUT", put_path(sid), put_body(sid, messages))
                    elif op == OPS[3]:
                        new = turn()
                        messages = messages + new
                        ms = await _timed(http, "POST", append_path(sid), append_body(new))
                    else:
                        ms = await _timed(http, "GET", recent if op == OPS[0]
                                          else session_path(sid))
                    if i >= WARM:
                        timings[op].append(ms)
            await _timed(http, "DELETE", session_path(sid))
            rows += [AloneRow(op, size, percentile(v, 50), percentile(v, 99), len(v))
                     for op, v in timings.items()]
    return rows


def alone_section(rows: list[AloneRow]) -> list[str]:
    sizes = sorted({r.size for r in rows})
    out = ["## c) The proxy alone: latency by size (ms)", "",
           "Sequential requests to the proxy only (no upstream traffic in between). "
           "Ratio = p50 at the largest size / p50 at the smallest.", "",
           "| operation | " + " | ".join(f"{s:,} p50 / p99" for s in sizes) + " | ratio |",
           "|" + "---|" * (len(sizes) + 2)]
    for op in OPS:
        by_size = {r.size: r for r in rows if r.op == op}
        cells = [f"{by_size[s].p50:.2f} / {by_size[s].p99:.2f}" for s in sizes]
        ratio = by_size[sizes[-1]].p50 / by_size[sizes[0]].p50
        out.append(f"| {op} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    return [*out, ""]
