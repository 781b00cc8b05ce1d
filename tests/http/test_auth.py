"""The auth guard against a small upstream stand-in (a real aiohttp app on a free port) whose
answers the test sets: verdict caching, single flight, fail closed, detection.
The real upstream in both auth modes: test_auth_token.py and test_auth_oauth2.py."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.config import Settings
from proxy.errors import CannotVerify, Refused
from proxy.http.auth import AuthGuard, jwt_expiry
from proxy.upstream.client import Upstream

MISSING = b'{"detail":"Missing authorization header"}'
INVALID = b'{"detail":"Invalid token"}'


@dataclass
class StandIn:
    """Answers GET /v1/tasks/{id} the way the upstream's auth would."""

    mode: str = "enforce"  # enforce | open | error | no-route | slow
    probes: list[str | None] = field(default_factory=list)

    async def task(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.probes.append(auth)
        task_id = request.match_info["task_id"]
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "error":
            return web.Response(status=500, text="Internal Server Error")
        if self.mode == "no-route":
            return web.json_response({"detail": "Not Found"}, status=404)
        if self.mode == "enforce" and not auth:
            return web.Response(status=401, body=MISSING, content_type="application/json",
                                headers={"WWW-Authenticate": "Bearer"})
        if self.mode == "enforce" and auth != "Bearer good":
            return web.Response(status=401, body=INVALID, content_type="application/json")
        return web.json_response({"detail": f"Task {task_id} not found"}, status=404)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[StandIn, str]]:
    behaviour = StandIn()
    app = web.Application()
    app.router.add_get("/v1/tasks/{task_id}", behaviour.task)
    server = TestServer(app)
    await server.start_server()
    yield behaviour, str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def make_guard(stand_in: tuple[StandIn, str]) -> AsyncIterator[Any]:
    sessions: list[aiohttp.ClientSession] = []

    def make(clock: Clock | None = None, **overrides: Any) -> AuthGuard:
        session = aiohttp.ClientSession()
        sessions.append(session)
        settings = Settings.from_mapping({"upstream_url": overrides.pop("url", stand_in[1]),
                                          "upstream_timeout": 1.0, **overrides})
        upstream = Upstream(settings.upstream_url, session)
        return AuthGuard(upstream, settings, clock=clock or Clock(), wall=lambda: 10_000.0)

    yield make
    for session in sessions:
        await session.close()


async def test_refusals_are_the_upstreams_own(stand_in: tuple[StandIn, str],
                                              make_guard: Any) -> None:
    guard = make_guard(auth_mode="on")
    with pytest.raises(Refused) as missing:
        await guard.check(())
    assert (missing.value.status, missing.value.body(), missing.value.headers()) == (
        401, MISSING, {"WWW-Authenticate": "Bearer"})
    with pytest.raises(Refused) as invalid:
        await guard.check(("Bearer bad",))
    assert (invalid.value.body(), invalid.value.headers()) == (INVALID, {})
    await guard.check(("Bearer good",))


async def test_one_check_per_credential_in_flight_and_cached(stand_in: tuple[StandIn, str],
                                                             make_guard: Any) -> None:
    behaviour, _ = stand_in
    clock = Clock()
    guard = make_guard(clock, auth_mode="on", auth_cache_ttl=10, auth_negative_ttl=2)
    await asyncio.gather(*(guard.check(("Bearer good",)) for _ in range(20)))
    assert behaviour.probes == ["Bearer good"]
    clock.now += 9.9
    await guard.check(("Bearer good",))
    assert len(behaviour.probes) == 1
    clock.now += 0.2  # past auth_cache_ttl: asked again
    await guard.check(("Bearer good",))
    assert len(behaviour.probes) == 2
    for _ in range(3):
        with pytest.raises(Refused):
            await guard.check(("Bearer bad",))
    assert len(behaviour.probes) == 3
    clock.now += 2.1  # past auth_negative_ttl
    with pytest.raises(Refused):
        await guard.check(("Bearer bad",))
    assert len(behaviour.probes) == 4


async def test_the_cache_is_bounded_and_keyed_by_a_secret_hash(make_guard: Any) -> None:
    guard = make_guard(auth_mode="on", auth_cache_size=2)
    for token in ("good", "bad-1", "bad-2"):
        with pytest.raises(Refused) if token != "good" else nullcontext():
            await guard.check((f"Bearer {token}",))
    keys = list(guard._verdicts.keys())
    assert len(keys) == 2
    assert all(b"good" not in k and b"bad" not in k for k in keys)
    other = make_guard(auth_mode="on")
    assert other._key(("Bearer good",)) != guard._key(("Bearer good",))
    assert guard._key(()) != guard._key(("",))  # no header is not an empty one


