"""``serve --workers 2``: two forked workers behind one port, coherent with each other as
separate proxies are, one metrics view for the group, stopped together by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from proxy.localstack import Service
from tests.observability.serving import serve_process
from tests.system.test_metrics import value

WRITERS, TURNS = 4, 6


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _metrics_dir(pid: int) -> Path:
    """The group's multiprocess directory: the one holding this worker's counters."""
    found = list(Path(tempfile.gettempdir()).glob(f"amp-metrics-*/counter_{pid}.db"))
    assert len(found) == 1, found
    return found[0].parent


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _fresh(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    """One request on a new connection, so the kernel picks the worker anew each time."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.request(method, url, **kwargs) as resp:
            body = await resp.read()
            return resp.status, orjson.loads(body) if body[:1] == b"{" else body.decode()


async def _append(url: str, session: str, message: dict[str, str]) -> None:
    status, body = await _fresh("POST", f"{url}/v1/working-memory/{session}/messages",
                                json={"messages": [message]})
    assert status == 200, body


async def _writer(url: str, shared: str, own: str, acked: list[str], stale: list[str],
                  turn_of_shared: asyncio.Lock) -> None:
    for turn in range(TURNS):
        mid = f"{own}-{turn}"
        message = {"role": "user", "content": mid, "id": mid,
                   "created_at": "2024-01-01T00:00:00Z"}
        await _append(url, own, message)
        # The shared session takes one write at a time (whichever worker gets it): two
        # writes racing on one session through two proxies are a matter for the engine.
        async with turn_of_shared:
            await _append(url, shared, message)
            acked.append(mid)
            status, body = await _fresh("GET", f"{url}/v1/working-memory/{shared}"
                                        "?recent_messages_limit=1")
            if status != 200 or body["messages"][-1]["id"] != mid:
                stale.append(f"{shared} after {mid}: {status}")
        # Read-your-writes through whichever worker takes the next connection.
        status, body = await _fresh("GET", f"{url}/v1/working-memory/{own}"
                                    "?recent_messages_limit=1")
        if status != 200 or body["messages"][-1]["id"] != mid:
            stale.append(f"{own} turn {turn}: {status}")


async def test_two_workers_share_the_port_and_stay_coherent(
        upstream: Service, proxy_redis: Service, redis_client: Any) -> None:
    with serve_process(upstream, proxy_redis, workers=2, log_format="json",
                       drain_seconds=0.5, shutdown_timeout=5) as served:
        pids = _children(served.proc.pid)
        assert len(pids) == 2
        acked: list[str] = []
        stale: list[str] = []
        turn_of_shared = asyncio.Lock()
        await asyncio.gather(*(_writer(served.url, "workers-shared", f"workers-own-{i}",
                                       acked, stale, turn_of_shared)
                               for i in range(WRITERS)))
        errors = [line for line in served.log().splitlines() if '"ERROR"' in line]
        assert stale == [], errors
        status, body = await _fresh("GET", f"{served.url}/v1/working-memory/workers-shared")
        assert status == 200
        assert [m["id"] for m in body["messages"]] == acked
        # Any worker's scrape counts the whole group's requests, as of each worker's last
        # hand-over to its metrics file (once a second).
        await asyncio.sleep(1.5)
        appends = {"route": "/v1/working-memory/{session_id}/messages", "method": "POST"}
        scrapes = [(await _fresh("GET", served.url + "/-/metrics"))[1] for _ in range(6)]
        for text in scrapes:
            assert value(text, "amp_http_requests_total", status="200", **appends) == \
                2 * WRITERS * TURNS
            assert value(text, "amp_build_info") == 1
        metrics_dir = _metrics_dir(pids[0])
        assert {p.name.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")} == \
            {f"{pid}.db" for pid in pids}  # both workers counted requests
        sent = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(served.proc.wait, 15) == 0
        assert time.monotonic() - sent < 10
        assert not any(_running(pid) for pid in pids)
        assert not metrics_dir.exists()
        log = [orjson.loads(line) for line in served.log().splitlines()]
        access_pids = {line["pid"] for line in log if line["logger"] == "proxy.access"}
        assert access_pids == set(pids)
