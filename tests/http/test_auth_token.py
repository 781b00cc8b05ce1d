"""Auth parity against the real upstream in token mode (``DISABLE_AUTH=false
AUTH_MODE=token``, tokens made with its own CLI): every request the upstream refuses, the
proxy refuses byte for byte, and stores nothing; a valid client gets every route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from proxy.errors import ServiceCredentialMissing
from proxy.http.appkeys import ENGINE, METRICS
from proxy.upstream.credentials import acting_as_proxy
from tests.conftest import make_settings
from tests.http.authmatrix import SEED, WM, Route, Sides, message, mismatches, run_matrix
from tests.http.conftest import AuthStack, bearer

pytestmark = pytest.mark.upstream

ProxyFor = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def proxy_for(aiohttp_client: Any, proxy_redis: Any, redis_client: aioredis.Redis) -> ProxyFor:
    async def start(auth: AuthStack, **overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(auth.upstream.url, proxy_redis.url, **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
        return client

    return start


@pytest.fixture
async def direct_to(token_stack: AuthStack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(token_stack.upstream.url) as session:
        yield session


async def test_every_route_with_every_credential(token_stack: AuthStack, proxy_for: ProxyFor,
                                                 direct_to: aiohttp.ClientSession) -> None:
    proxy = await proxy_for(token_stack)
    sides = Sides(direct_to, proxy)
    creds = token_stack.credentials
    await sides.seed(creds["valid"])
    results = await run_matrix(sides, creds)
    assert mismatches(results) == []
    # The refusals are the upstream's own, in its order: JSON that does not parse first.
    assert results[("get", "none")][1].body == b'{"detail":"Missing authorization header"}'
    assert results[("get", "none")][1].www_authenticate == "Bearer"
    assert results[("get", "wrong")][1].body == b'{"detail":"Invalid token"}'
    assert results[("get", "expired")][1].body == b'{"detail":"Token has expired"}'
    assert results[("put-not-json", "wrong")][1].status == 422
    assert results[("put-invalid", "wrong")][1].status == 401
    assert results[("put-invalid", "valid")][1].status == 422
    for route in ("list", "get", "put", "delete", "prompt", "append", "pass-through"):
        assert results[(route, "valid")][1].status == 200, route
    await _nothing_stored_by_refused(sides, creds)


async def _nothing_stored_by_refused(sides: Sides, creds: dict[str, tuple[str, ...]]) -> None:
    valid = creds["valid"]
    for side in ("direct", "proxy"):
        for cred in creds:
            new = await sides.send(side, Route("n", "GET", WM + "SIDE-new-CRED?namespace="
                                               "SIDE-ns"), cred, valid)
            assert new.status == (200 if cred == "valid" else 404), (side, cred, new)
        for cred, status in (("valid", 404), ("refused", 200)):
            kept = await sides.send(side, Route("k", "GET", WM + "SIDE-del-CRED?namespace="
                                                "SIDE-ns"), cred, valid)
            assert kept.status == status, (side, cred, kept)
    listed = await sides.send("proxy", Route("l", "GET", WM + "?namespace=SIDE-ns&limit=100"),
                              "", valid)
    names = set(listed.body.decode().split('"'))
    assert "SIDE-new-valid" in names
    assert not any(f"SIDE-new-{c}" in names for c in creds if c != "valid")


async def test_valid_client_imports_and_deletes(token_stack: AuthStack, proxy_for: ProxyFor,
                                                direct_to: aiohttp.ClientSession) -> None:
    """A session written before the proxy was deployed is imported once, with the client's
    credential, and its upstream copy deleted; DELETE reaches the upstream too."""
    proxy = await proxy_for(token_stack)
    auth = {"Authorization": f"Bearer {token_stack.valid}"}
    body = orjson.dumps({"messages": [message(1, "written before the proxy")]})
    put = await direct_to.put(WM + "legacy-1", data=body, headers={
        **auth, "Content-Type": "application/json"})
    assert put.status == 200
    before = await (await direct_to.get(WM + "legacy-1", headers=auth)).read()
    got = await proxy.get(WM + "legacy-1", headers=auth)
    assert got.status == 200 and await got.read() == before
    assert (await direct_to.get(WM + "legacy-1", headers=auth)).status == 404  # moved over
    assert (await proxy.get(WM + "legacy-1")).status == 401
    deleted = await proxy.delete(WM + "legacy-1", headers=auth)
    assert deleted.status == 200
    assert (await proxy.get(WM + "legacy-1", headers=auth)).status == 404


async def test_revoked_token_is_refused_within_the_cache_lifetime(
        token_stack: AuthStack, proxy_for: ProxyFor, direct_to: aiohttp.ClientSession) -> None:
    """Revocation shows through the proxy at most ``auth_cache_ttl`` later, and at once
    when the client's next request reaches the upstream (which then refuses it)."""
    ttl = 3.0
    made = await asyncio.to_thread(token_stack.add_token, "revoked")
    auth = {"Authorization": f"Bearer {made['token']}"}
    short = await proxy_for(token_stack, auth_cache_ttl=ttl)
    long = await proxy_for(token_stack, auth_cache_ttl=3600)
    for proxy in (short, long):
        assert (await proxy.get(WM + "?namespace=revoked")).status == 401
        assert (await proxy.get(WM + "?namespace=revoked", headers=auth)).status == 200
    await asyncio.to_thread(token_stack.remove_token, made["hash"])
    revoked_at = time.monotonic()
    want = await direct_to.get(WM + "?namespace=revoked", headers=auth)
    want_body = await want.read()
    assert (want.status, want_body) == (401, b'{"detail":"Invalid token"}'), "upstream"
    # Through a pass-through route the upstream refuses it, and the proxy forgets it.
    assert (await long.get("/v1/summary-views", headers=auth)).status == 401
    got = await long.get(WM + "?namespace=revoked", headers=auth)
    assert (got.status, await got.read()) == (401, want_body), "after a pass-through 401"
    # Otherwise it is asked again once the verdict is auth_cache_ttl old.
    while True:
        got = await short.get(WM + "?namespace=revoked", headers=auth)
        if got.status == 401:
            assert await got.read() == want_body
            break
        assert time.monotonic() - revoked_at < ttl + 1.0, "revocation not seen in time"
        await asyncio.sleep(0.2)


