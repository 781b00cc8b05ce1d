"""``/-/metrics`` after real traffic through real proxies (real Redis, real upstream): each
family moves as it should, labels hold route templates, never session ids."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.localstack import free_port
from tests.conftest import ProxyFactory

WM = "/v1/working-memory"
SESSION_ROUTE = WM + "/{session_id}"


def _body(n: int, size: int = 10) -> bytes:
    return orjson.dumps({"messages": [
        {"role": "user", "content": f"m{i} " + "x" * size, "id": f"id-{i}",
         "created_at": "2024-01-01T00:00:00Z"} for i in range(n)]})


async def _put(client: TestClient[Any, Any], sid: str, n: int, size: int = 10) -> int:
    resp = await client.put(f"{WM}/{sid}", data=_body(n, size),
                            headers={"content-type": "application/json"})
    await resp.read()
    return resp.status


async def _scrape(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/-/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return await resp.text()


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == name and labels.items() <= s.labels.items())


async def test_each_family_moves_with_real_traffic(proxy_factory: ProxyFactory,
                                                   redis_client: Any) -> None:
    a, b = await proxy_factory(), await proxy_factory()
    assert await _put(a, "metered-1", 3) == 200
    for _ in range(2):
        assert (await a.get(f"{WM}/metered-1?recent_messages_limit=2")).status == 200
    assert (await a.get(f"{WM}/metered-unknown")).status == 404  # miss, then import asks
    assert (await a.get("/v1/health")).status == 200  # pass-through
    for _ in range(2):  # b loads the session, then takes a read lease on it
        assert (await b.get(f"{WM}/metered-1")).status == 200
    assert await _put(a, "metered-1", 4) == 200  # ends b's lease, waits for its release
    text = await _scrape(a)
    get, put = {"route": SESSION_ROUTE, "method": "GET"}, {"route": SESSION_ROUTE,
                                                            "method": "PUT"}
    assert value(text, "amp_http_requests_total", status="200", **get) == 2
    assert value(text, "amp_http_requests_total", status="404", **get) == 1
    assert value(text, "amp_http_requests_total", status="200", **put) == 2
    assert value(text, "amp_http_requests_total", route="pass-through", method="GET") == 1
    assert value(text, "amp_http_request_duration_seconds_count", **get) == 3
    assert value(text, "amp_http_request_duration_seconds_sum", **put) > 0
    assert value(text, "amp_cache_lookups_total", result="hit") >= 2
    assert value(text, "amp_cache_lookups_total", result="miss") >= 2
    assert value(text, "amp_cache_bytes") > 0 and value(text, "amp_cache_sessions") >= 1
    assert value(text, "amp_flushed_writes_total", result="written") == 2
    assert value(text, "amp_flush_batch_size_count") == 2
    assert value(text, "amp_flush_duration_seconds_count") == 2
    assert value(text, "amp_write_queue_depth") == 0
    assert value(text, "amp_sync_marks_owed") == 0
    assert value(text, "amp_lease_grants_total") >= 2
    assert value(text, "amp_lease_release_wait_seconds_count") == 1
    assert value(text, "amp_invalidation_connected") == 1
    assert value(text, "amp_upstream_requests_total", use="pass_through") == 1
    assert value(text, "amp_upstream_requests_total", use="call") >= 1
    assert value(text, "amp_upstream_request_duration_seconds_count", use="call") >= 1
    assert value(text, "amp_build_info") == 1
    # Families other parts of the proxy feed are exported from the start.
    for name in ("amp_auth_cache_entries", "amp_sync_backlog_sessions", "amp_sync_lag_seconds"):
        assert name in text
    assert "metered-1" not in text and "metered-unknown" not in text
    assert value(await _scrape(b), "amp_lease_revocations_total") == 1


async def test_conflicts_evictions_full_queue_and_upstream_errors(
        proxy_factory: ProxyFactory, redis_client: Any) -> None:
    # Without leases a proxy plans on its cached version; a write through another one
    # in between makes its next write conflict (and be re-planned).
    c, d = await proxy_factory(read_lease_ms=0), await proxy_factory(read_lease_ms=0)
    assert await _put(c, "contended", 2) == 200
    assert await _put(d, "contended", 3) == 200
    assert await _put(c, "contended", 4) == 200
    assert value(await _scrape(c), "amp_flushed_writes_total", result="conflict") == 1

    small = await proxy_factory(cache_max_bytes=8_000)
    for i in range(6):
        assert await _put(small, f"evicted-{i}", 5, size=400) == 200
    text = await _scrape(small)
    assert value(text, "amp_cache_evictions_total") >= 3
    assert value(text, "amp_cache_bytes") <= 8_000

    tight = await proxy_factory(queue_max=1, queue_wait_ms=1)
    await redis_client.execute_command("CLIENT", "PAUSE", "400", "WRITE")
    statuses = await asyncio.gather(*(_put(tight, f"queued-{i}", 2) for i in range(6)))
    assert 503 in statuses and 200 in statuses
    text = await _scrape(tight)
    assert value(text, "amp_write_queue_rejections_total", reason="queue_full") == \
        statuses.count(503)
    assert value(text, "amp_http_requests_total", status="503", method="PUT") == \
        statuses.count(503)

    cut_off = await proxy_factory(upstream_url=f"http://127.0.0.1:{free_port()}")
    assert (await cut_off.get("/v1/health")).status == 502
    text = await _scrape(cut_off)
    assert value(text, "amp_upstream_errors_total", use="pass_through", kind="unreachable") == 1
    assert value(text, "amp_http_requests_total", route="pass-through", status="502") == 1
