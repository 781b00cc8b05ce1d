"""Smoke tests of the benchmark's newer parts against real servers: the floor's PUT sink,
the proxy alone against the floor, wrk at saturation, the memory runs, issue 15's verdicts
and their report sections."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp.test_utils import TestClient

from load.alone import alone_section, floor_ratios, sample_alone
from load.bench import report_stem
from load.floor import create_app as create_floor
from load.idle import idle_section
from load.idle import measure as measure_idle
from load.idle import table as idle_table
from load.locustrun import LocustRow
from load.memory import measure, memory_section
from load.report import chat_section
from load.saturation import SatRow, best, ensure_wrk, run_wrk, saturation_section
from load.stats import Stat
from load.verdicts import (
    get_floor_verdict,
    load_verdict,
    memory_verdict,
    put_verdicts,
    saturation_verdict,
)
from proxy.localstack import ProcessGroup, Service


async def test_the_floor_answers_a_put_with_the_bytes_it_was_given(aiohttp_server: Any) -> None:
    floor = await aiohttp_server(create_floor())
    async with aiohttp.ClientSession(str(floor.make_url(""))) as http:
        async with http.put("/body", data=b'{"answer":1}') as resp:
            assert resp.status == 200
        async with http.put("/sink", data=b"x" * 100_000) as resp:
            assert await resp.read() == b'{"answer":1}'
        async with http.get("/body") as resp:
            assert await resp.read() == b'{"answer":1}'


async def test_the_proxy_alone_is_set_against_the_floor(proxy: TestClient[Any, Any],
                                                       aiohttp_server: Any) -> None:
    floor = await aiohttp_server(create_floor())
    rows = await sample_alone(str(proxy.make_url("")).rstrip("/"), 2, (10, 200),
                              str(floor.make_url("")).rstrip("/"))
    assert {(r.target, r.op) for r in rows if r.target == "floor"} == {
        ("floor", "GET recent (limit 10)"), ("floor", "PUT full (+2 messages)")}
    ratios = floor_ratios(rows, "GET recent (limit 10)")
    assert set(ratios) == {10, 200} and all(px > 0 and fl > 0 for px, fl in ratios.values())
    text = "\n".join(alone_section(rows))
    assert "Against the floor" in text and "x |" in text


async def test_the_idle_run_sets_the_proxys_puts_against_the_floors_and_redis(
        proxy: TestClient[Any, Any], aiohttp_server: Any, redis_client: Any) -> None:
    floor = await aiohttp_server(create_floor())
    rows = await measure_idle(str(proxy.make_url("")).rstrip("/"),
                              str(floor.make_url("")).rstrip("/"), redis_client, size=50,
                              mix="chat", samples=3, pauses=(0.0, 0.01), session="idle-run")
    assert [r.pause for r in rows] == [0.0, 0.01]
    assert all(r.ping_ms > 0 and r.floor_ms > 0 and r.proxy_ms > 0 for r in rows)
    text = "\n".join(idle_table(rows, 50, "chat"))
    assert "| 10 ms |" in text and "proxy / floor" in text
    section = "\n".join(idle_section(rows, 50, "chat"))  # the benchmark's part h
    paused = rows[-1]
    assert section.startswith("## h) ") and text in section
    assert f"PING {paused.ping_ms:.2f} ms, proxy - floor " \
           f"{paused.proxy_ms - paused.floor_ms:.2f} ms" in section
    assert idle_section([], 50, "chat") == []
    # The proxy's PUTs all landed: the seed, the three warm-up turns and every sample's.
    got = await proxy.get("/v1/working-memory/idle-run")
    assert got.status == 200
    assert len((await got.json())["messages"]) == 50 + 2 * (3 + 2 * 3)
    # The floor answered with what the proxy answered to its last warm-up PUT.
    async with aiohttp.ClientSession() as http:
        async with http.get(str(floor.make_url("/body"))) as answer:
            echoed = orjson.loads(await answer.read())
    assert echoed["session_id"] == "idle-run" and len(echoed["messages"]) == 50 + 2 * 3


async def test_wrk_saturates_a_server_and_its_figures_are_read(aiohttp_server: Any) -> None:
    wrk = ensure_wrk()
    assert wrk is not None, "wrk could not be installed"
    floor = await aiohttp_server(create_floor())
    url = str(floor.make_url("/body"))
    rps, p50, p99, n, errors = await asyncio.to_thread(run_wrk, wrk, url, 1, connections=4,
                                                       core=None)
    assert rps > 0 and n > 0 and errors == 0 and 0 < p50 <= p99
    rows = [SatRow("GET recent (20)", 1000, t, r, 1.0, 2.0, 50.0, 0)
            for t, r in (("proxy", 600.0), ("floor", 1000.0), ("proxy", 500.0),
                         ("floor", 900.0), ("proxy", 700.0), ("floor", 1100.0))]
    proxy = best(rows, "GET recent (20)", "proxy")
    assert proxy is not None and proxy.rps == 600.0
    assert "| GET recent (20) | 1,000 | proxy | 600 |" in "\n".join(saturation_section(rows, 1))
    assert saturation_verdict(600.0, 1000.0).passed is True
    # A ratio at the edge keeps its second decimal: 0.529 is not shown as a bare 0.5.
    assert saturation_verdict(529.0, 1000.0).detail == "0.53x >= 0.5x"
    assert saturation_verdict(400.0, 1000.0).passed is False


def test_a_memory_run_reports_what_the_cache_accounts_for(
        processes: ProcessGroup, upstream: Service, proxy_redis: Service) -> None:
    figures = measure(processes, upstream.url, proxy_redis.url, 30, 50, 200_000, "mem-test")
    assert 0 < figures.cached_sessions < 30  # 30 sessions do not fit in 200 KB
    assert 0 < figures.accounted <= 200_000 and figures.base_rss > 0
    text = "\n".join(memory_section([figures]))
    assert "| 30 x 50 | 0 MB |" in text and "Bound: RSS" in text
    assert memory_verdict(100, 50, 60).passed is True
    assert memory_verdict(200, 50, 60).passed is False


def _stat(op: str, size: int, target: str, p50: float) -> Stat:
    return Stat(op, size, target, 10, 0, p50, p50, p50, float(size))


def test_issue_15_verdicts_from_a_run() -> None:
    bench = [_stat("put_full", s, t, v) for s, t, v in (
        (4_000, "upstream", 300.0), (4_000, "proxy", 2.0), (4_000, "floor", 1.5),
        (20_000, "upstream", 1500.0), (20_000, "proxy", 9.0), (20_000, "floor", 4.0))]
    chat = [_stat("put_full", 4_000, t, v) for t, v in
            (("upstream", 100.0), ("proxy", 3.0), ("floor", 1.0))]
    verdicts = put_verdicts({"bench": bench, "chat": chat})
    assert [v.passed for v in verdicts] == [False, True, False, False]  # 2.25x, 150x, 3x, 33x
    assert "sizes this run has" in verdicts[2].measured
    gets = [_stat("get_recent", s, t, v) for s, t, v in
            ((10, "proxy", 1.2), (10, "floor", 1.0), (20_000, "proxy", 1.4),
             (20_000, "floor", 1.0))]
    v = get_floor_verdict(gets)
    assert v.passed is True and "largest size is 20,000" in v.measured
    slow = [*gets, _stat("get_recent", 50_000, "proxy", 2.0),
            _stat("get_recent", 50_000, "floor", 1.0)]
    assert get_floor_verdict(slow).passed is False
    rows = [LocustRow("proxy", "FullPutUser", u, f"{k} [1k-2k]", 10, 0, p, p, p, 1.0)
            for u, k, p in ((1, "PUT full", 5.0), (250, "PUT full", 12.0),
                            (1, "GET recent", 1.0), (250, "GET recent", 2.0))]
    assert load_verdict(rows).passed is True
    assert load_verdict(rows, target="proxy-nosync").passed is None  # no such rows
    assert load_verdict([]).passed is None  # not measured
    text = "\n".join(chat_section(chat, 0.1))
    assert "short chat turns" in text and "| 4,000 | 100 |" in text


def test_saturation_rows_need_a_target(tmp_path: Path) -> None:
    assert best([], "GET recent (20)", "proxy") is None
    assert saturation_section([], 1.0)[0] == "## f) Saturation (wrk)"


def test_a_later_run_the_same_day_keeps_the_earlier_runs_report(tmp_path: Path) -> None:
    assert report_stem(tmp_path, "2026-12-07", "full") == "bench-2026-12-07"
    (tmp_path / "bench-2026-12-07.md").write_text("first run")
    assert report_stem(tmp_path, "2026-12-07", "full") == "bench-2026-12-07-2"
    (tmp_path / "bench-2026-12-07-2.md").write_text("second run")
    assert report_stem(tmp_path, "2026-12-07", "full") == "bench-2026-12-07-3"
    assert report_stem(tmp_path, "2026-12-07", "quick") == "bench-2026-12-07-quick"
    assert report_stem(tmp_path, "2026-12-08", "full") == "bench-2026-12-08"
