"""Auth parity: the proxy never answers what the upstream would refuse.

The upstream is the only judge of a credential, whatever its auth mode (bcrypt tokens,
OAuth2 JWTs, or a mode it gains later). The proxy asks it, with the client's own
credential, the cheapest authenticated question it has that changes nothing:
``GET /v1/tasks/<random id>``. A 404 naming that id (its handler ran, so auth passed)
accepts the credential; a 401 or 403 refuses it, and that answer (status, body,
``WWW-Authenticate``) is exactly what the client gets; anything else, or no answer in
time, is a 503 (fail closed, never remembered).

* Whether to check at all (``auth_mode``): ``on`` always, ``off`` never (only behind a
  trusted network), ``auto`` while the upstream enforces auth: the same question without
  a credential, at start-up and every ``auth_probe_interval``; a 401 seen through the proxy
  while it believes auth is off asks again at once. Until an answer came, it checks.
* Verdicts are remembered under a keyed hash of the credential (BLAKE2b with a per-process
  key; the credential itself is never kept): at most ``auth_cache_size``, accepted ones for
  ``auth_cache_ttl`` (never past a JWT's ``exp``), refused ones for ``auth_negative_ttl``.
  Concurrent requests with one credential share one check (single flight). An accepted
  credential the upstream refuses through the proxy (a revoked token on a pass-through
  route) is forgotten at once; otherwise revocation shows within ``auth_cache_ttl``.
* Where the gate stands: every request is served for its client (``AuthGuard.caller``,
  entered by the request pipeline, http/middleware.py); the engine calls
  ``verify_caller()`` (upstream/credentials.py) just before it answers from its own
  state. Whatever goes to the upstream instead (a PUT for validation, a forwarded read,
  the prompt) carries the client's credential, so the upstream judges it in its own
  order: a body that is not JSON gets its 422 before auth, every other validation error
  comes after.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial

import aiohttp
import orjson
from aiohttp import web
from cachetools import TLRUCache
from multidict import CIMultiDict

from proxy.config import Settings
from proxy.errors import CannotVerify, Refused
from proxy.http.appkeys import METRICS, SETTINGS, UPSTREAM
from proxy.observability.metrics import Metrics
from proxy.tasks import cancel_and_wait, spawn
from proxy.upstream.client import Upstream, wire_value
from proxy.upstream.credentials import AUTHORIZATION, Caller, Credentials

log = logging.getLogger("proxy.auth")

PROBE_PATH = "/v1/tasks/"
CHECKS_IN_FLIGHT = 32  # distinct credentials checked at once; the rest queue
REDETECT_GAP = 1.0  # seconds between detections a client's 401 may trigger
UNKNOWN_RETRY = 2.0  # seconds between detections while the upstream has not answered one


@dataclass(frozen=True, slots=True)
class Verdict:
    """The upstream's judgement of one credential."""

    expires: float  # on the guard's clock
    status: int = 0  # 0: accepted; else the refusal's status
    body: bytes = b""
    www_authenticate: str | None = None
    failure: str = ""  # set when the upstream gave no judgement (never cached)

    @property
    def accepted(self) -> bool:
        return not self.status and not self.failure

    def refusal(self) -> Refused:
        return Refused(self.status, self.body, self.www_authenticate)


