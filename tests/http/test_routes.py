"""The proxy's own endpoints under /-/."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from proxy.localstack import free_port
from tests.conftest import ProxyFactory


async def test_own_endpoints(proxy: TestClient[Any, Any]) -> None:
    resp = await proxy.get("/-/healthz")
    assert resp.status == 200
    resp = await proxy.get("/-/readyz")
    assert resp.status == 200
    assert (await resp.json()) == {"status": "ready", "redis": "ok", "upstream": "ok"}


async def test_readyz_fails_when_redis_down(proxy_factory: ProxyFactory) -> None:
    client = await proxy_factory(redis_url=f"redis://127.0.0.1:{free_port()}")
    resp = await client.get("/-/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["redis"].startswith("down")
    assert body["upstream"] == "ok"
