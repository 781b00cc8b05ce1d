"""Pass-through parity with the real upstream, and each failure mode of the pass-through."""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.localstack import free_port
from tests.conftest import ProxyFactory

# x-request-id: the proxy adds its own to every answer (tests/observability/test_access.py)
IGNORED_HEADERS = {"date", "server", "x-request-id"}


async def _answer(resp: aiohttp.ClientResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    body = await resp.read()
    headers = [(k.lower(), v) for k, v in resp.headers.items() if k.lower() not in IGNORED_HEADERS]
    return resp.status, headers, body


async def both(proxy: TestClient[Any, Any], direct: aiohttp.ClientSession, method: str,
               path: str, **kwargs: Any) -> tuple[Any, Any]:
    async with direct.request(method, path, allow_redirects=False, **kwargs) as resp:
        want = await _answer(resp)
    async with proxy.request(method, path, allow_redirects=False, **kwargs) as resp:
        got = await _answer(resp)
    return want, got


def _mask_now(body: bytes) -> bytes:
    return re.sub(rb'"now":\d+', b'"now":0', body)


async def test_health_passes_through(proxy: TestClient[Any, Any],
                                     direct: aiohttp.ClientSession) -> None:
    want, got = await both(proxy, direct, "GET", "/v1/health")
    assert want[0] == got[0] == 200
    assert want[1] == got[1]
    assert _mask_now(want[2]) == _mask_now(got[2])
    assert b'"now"' in got[2]


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/no/such/route", {}),
    ("GET", "/v1/long-term-memory/01ABC", {}),
    ("POST", "/v1/long-term-memory/search", {"json": {"text": "tea"}}),
    ("POST", "/v1/long-term-memory/", {"json": {"memories": []}}),
    ("POST", "/v1/long-term-memory/", {"data": b"{not json", "headers": {
        "content-type": "application/json"}}),
    ("DELETE", "/v1/long-term-memory", {}),
    ("POST", "/v1/memory/prompt", {"json": {"query": "hi"}}),
    ("POST", "/v1/memory/prompt", {"json": {"query": "hi", "long_term_search": {"text": "x"}}}),
    ("POST", "/v1/memory/prompt", {"json": {"nope": 1}}),
    ("POST", "/v1/memory/prompt", {"data": b"", "headers": {"content-type": "application/json"}}),
    ("PATCH", "/v1/health", {}),
    ("DELETE", "/v1/health", {}),
    ("GET", "/v1/summary-views/does-not-exist", {}),
    ("GET", "/v1/tasks/does-not-exist", {}),
    ("GET", "/docs", {}),
    ("GET", "/openapi.json", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), CASES)
async def test_upstream_routes_answer_the_same(proxy: TestClient[Any, Any],
                                               direct: aiohttp.ClientSession, method: str,
                                               path: str, kwargs: dict[str, Any]) -> None:
    want, got = await both(proxy, direct, method, path, **kwargs)
    assert got == want


async def test_multi_megabyte_body_streams_through(proxy: TestClient[Any, Any],
                                                   direct: aiohttp.ClientSession) -> None:
    big = {"query": "x" * (6 * 1024 * 1024), "nope": list(range(1000))}
    payload = orjson.dumps(big)
    headers = {"content-type": "application/json"}
    async with direct.post("/v1/memory/prompt", data=io.BytesIO(payload),
                           headers=headers) as resp:
        want = await _answer(resp)
    async with proxy.post("/v1/memory/prompt", data=io.BytesIO(payload),
                          headers=headers) as resp:
        got = await _answer(resp)
    assert got == want
    assert len(got[2]) > 0


async def test_query_string_and_encoded_path_are_kept(proxy: TestClient[Any, Any],
                                                      direct: aiohttp.ClientSession) -> None:
    path = "/v1/long-term-memory/a%2Fb%20c?x=1&x=2&y=%C3%A9"
    want, got = await both(proxy, direct, "GET", path)
    assert got == want


async def test_redirect_is_passed_back_not_followed(proxy: TestClient[Any, Any],
                                                    direct: aiohttp.ClientSession) -> None:
    path = "/v1/summary-views/"
    want, got = await both(proxy, direct, "GET", path)
    assert got[0] == want[0]
    if want[0] == 307:
        # The location names the host the client asked, which differs by design.
        assert dict(got[1])["location"].endswith(dict(want[1])["location"].split("/", 3)[3])


# --- failure modes -------------------------------------------------------------------


async def test_upstream_down_gives_502_json(proxy_factory: ProxyFactory,
                                            caplog: pytest.LogCaptureFixture) -> None:
    client = await proxy_factory(upstream_url=f"http://127.0.0.1:{free_port()}")
    resp = await client.get("/v1/health")
    assert resp.status == 502
    body = await resp.json()
    assert "unreachable" in body["detail"]
    assert any("502" in r.getMessage() for r in caplog.records)


async def _fake_upstream(aiohttp_server: Any, handler: Any) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    return server


async def test_slow_upstream_gives_504(proxy_factory: ProxyFactory, aiohttp_server: Any) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    server = await _fake_upstream(aiohttp_server, slow)
    client = await proxy_factory(upstream_url=str(server.make_url("")), upstream_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.get("/v1/anything")
    assert resp.status == 504
    assert (await resp.json()) == {"detail": "upstream timed out"}
    assert loop.time() - started < 3


async def test_client_disconnect_mid_body_aborts_cleanly(proxy_factory: ProxyFactory,
                                                         aiohttp_server: Any) -> None:
    seen: list[str] = []

    async def sink(request: web.Request) -> web.Response:
        if request.method != "POST":  # the proxy's own start-up probes (auth, version)
            return web.Response(status=404)
        try:
            await request.read()
            seen.append("complete")
        except BaseException as exc:  # a cut connection cancels the handler or fails the read
            seen.append(type(exc).__name__)
            raise
        return web.Response(text="ok")

    server = await _fake_upstream(aiohttp_server, sink)
    client = await proxy_factory(upstream_url=str(server.make_url("")))
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"POST /v1/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 10000000\r\n\r\n" + b"a" * 200_000)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    for _ in range(50):
        if seen:
            break
        await asyncio.sleep(0.1)
    assert seen and seen[0] != "complete"
    # The proxy is still healthy afterwards.
    resp = await client.get("/-/healthz")
    assert resp.status == 200


async def test_hop_by_hop_headers_dropped_and_forwarded_added(proxy_factory: ProxyFactory,
                                                              aiohttp_server: Any) -> None:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({k.lower(): v for k, v in request.headers.items()},
                                 headers={"X-Up": "1", "Keep-Alive": "timeout=5"})

    server = await _fake_upstream(aiohttp_server, echo)
    client = await proxy_factory(upstream_url=str(server.make_url("")))
    resp = await client.get("/v1/echo", headers={"X-Custom": "v", "Proxy-Authorization": "s",
                                                  "X-Forwarded-For": "10.0.0.1"})
    seen = await resp.json()
    assert seen["x-custom"] == "v"
    assert "proxy-authorization" not in seen
    assert seen["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert "user-agent" in seen  # the test client sent one; nothing was added by the proxy
    assert resp.headers["X-Up"] == "1"
    assert "Keep-Alive" not in resp.headers