class AuthGuard:
    """Decides, by asking the upstream, whether it would serve a credential."""

    def __init__(self, upstream: Upstream, settings: Settings, metrics: Metrics | None = None,
                 *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.upstream = upstream
        self.mode = settings.auth_mode
        self._anonymous = Caller((), None if self.mode == "off" else partial(self.check, ()))
        self.ttl = settings.auth_cache_ttl
        self.negative_ttl = settings.auth_negative_ttl
        self.probe_interval = settings.auth_probe_interval
        self.timeout = settings.upstream_timeout
        self.metrics = metrics if metrics is not None else Metrics()
        self.clock, self.wall = clock, wall
        # None: not known yet (checks run meanwhile); only "auto" ever changes it.
        self.enforced: bool | None = {"on": True, "off": False}.get(self.mode)
        self.credentials = Credentials(settings.upstream_service_token, self.checking)
        self._verdicts: TLRUCache[bytes, Verdict] = TLRUCache(
            settings.auth_cache_size, ttu=lambda _k, v, _now: v.expires, timer=clock)
        self._inflight: dict[bytes, asyncio.Task[Verdict]] = {}
        self._slots = asyncio.Semaphore(CHECKS_IN_FLIGHT)
        self._secret = os.urandom(32)
        self._detector: asyncio.Task[None] | None = None
        self._last_detect = -REDETECT_GAP
        self._hits = self.metrics.auth_cache_lookups.labels("hit")
        self._misses = self.metrics.auth_cache_lookups.labels("miss")
        self.metrics.add_sampler(lambda: self.metrics.auth_cache_entries.set(
            len(self._verdicts)))

    def checking(self) -> bool:
        """Whether the upstream's judgement is needed now."""
        return self.mode == "on" or (self.mode == "auto" and self.enforced is not False)

    # --- per request ------------------------------------------------------------------

    def caller(self, request: web.Request) -> Caller:
        if AUTHORIZATION not in request.headers:
            return self._anonymous  # the same for every such request: built once
        values = tuple(wire_value(v) for v in request.headers.getall(AUTHORIZATION, ()))
        verify = None if self.mode == "off" else partial(self.check, values)
        return Caller(values, verify)

    async def check(self, authorization: tuple[str, ...]) -> None:
        """Raise the upstream's refusal of ``authorization``, or 503 when it cannot tell."""
        if not self.checking():
            return
        verdict = await self.verdict(authorization)
        if verdict.failure:
            raise CannotVerify(f"cannot verify the credential with the upstream: "
                               f"{verdict.failure}")
        if not verdict.accepted:
            raise verdict.refusal()

    async def verdict(self, authorization: tuple[str, ...]) -> Verdict:
        key = self._key(authorization)
        cached = self._verdicts.get(key)
        if cached is not None:
            self._hits.inc()
            return cached
        self._misses.inc()
        task = self._inflight.get(key)
        if task is None:
            task = spawn(self._judge(key, authorization), name="auth-check")
            self._inflight[key] = task
            task.add_done_callback(partial(self._landed, key))
        # Shielded: a waiter that gives up does not cancel the others' check.
        return await asyncio.shield(task)

    def _landed(self, key: bytes, task: asyncio.Task[Verdict]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    def noticed(self, authorization: tuple[str, ...], status: int) -> None:
        """An answer went to a client: a 401/403 (the upstream's, through the proxy) means
        an accepted credential no longer is, or that auth was just turned on."""
        if status not in (401, 403) or self.mode == "off":
            return
        key = self._key(authorization)
        verdict = self._verdicts.get(key)
        if verdict is not None and verdict.accepted:
            self._verdicts.pop(key, None)
        if self.mode == "auto" and self.enforced is False:
            now = self.clock()
            if now - self._last_detect >= REDETECT_GAP:
                self._last_detect = now
                spawn(self.detect(), name="auth-detect")

    def _key(self, authorization: tuple[str, ...]) -> bytes:
        raw = "\n".join(authorization).encode("utf-8", "surrogateescape")
        marker = b"1" if authorization else b"0"  # no header is not an empty one
        return hashlib.blake2b(marker + raw, key=self._secret, digest_size=20).digest()

    # --- asking the upstream ----------------------------------------------------------

    async def _judge(self, key: bytes, authorization: tuple[str, ...]) -> Verdict:
        started = time.perf_counter()
        async with self._slots:
            verdict = await self._ask(authorization)
        if verdict.failure:
            self.metrics.auth_checks.labels("error").inc()
            log.warning("credential check failed: %s", verdict.failure)
            return verdict
        self.metrics.auth_checks.labels("accepted" if verdict.accepted else "refused").inc()
        if verdict.expires > self.clock():
            self._verdicts[key] = verdict
        log.debug("credential %s in %.1f ms", "accepted" if verdict.accepted else "refused",
                  (time.perf_counter() - started) * 1000)
        return verdict

    async def _ask(self, authorization: tuple[str, ...]) -> Verdict:
        probe_id = f"amp-auth-probe-{uuid.uuid4().hex}"
        headers = CIMultiDict((AUTHORIZATION, v) for v in authorization)
        try:
            async with self.upstream.session.get(
                    self.upstream.url_for(PROBE_PATH + probe_id), headers=headers,
                    allow_redirects=False, timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                status, body = resp.status, await resp.read()
                www = resp.headers.get("WWW-Authenticate")
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Verdict(0.0, failure=f"upstream unreachable ({exc.__class__.__name__})")
        now = self.clock()
        if status in (200, 404) and (status == 200 or probe_id.encode() in body):
            return Verdict(now + self._positive_ttl(authorization))
        if status in (401, 403):
            return Verdict(now + self.negative_ttl, status, body, www)
        return Verdict(0.0, failure=f"upstream answered {status} to a credential check")

    def _positive_ttl(self, authorization: tuple[str, ...]) -> float:
        """``auth_cache_ttl``, but never past the expiry a JWT carries."""
        exp = jwt_expiry(authorization[0]) if authorization else None
        return self.ttl if exp is None else min(self.ttl, exp - self.wall())

    # --- does the upstream enforce auth? ----------------------------------------------

    async def detect(self) -> None:
        """Ask without a credential; remember the answer as the verdict for no credential."""
        if self.mode != "auto":
            return
        verdict = await self._ask(())
        if verdict.failure:
            log.warning("cannot tell whether the upstream enforces auth (%s); checking "
                        "credentials meanwhile", verdict.failure)
            return
        enforced = not verdict.accepted
        if enforced != self.enforced:
            if self.enforced is not None:
                log.warning("the upstream %s enforces auth", "now" if enforced else "no longer")
            self._verdicts.clear()
            self.enforced = enforced
        if verdict.expires > self.clock():
            self._verdicts[self._key(())] = verdict

    async def _keep_detecting(self) -> None:
        while True:
            await asyncio.sleep(self.probe_interval if self.enforced is not None
                                else min(self.probe_interval, UNKNOWN_RETRY))
            await self.detect()

    async def start(self) -> None:
        await self.detect()
        if self.mode == "auto":
            self._detector = spawn(self._keep_detecting(), name="auth-detect-loop")
        self._announce()
        if self.checking() and self.credentials.has_service_token:
            await self._check_service_token()

    async def close(self) -> None:
        await cancel_and_wait(self._detector)
        for task in list(self._inflight.values()):
            await cancel_and_wait(task)

    def _announce(self) -> None:
        if self.mode == "off":
            log.warning("auth_mode = off: working-memory routes are answered without "
                        "checking credentials; run this only behind a trusted network")
        elif self.enforced is False:
            log.info("the upstream does not enforce auth (checked every %.0f s)",
                     self.probe_interval)
        else:
            log.info("credentials are checked with the upstream (verdicts kept %.0f s, "
                     "refusals %.0f s)", self.ttl, self.negative_ttl)
        if self.checking() and not self.credentials.has_service_token:
            log.warning("upstream_service_token is not set (AMP_UPSTREAM_SERVICE_TOKEN): "
                        "upstream calls of the proxy's own, with no client behind them "
                        "(the upstream sync), will be refused while the upstream enforces "
                        "auth")

    async def _check_service_token(self) -> None:
        verdict = await self._ask(tuple(self.credentials.service_headers().values()))
        if verdict.failure:
            log.warning("could not check upstream_service_token: %s", verdict.failure)
        elif not verdict.accepted:
            log.error("the upstream refuses upstream_service_token (%d %s)", verdict.status,
                      verdict.body.decode(errors="replace"))


def jwt_expiry(authorization: str) -> float | None:
    """The ``exp`` claim of a bearer JWT (unverified: it only shortens a cache lifetime)."""
    scheme, _, token = authorization.partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


GUARD = web.AppKey("auth_guard", AuthGuard)


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """The guard's lifetime (a cleanup_ctx after the upstream client's)."""
    guard = app[GUARD] = AuthGuard(app[UPSTREAM], app[SETTINGS], app.get(METRICS))
    await guard.start()
    yield
    await guard.close()
