"""Load for the fault tests: N sessions, each a client that appends one message per PUT
(re-sending the session whole, as the upstream's clients do) and reads its recent messages
between PUTs. Every answer is recorded; ``acked`` holds, per session, the messages of its
last PUT answered 200: what the proxy promised to keep.

``verify`` reads every session back (through a proxy that has cached nothing) and counts
the acknowledged messages that are not where they were promised.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from proxy.tasks import spawn

WM = "/v1/working-memory/"
JSON = {"Content-Type": "application/json"}
Message = dict[str, Any]


def message(sid: str, i: int) -> Message:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"{sid} turn {i}",
            "id": f"{sid}-{i}", "created_at": f"2024-01-01T{i // 3600 % 24:02d}:"
            f"{i // 60 % 60:02d}:{i % 60:02d}Z", "persisted_at": None,
            "discrete_memory_extracted": "f"}


@dataclass
class Sample:
    at: float  # monotonic time the request was sent
    kind: str  # "put" or "get"
    status: int  # 0: no answer (connection refused or reset)
    latency: float
    retry_after: str | None = None
    sid: str = ""


@dataclass
class Load:
    base: str  # the proxy's URL
    sessions: int = 25
    prefix: str = "load"
    think: float = 0.01  # seconds between a session's turns
    acked: dict[str, list[Message]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [f"{self.prefix}-{i}" for i in range(self.sessions)]

    def start(self, http: aiohttp.ClientSession) -> None:
        self._tasks = [spawn(self._session(http, sid), name=f"load:{sid}") for sid in self.ids]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _session(self, http: aiohttp.ClientSession, sid: str) -> None:
        turn = len(self.acked.setdefault(sid, []))
        while not self._stop.is_set():
            body = [*self.acked[sid], message(sid, turn)]
            turn += 1
            if await self._request(http, sid, "put", "PUT", f"{WM}{sid}",
                                   orjson.dumps({"messages": body})) == 200:
                self.acked[sid] = body
            await self._request(http, sid, "get", "GET", f"{WM}{sid}?recent_messages_limit=5")
            await asyncio.sleep(self.think)

    async def _request(self, http: aiohttp.ClientSession, sid: str, kind: str, method: str,
                       path: str, data: bytes | None = None) -> int:
        started = time.monotonic()
        try:
            async with http.request(method, self.base + path, data=data,
                                    headers=JSON if data else None) as resp:
                await resp.read()
                status, retry = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, OSError):
            status, retry = 0, None
        self.samples.append(Sample(started, kind, status, time.monotonic() - started, retry,
                                   sid))
        return status

    # --- figures --------------------------------------------------------------------------

    def between(self, start: float, end: float, kind: str | None = None) -> list[Sample]:
        return [s for s in self.samples
                if start <= s.at < end and (kind is None or s.kind == kind)]

    def recovered(self, since: float) -> tuple[float, float]:
        """Seconds after ``since`` until the first PUT, and until every session's first PUT,
        was answered 200."""
        firsts: dict[str, float] = {}
        for s in self.samples:
            if s.kind == "put" and s.status == 200 and s.at >= since:
                done = s.at + s.latency - since
                firsts[s.sid] = min(done, firsts.get(s.sid, done))
        assert len(firsts) == self.sessions, "some session never wrote again"
        return min(firsts.values()), max(firsts.values())

    @property
    def acknowledged(self) -> int:
        return sum(len(m) for m in self.acked.values())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    """p50 / p95 / max of latencies in seconds, as milliseconds."""
    if not values:
        return "-"
    return (f"p50 {1000 * statistics.median(values):.1f} / p95 {1000 * pct(values, 0.95):.1f}"
            f" / max {1000 * max(values):.1f} ms")


Reader = Callable[[str], Awaitable[list[Message] | None]]


async def verify(acked: dict[str, list[Message]], read: Reader, exact: bool) -> int:
    """Acknowledged messages missing from what is stored: each session must begin with
    (``exact``: be) the messages of its last acknowledged PUT. A PUT answered 503 may
    still have landed (its outcome is unknown to the client), hence the prefix."""
    lost = 0
    for sid, messages in acked.items():
        stored = await read(sid) or []
        kept = stored == messages if exact else stored[:len(messages)] == messages
        if not kept:
            lost += sum(1 for a, b in zip(messages, stored, strict=False) if a != b) + max(
                0, len(messages) - len(stored))
    return lost


def reader(http: aiohttp.ClientSession, base: str) -> Reader:
    async def read(sid: str) -> list[Message] | None:
        async with http.get(f"{base}{WM}{sid}") as resp:
            if resp.status == 404:
                return None
            assert resp.status == 200, await resp.text()
            found: list[Message] = orjson.loads(await resp.read())["messages"]
            return found

    return read
