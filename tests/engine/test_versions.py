"""Learning the upstream's version: from the real upstream's OpenAPI document, from the
setting, while the upstream is down (assumed, warned, asked again), and what an unknown
version or an impossible setting is answered as. The upstream is reached through a TCP
fault proxy where a test needs it down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from proxy.codec.dialect import NEWEST, V0_14, V0_15, Dialect
from proxy.engine.versions import VersionWatch, reported_version
from proxy.errors import UpstreamError
from proxy.localstack import Service, Stack, free_port
from proxy.upstream.client import Upstream, make_client_session
from tests.support.faultproxy import fault_proxy

LOGGER = "proxy.engine.versions"


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    client = make_client_session(1.0, 5.0)
    yield client
    await client.close()


class Applied:
    """Collects what the watch hands on."""

    def __init__(self) -> None:
        self.dialects: list[Dialect] = []

    def __call__(self, dialect: Dialect) -> None:
        self.dialects.append(dialect)


async def test_the_upstreams_own_version_is_learned_at_start(
        upstream: Service, stack: Stack, session: ClientSession) -> None:
    applied = Applied()
    watch = VersionWatch(Upstream(upstream.url, session), applied)
    dialect = await watch.start(5.0)
    assert dialect.version == stack.version and dialect.confirmed
    assert applied.dialects == [dialect] and watch.dialect == dialect
    await watch.confirm()  # known: nothing asked again
    assert applied.dialects == [dialect]
    assert await reported_version(Upstream(upstream.url, session)) == stack.version
    await watch.close()


async def test_a_set_version_is_used_without_asking(session: ClientSession) -> None:
    nowhere = Upstream(f"http://127.0.0.1:{free_port()}", session)
    watch = VersionWatch(nowhere, Applied(), setting="0.15.2", summarization=False,
                         threshold=0.5)
    dialect = await watch.start(0.1)
    assert (dialect.version, dialect.summarization, dialect.threshold) == ("0.15.2", False, 0.5)
    assert dialect.lookup_by_id and dialect.confirmed
    with pytest.raises(UpstreamError):
        await reported_version(nowhere)


@pytest.mark.parametrize(("setting", "assumed"), [("0.16.1", V0_15), ("0.13.0", V0_14)])
async def test_an_unknown_version_gets_one_warning_naming_the_rules_assumed(
        session: ClientSession, caplog: pytest.LogCaptureFixture, setting: str,
        assumed: Dialect) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    watch = VersionWatch(Upstream("http://127.0.0.1:1", session), Applied(), setting=setting)
    assert await watch.start(0.1) == assumed
    assert [r.getMessage() for r in caplog.records] == [
        f"agent-memory-server {setting!r} is not a version this proxy knows "
        f"(supported: 0.14.0, 0.15.2); answering as {assumed.version}"]


async def test_settings_the_version_cannot_run_with_are_warned_and_replaced(
        session: ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    old = VersionWatch(Upstream("http://127.0.0.1:1", session), Applied(), setting="0.14.0",
                       summarization=False)
    assert (await old.start(0.1)).summarizes
    new = VersionWatch(Upstream("http://127.0.0.1:1", session), Applied(), setting="0.15.2",
                       threshold=1.5)
    assert (await new.start(0.1)).threshold == 0.7
    assert len(caplog.records) == 2
    assert "always summarizes" in caplog.records[0].getMessage()
    assert "SUMMARIZATION_THRESHOLD=1.5" in caplog.records[1].getMessage()


async def test_while_the_upstream_is_down_the_newest_is_assumed_then_learned(
        upstream: Service, stack: Stack, session: ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    with fault_proxy(upstream.url) as link:
        link.cut()
        applied = Applied()
        watch = VersionWatch(Upstream(link.url("http"), session), applied)
        assumed = await watch.start(0.5)
        assert assumed.version == NEWEST.version and not assumed.confirmed
        assert watch.dialect is None and applied.dialects == []
        assert len(caplog.records) == 1
        assert "not known yet" in caplog.records[0].getMessage()
        await watch.confirm()  # still down: asked, not learned
        assert watch.dialect is None
        link.restore()
        await watch.confirm()  # a request asks at once
        assert watch.dialect is not None and watch.dialect.version == stack.version
        assert applied.dialects == [watch.dialect]
        await watch.close()


async def test_the_background_retry_learns_it_without_requests(
        upstream: Service, stack: Stack, session: ClientSession) -> None:
    with fault_proxy(upstream.url) as link:
        link.cut()
        applied = Applied()
        watch = VersionWatch(Upstream(link.url("http"), session), applied)
        await watch.start(0.2)
        link.restore()
        for _ in range(60):  # the first retries come after 0.5 s and 1 s
            if applied.dialects:
                break
            await asyncio.sleep(0.1)
        assert [d.version for d in applied.dialects] == [stack.version]
        await watch.close()
