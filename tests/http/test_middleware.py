"""The one place errors become answers: HttpError as JSON, UseUpstream as the upstream's
own answer."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import ProxyFactory


async def test_http_errors_become_json_with_their_headers(proxy_factory: ProxyFactory) -> None:
    client = await proxy_factory(queue_max=1, queue_wait_ms=0, redis_url="redis://127.0.0.1:1")
    resp = await client.put("/v1/working-memory/s?context_window_max=100000000",
                            json={"messages": []})
    assert resp.status == 503
    assert resp.content_type == "application/json"
    assert set(await resp.json()) == {"detail"}


async def test_invalid_request_is_422_json(proxy_factory: ProxyFactory) -> None:
    client = await proxy_factory()
    resp = await client.post("/v1/working-memory/s/messages", data=b"{")
    assert resp.status == 422
    assert (await resp.json())["detail"].startswith("body is not valid JSON")


async def test_use_upstream_forwards_the_request(proxy_factory: ProxyFactory,
                                                 direct: aiohttp.ClientSession) -> None:
    client = await proxy_factory()
    # An id with an encoded slash is the upstream's to answer (its router never matches).
    path = "/v1/working-memory/a%2Fb"
    ours = await client.get(path)
    theirs = await direct.get(path)
    assert (ours.status, await ours.read()) == (theirs.status, await theirs.read())
    # An unsupported query on a read is forwarded too, and answered as the upstream does.
    query = "/v1/working-memory/s?recent_messages_limit=abc"
    ours_q: Any = await client.get(query)
    theirs_q = await direct.get(query)
    assert (ours_q.status, await ours_q.read()) == (theirs_q.status, await theirs_q.read())
