"""Part g) of the benchmark: what cached sessions cost in memory, and that the cache's bound
holds for the whole process.

A proxy of its own (one process, the upstream sync off, so only the cache holds sessions)
is filled through its API, each session PUT twice as a client does turn after turn (the
second PUT takes the raw path, so the cache holds what it holds in steady state: the
session's canonical messages and the last body's messages as sent). Measured:

* per cached session and per cached message, with a cache large enough for all: the growth
  of the process's resident memory (VmRSS), set beside what the cache accounts for itself
  (``amp_cache_bytes``): real bytes against accounted bytes;
* with ``cache_max_bytes`` = 64 MB and 10,000 sessions of 200 messages (several times what
  fits): the resident memory at the end, against cache_max_bytes plus a constant: the
  process's own size before any session (interpreter, libraries, the token encoding) plus
  the bounded side structures (warm GET answers, GET envelopes: ``SIDE_BYTES``) and
  allocator slack (``SLACK_BYTES``).
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from dataclasses import dataclass

import aiohttp

from load.common import JSON_HEADERS, history, new_session_id, put_body, put_path
from load.stack import start_proxy
from proxy.localstack import ProcessGroup, Service

MB = 1024 * 1024
BOUND_CACHE = 64 * MB
BOUND_SESSIONS, BOUND_MESSAGES = 10_000, 200
SIDE_BYTES = 8 * MB + 4 * MB  # engine/answers.py MAX_BYTES + codec/render.py ENVELOPES_MAX_BYTES
SLACK_BYTES = 16 * MB  # malloc arenas and Python's free lists, not returned at once
CONCURRENCY = 8


@dataclass(frozen=True)
class MemoryFigures:
    sessions: int
    messages: int  # per session
    base_rss: int  # the process before any session
    rss: int  # after
    accounted: int  # amp_cache_bytes
    cached_sessions: int  # amp_cache_sessions
    cache_max_bytes: int

    @property
    def grown(self) -> int:
        return self.rss - self.base_rss

    @property
    def constant(self) -> int:
        return self.base_rss + SIDE_BYTES + SLACK_BYTES


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        m = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M)
    return int(m.group(1)) * 1024 if m else 0


def _gauge(url: str, name: str) -> int:
    with urllib.request.urlopen(url + "/-/metrics", timeout=10) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


async def _fill(url: str, sessions: int, messages: int) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)
    stem = new_session_id("mem")
    base = history(messages)

    async def one(i: int, http: aiohttp.ClientSession) -> None:
        sid = f"{stem}-{i}"
        # The same messages in every session (built once); two PUTs, as turns do.
        async with sem:
            for body in (put_body(sid, base[:-2]), put_body(sid, base)):
                async with http.put(url + put_path(sid), data=body, headers=JSON_HEADERS) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"filling the cache: HTTP {r.status}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        await asyncio.gather(*(one(i, http) for i in range(sessions)))


def measure(group: ProcessGroup, upstream_url: str, redis_url: str, sessions: int,
            messages: int, cache_max_bytes: int, name: str) -> MemoryFigures:
    """Fill a fresh proxy's cache; its memory before and after."""
    proxy: Service = start_proxy(group, upstream_url, redis_url, name=name, settings={
        "cache_max_bytes": str(cache_max_bytes), "upstream_sync": "false",
        "key_prefix": name})
    try:
        asyncio.run(_fill(proxy.url, 1, 10))  # warm: first request paths, token encoding
        base = rss(proxy.process.pid)
        asyncio.run(_fill(proxy.url, sessions, messages))
        return MemoryFigures(sessions, messages, base, rss(proxy.process.pid),
                             _gauge(proxy.url, "amp_cache_bytes"),
                             _gauge(proxy.url, "amp_cache_sessions"), cache_max_bytes)
    finally:
        group.stop(proxy)


def memory_runs(group: ProcessGroup, upstream_url: str, redis_url: str,
                quick: bool) -> list[MemoryFigures]:
    per = measure(group, upstream_url, redis_url, 100 if quick else 2_000, BOUND_MESSAGES,
                  1024 * MB, "mem-per")
    scale = 20 if quick else 1  # quick: a twentieth of the sessions into as much less cache
    bound = measure(group, upstream_url, redis_url, BOUND_SESSIONS // scale, BOUND_MESSAGES,
                    BOUND_CACHE // scale, "mem-bound")
    return [per, bound]


def memory_section(runs: list[MemoryFigures]) -> list[str]:
    out = ["## g) Memory", "",
           "A proxy of its own per run (one process, upstream sync off), each session PUT "
           "twice (the second through the raw path: the steady state). RSS is VmRSS; "
           "accounted is the cache's own `amp_cache_bytes`.", ""]
    if not runs:
        return out
    out += ["| sessions x messages | cache_max_bytes | RSS before | RSS after | grown | "
            "accounted | cached sessions | per cached session | per cached message | "
            "real / accounted |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cached = max(r.cached_sessions, 1)
        out.append(
            f"| {r.sessions:,} x {r.messages} | {r.cache_max_bytes / MB:.0f} MB | "
            f"{r.base_rss / MB:.1f} MB | {r.rss / MB:.1f} MB | {r.grown / MB:.1f} MB | "
            f"{r.accounted / MB:.1f} MB | {r.cached_sessions:,} | "
            f"{r.grown / cached / 1024:.1f} KB | {r.grown / cached / r.messages:.0f} B | "
            f"{r.grown / max(r.accounted, 1):.2f}x |")
    bound = runs[-1]
    out += ["", f"Bound: RSS {bound.rss / MB:.1f} MB against cache_max_bytes "
            f"{bound.cache_max_bytes / MB:.0f} MB + constant {bound.constant / MB:.1f} MB "
            f"(the process before any session {bound.base_rss / MB:.1f} MB, bounded side "
            f"structures {SIDE_BYTES / MB:.0f} MB, allocator slack {SLACK_BYTES / MB:.0f} MB).",
            ""]
    return out
