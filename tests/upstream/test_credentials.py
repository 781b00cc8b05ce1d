"""Whose credential an upstream call carries: the client's while one is served, the
proxy's own otherwise, and a clear refusal when the proxy has none and needs one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.errors import Refused, ServiceCredentialMissing, UpstreamError
from proxy.tasks import spawn
from proxy.upstream.client import Upstream
from proxy.upstream.credentials import (
    Caller,
    Credentials,
    acting_as_proxy,
    acting_for,
    current_caller,
    verify_caller,
)
from proxy.upstream.sessions import UpstreamSessions


def test_a_client_call_carries_the_clients_headers_as_sent() -> None:
    credentials = Credentials("svc")
    with acting_for(Caller(("Bearer a", "Bearer b"))):
        assert credentials.headers().getall("Authorization") == ["Bearer a", "Bearer b"]
    with acting_for(Caller(())):  # a client without a credential: none is added
        assert "Authorization" not in credentials.headers()


def test_the_proxys_own_calls_carry_the_service_token() -> None:
    credentials = Credentials("svc")
    assert current_caller() is None
    assert credentials.headers()["Authorization"] == "Bearer svc"
    with acting_for(Caller(("Bearer client",))), acting_as_proxy():
        assert credentials.headers()["Authorization"] == "Bearer svc"
    assert credentials.service_headers() == {"Authorization": "Bearer svc"}


def test_without_a_service_token_it_depends_on_the_upstream() -> None:
    enforced = False
    credentials = Credentials("", lambda: enforced)
    assert credentials.service_headers() == {}
    enforced = True
    with pytest.raises(ServiceCredentialMissing, match="upstream_service_token"):
        credentials.service_headers()
    with pytest.raises(ServiceCredentialMissing):
        credentials.headers()
    assert ServiceCredentialMissing("x").status == 503


async def test_verify_caller_asks_the_callers_verifier() -> None:
    asked: list[str] = []

    async def refuse() -> None:
        asked.append("refuse")
        raise Refused(401, b'{"detail":"Invalid token"}', None)

    await verify_caller()  # nobody to verify: the proxy acts on its own
    with acting_for(Caller(("Bearer x",), refuse)):
        with pytest.raises(Refused):
            await verify_caller()
        with acting_as_proxy():
            await verify_caller()
    assert asked == ["refuse"]


async def test_spawned_tasks_keep_the_caller() -> None:
    """A background call started while serving a client (the delete of a shadowed
    upstream copy) carries that client's credential."""
    credentials = Credentials("svc")

    async def later() -> str:
        await asyncio.sleep(0)
        return credentials.headers()["Authorization"]

    with acting_for(Caller(("Bearer client",))):
        task = spawn(later(), name="later")
    assert await task == "Bearer client"


async def test_a_refusal_mid_request_is_the_clients_answer() -> None:
    """A credential revoked between its check and a call made with it: the client gets
    the upstream's refusal; a call of the proxy's own gets a plain upstream error."""
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=401, body=b'{"detail":"Invalid token"}',
                            content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        sessions = UpstreamSessions(Upstream(str(server.make_url("")), session))
        with acting_for(Caller(("Bearer revoked",))), pytest.raises(Refused) as refused:
            await sessions.delete("s-1", None, None)
        assert (refused.value.status, refused.value.body()) == (
            401, b'{"detail":"Invalid token"}')
        with acting_for(Caller(("Bearer revoked",))), pytest.raises(Refused):
            await sessions.fetch("s-1", None, None)
        with pytest.raises(UpstreamError) as failed:
            await sessions.delete("s-1", None, None)
        assert not isinstance(failed.value, Refused)
    await server.close()
