"""The benchmark's part e): the sync's figures read from a live proxy, and the section that
sets sync on beside sync off."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson

from load.locustrun import LocustRow
from load.syncreport import SyncFigures, cpu_seconds, read_figures, sync_section
from proxy.localstack import Service
from tests.engine_fixtures import WM, msgs
from tests.sync.sessions import eventually
from tests.sync.test_handover import sid


def row(target: str, users: int, p50: float) -> LocustRow:
    return LocustRow(target, "FullPutUser", users, "PUT full [1k-2k]", 100, 0, p50, p50 * 2,
                     p50 * 3, 10.0)


def test_the_section_sets_sync_on_beside_sync_off() -> None:
    figures = SyncFigures({"ok": 30.0, "unchanged": 5.0}, 35.0, 3.5, 0.4, 2.0, 6.0, 60.0)
    lines = sync_section(figures, [row("proxy", 25, 4.0), row("proxy-nosync", 25, 3.5),
                                   row("upstream", 25, 80.0)])
    text = "\n".join(lines)
    assert "| 25 | PUT full | 4.00 | 8.00 | 12.00 | 3.50 | 7.00 | 10.50 |" in text
    assert "hand-overs: 30 (0.50/s" in text and "100 ms on average" in text
    assert "0.10 cores" in text
    assert "could not be read" in "\n".join(sync_section(None, []))


async def test_figures_come_from_the_proxys_metrics(proxy_factory: Any, upstream: Service,
                                                    redis_client: Any) -> None:
    proxy = await proxy_factory(upstream_sync=True, sync_quiet_ms=20, sync_max_lag_ms=100)
    for _ in range(2):
        await proxy.put(f"{WM}{sid()}", data=orjson.dumps({"messages": msgs(2)}),
                        headers={"Content-Type": "application/json"})
    base = str(proxy.make_url(""))
    pid, before = upstream.process.pid, cpu_seconds(upstream.process.pid)

    async def handed() -> SyncFigures | None:
        f = await asyncio.to_thread(read_figures, base, pid, before, 1.0)
        return f if f.results.get("ok", 0) >= 2 else None
    figures = await eventually(handed)
    assert figures.rounds >= 2 and figures.round_s > 0 and figures.upstream_cpu_s >= 0
    assert cpu_seconds(os.getpid()) > 0