@pytest.mark.parametrize("mode", ["error", "no-route", "slow", "unreachable"])
async def test_fails_closed(stand_in: tuple[StandIn, str], make_guard: Any,
                            mode: str) -> None:
    """No judgement from the upstream (an error, a route that does not answer as its
    handler would, a timeout, no upstream) is a 503, never an acceptance, and is not
    remembered."""
    behaviour, _ = stand_in
    behaviour.mode = mode
    url = "http://127.0.0.1:9" if mode == "unreachable" else None
    guard = make_guard(auth_mode="on", **({"url": url} if url else {}))
    for _ in range(2):
        with pytest.raises(CannotVerify) as failed:
            await guard.check(("Bearer good",))
    assert failed.value.status == 503 and failed.value.headers() == {"Retry-After": "1"}
    assert len(guard._verdicts) == 0


async def test_detection_follows_the_upstream(stand_in: tuple[StandIn, str],
                                              make_guard: Any) -> None:
    behaviour, _ = stand_in
    guard = make_guard()  # auth_mode auto
    assert guard.enforced is None and guard.checking()  # not known yet: check
    await guard.detect()
    assert guard.enforced is True
    with pytest.raises(Refused):
        await guard.check(("Bearer bad",))
    behaviour.mode = "open"
    await guard.detect()
    assert guard.enforced is False and not guard.checking()
    await guard.check(("Bearer bad",))  # the upstream would serve it now
    behaviour.mode = "error"
    await guard.detect()  # no answer: the last known state stands
    assert guard.enforced is False


async def test_a_401_through_the_proxy_forgets_an_accepted_verdict(
        stand_in: tuple[StandIn, str], make_guard: Any) -> None:
    behaviour, _ = stand_in
    guard = make_guard(auth_mode="on")
    await guard.check(("Bearer good",))
    guard.noticed(("Bearer good",), 200)
    await guard.check(("Bearer good",))
    assert len(behaviour.probes) == 1
    guard.noticed(("Bearer good",), 401)  # say, a pass-through answer after revocation
    await guard.check(("Bearer good",))
    assert len(behaviour.probes) == 2
    with pytest.raises(Refused):
        await guard.check(("Bearer bad",))
    guard.noticed(("Bearer bad",), 401)  # refusals are not re-asked for every refusal
    with pytest.raises(Refused):
        await guard.check(("Bearer bad",))
    assert len(behaviour.probes) == 3


async def test_off_never_asks(stand_in: tuple[StandIn, str], make_guard: Any) -> None:
    behaviour, _ = stand_in
    guard = make_guard(auth_mode="off")
    await guard.start()
    await guard.check(("Bearer bad",))
    assert behaviour.probes == []
    await guard.close()


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


async def test_an_accepted_jwt_is_trusted_until_its_exp_at_most(
        stand_in: tuple[StandIn, str], make_guard: Any) -> None:
    assert jwt_expiry("Bearer " + _jwt({"exp": 12345})) == 12345.0
    assert jwt_expiry("Bearer not.a.jwt") is None
    assert jwt_expiry("Basic " + _jwt({"exp": 1})) is None
    assert jwt_expiry("Bearer " + _jwt({"exp": True})) is None
    behaviour, _ = stand_in
    behaviour.mode = "open"
    clock = Clock()
    guard = make_guard(clock, auth_mode="on", auth_cache_ttl=60)
    token = ("Bearer " + _jwt({"exp": 10_005}),)  # the wall clock says 10_000: 5 s left
    await guard.check(token)
    clock.now += 4.9
    await guard.check(token)
    assert len(behaviour.probes) == 1
    clock.now += 0.2
    await guard.check(token)
    assert len(behaviour.probes) == 2
    expired = ("Bearer " + _jwt({"exp": 9_000}),)  # accepted, yet never remembered
    await guard.check(expired)
    await guard.check(expired)
    assert len(behaviour.probes) == 4


async def test_start_up_names_the_missing_service_token(make_guard: Any,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    caplog.set_level(logging.INFO, logger="proxy.auth")
    guard = make_guard()
    await guard.start()
    await guard.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("upstream_service_token is not set (AMP_UPSTREAM_SERVICE_TOKEN)" in w
               for w in warnings)
    caplog.clear()
    refused = make_guard(upstream_service_token="not-it")
    await refused.start()
    await refused.close()
    assert any("refuses upstream_service_token" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)
