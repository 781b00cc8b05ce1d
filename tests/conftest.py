"""Shared fixtures: real servers on free ports, started once per test session.

The reference stack (Redis Stack + agent-memory-server) is installed into the cache dir
on first use (see proxy/localstack) and reused afterwards. ``$AMP_UPSTREAM_VERSION`` picks
the upstream version of the session fixtures (default: the local stack's default);
tests/system/test_versions_parity.py runs the differential suites against the others.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.codec.dialect import Dialect, for_version
from proxy.config import Settings
from proxy.localstack import (
    ProcessGroup,
    Service,
    Stack,
    cache_root,
    ensure_stack,
    reported_version,
    start_redis,
    start_upstream,
)


@pytest.fixture(scope="session")
def stack() -> Stack:
    return ensure_stack(cache_root(os.environ))


@pytest.fixture(scope="session")
def processes() -> Iterator[ProcessGroup]:
    group = ProcessGroup()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def upstream_redis(stack: Stack, processes: ProcessGroup) -> Service:
    return start_redis(processes, stack, "upstream-redis")


@pytest.fixture(scope="session")
def upstream(stack: Stack, processes: ProcessGroup, upstream_redis: Service) -> Service:
    return start_upstream(processes, stack, upstream_redis.url)


@pytest.fixture(scope="session")
def proxy_redis(stack: Stack, processes: ProcessGroup) -> Service:
    return start_redis(processes, stack, "proxy-redis", modules=False)


@asynccontextmanager
async def emptied_client(service: Service) -> AsyncIterator[aioredis.Redis]:
    """A client of ``service``'s Redis, emptied first (FLUSHDB), closed after."""
    client = aioredis.Redis.from_url(service.url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client(proxy_redis: Service) -> AsyncIterator[aioredis.Redis]:
    async with emptied_client(proxy_redis) as client:
        yield client


def app_of(client: TestClient[Any, Any]) -> web.Application:
    """The application behind a test client (typed: the server is always a TestServer)."""
    server = client.server
    assert isinstance(server, TestServer)
    return server.app


def make_settings(upstream_url: str, redis_url: str, **overrides: Any) -> Settings:
    # The upstream sync is off unless a test turns it on (tests/sync, test_sync*): the
    # shared upstream is also the direct side of comparisons, where hand-overs of the
    # proxy's sessions would show up.
    return Settings.from_mapping({"upstream_url": upstream_url, "redis_url": redis_url,
                                  "upstream_sync": False, **overrides})


ProxyFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def proxy_factory(
    aiohttp_client: Any, upstream: Service, proxy_redis: Service
) -> ProxyFactory:
    """Start a proxy app on a real port; keyword arguments override settings."""

    async def start(**overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(overrides.pop("upstream_url", upstream.url),
                                 overrides.pop("redis_url", proxy_redis.url), **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings))
        return client

    return start


@pytest.fixture
async def proxy(proxy_factory: ProxyFactory) -> TestClient[Any, Any]:
    return await proxy_factory()


@pytest.fixture
async def direct(upstream: Service) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client talking straight to the upstream, for side-by-side comparisons."""
    async with aiohttp.ClientSession(upstream.url, auto_decompress=False) as session:
        yield session


@functools.cache
def rules_of(url: str) -> Dialect:
    return for_version(reported_version(url))[0]


@pytest.fixture
def dialect(upstream: Service) -> Dialect:
    """The rules of the upstream under test (by the version it reports): tests assert
    what differs between versions through these, never by skipping."""
    return rules_of(upstream.url)
