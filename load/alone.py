"""The proxy alone: how its own latency grows with session size, with no upstream traffic
interleaved (whose heavy requests share this machine's two cores and blur small numbers).

Sizes 10, 1,000, 10,000 and 50,000 messages; per size, GET recent (limit 10), GET full, a
PUT of the full session with 2 messages appended, and the append endpoint with 2 messages,
each sampled sequentially; the table gives p50/p99 and the ratio of the largest size's p50
to the smallest's. A full PUT must carry the whole session both ways (the body in, its echo
out), so it grows with the bytes moved (compared and copied at C speed, never parsed); the
append endpoint moves only the new messages.

GET recent and the PUT are also timed against the floor (load/floor.py), sample by sample
alternating which goes first: the same GET bytes, the same PUT body answered with the same
bytes. Their ratio is the cost of the proxy's own work at each size.
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


FLOORED = {OPS[0]: "GET", OPS[2]: "PUT"}  # operations also timed against the floor


@dataclass(frozen=True)
class AloneRow:
    op: str
    size: int
    p50: float
    p99: float
    samples: int
    target: str = "proxy"  # or "floor"


async def _timed_read(http: aiohttp.ClientSession, method: str, url: str,
                      body: bytes | None = None) -> tuple[float, bytes]:
    headers = {"content-type": "application/json"} if body is not None else None
    start = time.perf_counter()
    async with http.request(method, url, data=body, headers=headers) as resp:
        data = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{method} {url}: HTTP {resp.status}")
    return (time.perf_counter() - start) * 1000.0, data


async def _timed(http: aiohttp.ClientSession, method: str, url: str,
                 body: bytes | None = None) -> float:
    return (await _timed_read(http, method, url, body))[0]


async def _floor(http: aiohttp.ClientSession, floor_url: str, op: str, body: bytes,
                 answer: bytes) -> float:
    """The floor's time for what the proxy was asked (untimed first: setting its answer)."""
    async with http.put(floor_url + "/body", data=answer) as resp:
        await resp.read()
    if FLOORED[op] == "GET":
        return await _timed(http, "GET", floor_url + "/body")
    return await _timed(http, "PUT", floor_url + "/sink", body)


async def sample_alone(proxy_url: str, samples: int, sizes: tuple[int, ...] = SIZES,
                       floor_url: str | None = None) -> list[AloneRow]:
    rows: list[AloneRow] = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for size in sizes:
            sid = new_session_id("alone")
            messages = history(size)
            await _timed(http, "PUT", proxy_url + put_path(sid), put_body(sid, messages))
            recent = proxy_url + session_path(sid) + "?recent_messages_limit=10"
            timings: dict[str, list[float]] = {op: [] for op in OPS}
            floor: dict[str, list[float]] = {op: [] for op in FLOORED}
            last = (b"", b"")  # the proxy's last request body and answer
            # One operation at a time: a large GET or PUT leaves work behind (freeing
            # megabytes, in both processes) that would land on the next small request.
            for op in OPS:
                for i in range(samples + WARM):
                    # With the floor: every other sample it goes first (with the proxy's
                    # previous answer: the session has grown 2 messages since), else after.
                    with_floor = floor_url is not None and op in FLOORED and i >= WARM
                    if with_floor and i % 2:
                        floor[op].append(await _floor(http, floor_url or "", op, *last))
                    body = b""
                    if op == OPS[2]:
                        messages = messages + turn()
                        body = put_body(sid, messages)
                        ms, answer = await _timed_read(http, "PUT", proxy_url + put_path(sid),
                                                       body)
                    elif op == OPS[3]:
                        new = turn()
                        messages = messages + new
                        ms, answer = await _timed_read(
                            http, "POST", proxy_url + append_path(sid), append_body(new))
                    else:
                        ms, answer = await _timed_read(http, "GET", recent if op == OPS[0]
                                                       else proxy_url + session_path(sid))
                    last = (body, answer)
                    if i >= WARM:
                        timings[op].append(ms)
                    if with_floor and not i % 2:
                        floor[op].append(await _floor(http, floor_url or "", op, *last))
            await _timed(http, "DELETE", proxy_url + session_path(sid))
            rows += [AloneRow(op, size, percentile(v, 50), percentile(v, 99), len(v))
                     for op, v in timings.items()]
            rows += [AloneRow(op, size, percentile(v, 50), percentile(v, 99), len(v), "floor")
                     for op, v in floor.items() if v]
    return rows


def alone_section(rows: list[AloneRow]) -> list[str]:
    sizes = sorted({r.size for r in rows})
    out = ["## c) The proxy alone: latency by size (ms)", "",
           "Sequential requests to the proxy only (no upstream traffic in between). "
           "Ratio = p50 at the largest size / p50 at the smallest.", "",
           "| operation | " + " | ".join(f"{s:,} p50 / p99" for s in sizes) + " | ratio |",
           "|" + "---|" * (len(sizes) + 2)]
    for op in OPS:
        by_size = {r.size: r for r in rows if r.op == op and r.target == "proxy"}
        cells = [f"{by_size[s].p50:.2f} / {by_size[s].p99:.2f}" for s in sizes]
        ratio = by_size[sizes[-1]].p50 / by_size[sizes[0]].p50
        out.append(f"| {op} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    out.append("")
    floor = {(r.op, r.size): r for r in rows if r.target == "floor"}
    if not floor:
        return out
    proxy = {(r.op, r.size): r for r in rows if r.target == "proxy"}
    out += ["Against the floor, interleaved, back to back: proxy p50 / floor p50 (ms) = ratio "
            "(part a's verdict is taken where every sample follows the same idle pause)", "",
            "| operation | " + " | ".join(f"{s:,}" for s in sizes) + " |",
            "|" + "---|" * (len(sizes) + 1)]
    for op in FLOORED:
        cells = []
        for s in sizes:
            px, fl = proxy.get((op, s)), floor.get((op, s))
            cells.append(f"{px.p50:.2f} / {fl.p50:.2f} = {px.p50 / fl.p50:.2f}x"
                         if px and fl else "-")
        out.append(f"| {op} | " + " | ".join(cells) + " |")
    return [*out, ""]


def floor_ratios(rows: list[AloneRow], op: str) -> dict[int, tuple[float, float]]:
    """(proxy p50, floor p50) by size, for an operation timed against the floor."""
    proxy = {r.size: r.p50 for r in rows if r.op == op and r.target == "proxy"}
    return {r.size: (proxy[r.size], r.p50) for r in rows
            if r.op == op and r.target == "floor" and r.size in proxy}
