"""Auth parity against the real upstream in oauth2 mode: RS256 JWTs minted by the test,
verified by the upstream itself against a JWKS document served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.app import create_app
from tests.conftest import make_settings
from tests.http.authmatrix import WM, Sides, mismatches, run_matrix
from tests.http.conftest import AuthStack, Jwks

pytestmark = pytest.mark.upstream


@pytest.fixture
async def proxy(aiohttp_client: Any, oauth_stack: AuthStack, proxy_redis: Any,
                redis_client: aioredis.Redis) -> TestClient[Any, Any]:
    settings = make_settings(oauth_stack.upstream.url, proxy_redis.url)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
    return client


@pytest.fixture
async def direct(oauth_stack: AuthStack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(oauth_stack.upstream.url) as session:
        yield session


async def test_every_route_with_every_credential(oauth_stack: AuthStack,
                                                 proxy: TestClient[Any, Any],
                                                 direct: aiohttp.ClientSession) -> None:
    sides = Sides(direct, proxy)
    creds = oauth_stack.credentials
    await sides.seed(creds["valid"])
    results = await run_matrix(sides, creds)
    assert mismatches(results) == []
    refusals = {cred: results[("get", cred)][1].body for cred in creds if cred != "valid"}
    assert refusals["expired"] == b'{"detail":"Invalid JWT: Signature has expired."}'
    assert refusals["unknown-kid"] == (b'{"detail":"Unable to find matching public key for '
                                       b'kid: rotated-away"}')
    assert refusals["none"] == b'{"detail":"Missing authorization header"}'
    for route in ("list", "get", "put", "delete", "prompt", "append", "pass-through"):
        assert results[(route, "valid")][1].status == 200, route


async def test_a_token_expiring_within_the_cache_lifetime(
        oauth_stack: AuthStack, jwks: Jwks, proxy: TestClient[Any, Any],
        direct: aiohttp.ClientSession) -> None:
    """An accepted JWT is trusted no longer than its ``exp``, whatever auth_cache_ttl."""
    lifetime = 3
    auth = {"Authorization": "Bearer " + jwks.mint(lifetime=lifetime)}
    minted = time.time()
    assert (await proxy.get(WM + "?namespace=expiring", headers=auth)).status == 200
    await asyncio.sleep(max(0.0, minted + lifetime + 1.1 - time.time()))
    want = await direct.get(WM + "?namespace=expiring", headers=auth)
    got = await proxy.get(WM + "?namespace=expiring", headers=auth)
    assert (got.status, await got.read(), got.headers.get("WWW-Authenticate")) == (
        want.status, await want.read(), want.headers.get("WWW-Authenticate"))
    assert got.status == 401
