"""What one client may cost: bodies in flight against a budget, a body-read timeout,
slow pass-through clients that hold no upstream connection, a bounded wait for one,
client hang-ups and malformed HTTP logged in one quiet line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy.app import create_app
from proxy.errors import Overloaded
from proxy.http.limits import BodyBudget
from proxy.tasks import spawn
from tests.conftest import ProxyFactory, make_settings

WM = "/v1/working-memory/"


async def raw_request(port: int | None, head: str, body: bytes = b"") -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    await writer.drain()
    return reader, writer


def put_head(path: str, length: int) -> str:
    return (f"PUT {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            f"Content-Length: {length}\n")


async def status_of(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and the whole answer (head and body) of one response."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body = await asyncio.wait_for(reader.readexactly(length), 10)
    return int(head.split(b" ", 2)[1]), head + body


def test_budget_admits_a_lone_body_and_bounds_the_rest() -> None:
    budget = BodyBudget(100)
    budget.take(500)  # alone: always fits (max_body_bytes bounds its size)
    with pytest.raises(Overloaded) as refused:
        budget.take(1)
    assert refused.value.headers() == {"Retry-After": "1"}
    budget.give_back(500)
    budget.take(60)
    budget.take(40)
    with pytest.raises(Overloaded):
        budget.take(1)


async def test_bodies_past_the_budget_get_503_before_they_are_read(
        proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(bodies_in_flight_bytes=1_000_000)
    # One client declares 600 kB and sends it slowly; the next 600 kB does not fit.
    _, slow = await raw_request(proxy.port, put_head(WM + "budget-1", 600_000), b"{")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    reader, writer = await raw_request(proxy.port, put_head(WM + "budget-2", 600_000))
    status, answer = await status_of(reader)
    assert status == 503 and b"Retry-After: 1" in answer
    assert b"bodies_in_flight_bytes" in answer
    assert time.monotonic() - started < 2
    slow.close()
    writer.close()
    # Once the first is gone, a body fits again.
    ok = await proxy.put(WM + "budget-3", json={"messages": []})
    assert ok.status == 200


async def test_a_body_not_sent_in_time_gets_408(proxy_factory: ProxyFactory) -> None:
    proxy = await proxy_factory(body_read_timeout=0.5)
    reader, writer = await raw_request(proxy.port, put_head(WM + "late", 100), b'{"mes')
    status, answer = await status_of(reader)
    assert status == 408 and b"not received within 0.5 s" in answer
    writer.close()


@pytest.fixture
async def stand_in_upstream() -> AsyncIterator[tuple[str, list[str]]]:
    """An upstream whose /slow answers after 2 s (and /v1/health at once)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        await request.read()
        if request.path == "/slow":
            await asyncio.sleep(2)
        return web.json_response({"path": request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_a_slow_pass_through_body_holds_no_upstream_connection(
        proxy_factory: ProxyFactory, stand_in_upstream: tuple[str, list[str]]) -> None:
    url, seen = stand_in_upstream
    proxy = await proxy_factory(upstream_url=url, upstream_connections=1,
                                upstream_pool_wait=0.5, auth_mode="off")
    head = ("POST /v1/long-term-memory/search HTTP/1.1\nHost: x\n"
            "Content-Type: application/json\nContent-Length: 20\n")
    _, slow = await raw_request(proxy.port, head, b'{"text":')
    await asyncio.sleep(0.3)
    fast = await proxy.get("/v1/other")  # the only upstream connection is still free
    assert fast.status == 200
    assert "/v1/long-term-memory/search" not in seen  # nothing sent before the body is in
    slow.close()


async def test_a_full_pool_waits_boundedly_and_readiness_still_answers(
        proxy_factory: ProxyFactory, stand_in_upstream: tuple[str, list[str]]) -> None:
    url, _ = stand_in_upstream
    proxy = await proxy_factory(upstream_url=url, upstream_connections=1,
                                upstream_pool_wait=0.3, auth_mode="off")
    holder = spawn(proxy.get("/slow"), name="holder")
    await asyncio.sleep(0.2)
    started = time.monotonic()
    busy = await proxy.get("/v1/other")
    assert busy.status == 503 and busy.headers["Retry-After"] == "1"
    assert "upstream_connections" in (await busy.json())["detail"]
    assert 0.25 < time.monotonic() - started < 1.5
    ready = await proxy.get("/-/readyz")  # control traffic has connections of its own
    assert ready.status == 200
    assert (await holder).status == 200


@pytest.fixture
async def served(proxy_redis: Any, upstream: Any, redis_client: Any
                 ) -> AsyncIterator[Callable[..., Any]]:
    """The app as production serves it (handlers not cancelled when a client leaves)."""
    runners: list[web.AppRunner] = []

    async def serve(**overrides: Any) -> int:
        runner = web.AppRunner(create_app(make_settings(upstream.url, proxy_redis.url,
                                                        **overrides)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield serve
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize("path", [WM + "hang-up", "/v1/memory/prompt",
                                  WM + "hang-up/messages", "/v1/long-term-memory/search"])
async def test_a_client_hanging_up_mid_body_is_a_client_disconnect(
        served: Callable[..., Any], caplog: pytest.LogCaptureFixture, path: str) -> None:
    port = await served()
    caplog.set_level(logging.INFO)
    method = "PUT" if path.endswith("hang-up") else "POST"
    head = (f"{method} {path} HTTP/1.1\nHost: x\nContent-Type: application/json\n"
            f"Content-Length: 100000\n")
    _, writer = await raw_request(port, head, b'{"messages": [' + b" " * 5000)
    await asyncio.sleep(0.3)
    writer.close()
    await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [
        r.getMessage() for r in caplog.records]
    assert any("client disconnected" in r.getMessage() for r in caplog.records)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{WM}hang-up") as resp:
            assert resp.status == 404  # nothing stored


@pytest.mark.parametrize("request_line", [
    b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GE\x00T / HTTP/1.1\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\n\r\n",
])
async def test_malformed_http_gets_one_line_and_no_traceback(
        served: Callable[..., Any], caplog: pytest.LogCaptureFixture,
        request_line: bytes) -> None:
    port = await served()
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n" + request_line)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    assert b" 400 " in answer
    writer.close()
    lines = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(lines) == 1
    assert lines[0].exc_info is None and "\n" not in lines[0].getMessage()
    assert lines[0].getMessage().startswith("malformed request from 127.0.0.1")
