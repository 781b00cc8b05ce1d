"""``/-/metrics`` is the proxy's own (never passed through) and samples gauges per scrape."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ProxyFactory


async def test_metrics_route_is_answered_by_the_proxy(proxy_factory: ProxyFactory,
                                                      redis_client: Any) -> None:
    proxy = await proxy_factory()
    resp = await proxy.get("/-/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    assert families["amp_invalidation_connected"].type == "gauge"
    assert families["amp_cache_sessions"].samples[0].value == 0
    # A HEAD or POST is not the proxy's route: the upstream answers those.
    assert (await proxy.post("/-/metrics")).status in (404, 405)


async def test_gauges_follow_the_components(proxy_factory: ProxyFactory,
                                            redis_client: Any) -> None:
    proxy = await proxy_factory()
    resp = await proxy.put("/v1/working-memory/ops-1", json={"messages": [
        {"role": "user", "content": "hi", "id": "a", "created_at": "2024-01-01T00:00:00Z"}]})
    assert resp.status == 200
    text = await (await proxy.get("/-/metrics")).text()
    samples = {s.name: s.value for f in text_string_to_metric_families(text)
               for s in f.samples}
    assert samples["amp_cache_sessions"] == 1 and samples["amp_cache_bytes"] > 0