async def test_verdicts_are_cached(token_stack: AuthStack, proxy_for: ProxyFor) -> None:
    """The first request with a credential waits for one bcrypt-heavy check upstream;
    the following ones ask nothing; concurrent first requests share one check."""
    auth = {"Authorization": bearer(token_stack.valid)[0]}
    writer = await proxy_for(token_stack)
    seeded = await writer.put(WM + "cached-1", data=SEED, headers={
        **auth, "Content-Type": "application/json"})
    assert seeded.status == 200
    proxy = await proxy_for(token_stack)  # its own, empty verdict cache
    started = time.perf_counter()
    replies = await asyncio.gather(*(proxy.get(WM + "cached-1?namespace=SIDE-ns",
                                               headers=auth) for _ in range(8)))
    first = time.perf_counter() - started
    assert [r.status for r in replies] == [200] * 8
    started = time.perf_counter()
    for _ in range(50):
        assert (await proxy.get(WM + "cached-1?namespace=SIDE-ns", headers=auth)).status == 200
    warm = (time.perf_counter() - started) / 50
    registry = proxy.app[METRICS].registry
    assert registry.get_sample_value("amp_auth_checks_total", {"result": "accepted"}) == 1
    print(f"\nauth check: 8 concurrent first requests {first * 1000:.0f} ms (one check), "
          f"then {warm * 1000:.2f} ms per request from the verdict cache")
    assert warm < first / 10


async def test_the_proxys_own_calls_carry_the_service_token(
        token_stack: AuthStack, proxy_for: ProxyFor) -> None:
    """``acting_as_proxy()`` (for work no client asked for, as the upstream sync) sends
    ``upstream_service_token``; without one the call is refused before it is made."""
    with_token = await proxy_for(token_stack, upstream_service_token=token_stack.valid)
    sessions = with_token.app[ENGINE].upstream
    with acting_as_proxy():
        assert await sessions.fetch("service-probe", None, None) is None  # 404, not 401
    without = await proxy_for(token_stack)
    with acting_as_proxy(), pytest.raises(ServiceCredentialMissing):
        await without.app[ENGINE].upstream.fetch("service-probe", None, None)


async def _raw_get(port: int, path: str, authorization: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
                 + authorization + b"\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("path", [WM + "raw-bytes", "/v1/summary-views"])
async def test_a_credential_that_is_not_utf8(token_stack: AuthStack, proxy_for: ProxyFor,
                                             path: str) -> None:
    """Bytes that are not UTF-8 still reach the upstream as a (bad) credential, not as
    none: its answer is "Invalid token" either way."""
    proxy = await proxy_for(token_stack)
    assert proxy.port is not None
    upstream_port = int(token_stack.upstream.url.rsplit(":", 1)[1])
    want = await _raw_get(upstream_port, path, b"Bearer \xff\xfe\xc3")
    got = await _raw_get(proxy.port, path, b"Bearer \xff\xfe\xc3")
    assert got == want == (401, b'{"detail":"Invalid token"}')
