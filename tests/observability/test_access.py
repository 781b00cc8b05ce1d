"""Request ids and the access middleware, on a real proxy whose upstream records what it
receives (a real aiohttp application on a free port: the boundary the ids must cross)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.observability.context import MAX_LENGTH, new_request_id, request_id_from
from tests.conftest import ProxyFactory


async def _recording_upstream(aiohttp_server: Any) -> tuple[TestServer, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("X-Request-ID", "")))
        return web.json_response({"detail": "Not Found"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server: TestServer = await aiohttp_server(app)
    return server, seen


async def test_request_id_reaches_the_upstream_and_comes_back(
        aiohttp_server: Any, proxy_factory: ProxyFactory, redis_client: Any) -> None:
    server, seen = await _recording_upstream(aiohttp_server)
    # auth off: this upstream enforces nothing and answers 404 to everything.
    proxy = await proxy_factory(upstream_url=str(server.make_url("")), auth_mode="off",
                                upstream_sync=False)
    # Pass-through, the client's own id.
    resp = await proxy.get("/v1/long-term-memory/abc", headers={"X-Request-ID": "client-7"})
    assert resp.status == 404 and resp.headers["X-Request-ID"] == "client-7"
    assert seen[-1] == ("/v1/long-term-memory/abc", "client-7")
    # A buffered call of the proxy's own (importing a session it does not hold), an id
    # generated for the request.
    resp = await proxy.get("/v1/working-memory/nobody-has-this")
    generated = resp.headers["X-Request-ID"]
    assert resp.status == 404 and generated
    assert ("/v1/working-memory/nobody-has-this", generated) in seen
    # Answers the proxy makes alone carry one too.
    resp = await proxy.get("/-/healthz")
    assert resp.headers["X-Request-ID"] not in ("", generated)


def test_generated_ids_are_unique_and_given_ones_are_bounded() -> None:
    assert len({new_request_id() for _ in range(1000)}) == 1000
    assert request_id_from("x" * 1000) == "x" * MAX_LENGTH
    assert request_id_from(None) != request_id_from(None)
    assert request_id_from("") != ""
