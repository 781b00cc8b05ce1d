"""Which agent-memory-server the proxy fronts, and so the rules (codec/dialect.py) it
answers by.

* ``upstream_version = "auto"`` (the default): the version the upstream reports,
  ``info.version`` of its OpenAPI document (``GET /openapi.json``, open even where the
  upstream enforces auth). Asked at start-up, for up to ``upstream_connect_timeout``.
  When the upstream does not answer then, the proxy starts anyway, answering as the
  newest supported version (one warning says so), and keeps asking in the background
  (after 0.5 s, doubling up to 30 s). Until it knows, a GET or DELETE whose exact key the
  proxy does not hold asks at once (one request at a time, the others wait for it): only
  those requests take the lookup by id, and they need the upstream anyway (the session
  may live there). So an assumed version shows only while the upstream is unreachable.
* A version in ``upstream_version``: used as given, nothing asked.
* A version the proxy does not know: one warning naming the rules it answers by
  (``dialect.for_version``).

The upstream's summarization settings cannot be read from outside; the proxy is told them
(``upstream_summarization``, ``upstream_summarization_threshold``, mirroring the upstream's
ENABLE_WORKING_MEMORY_SUMMARIZATION and SUMMARIZATION_THRESHOLD). The defaults are the
upstream's and are always safe for the switch: a PUT over the threshold is handed to the
upstream, whose answer is then its own (summarized or not). ``false`` saves those hand-offs
when the upstream's is off too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import orjson

from proxy.codec.dialect import NEWEST, V0_14, Dialect, for_version
from proxy.errors import HttpError, UpstreamError
from proxy.tasks import cancel_and_wait, spawn
from proxy.upstream.client import Upstream

log = logging.getLogger("proxy.engine.versions")

AUTO = "auto"
OPENAPI = "/openapi.json"
RETRY_FIRST, RETRY_MAX = 0.5, 30.0


async def reported_version(upstream: Upstream) -> str:
    """``info.version`` of the upstream's OpenAPI document."""
    answer = await upstream.call("GET", OPENAPI)
    if answer.status != 200:
        raise UpstreamError(f"upstream answered {answer.status} for {OPENAPI}")
    try:
        version = orjson.loads(answer.body)["info"]["version"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise UpstreamError(f"no info.version in the upstream's {OPENAPI}") from exc
    if not isinstance(version, str):
        raise UpstreamError(f"no info.version in the upstream's {OPENAPI}")
    return version


class Rules(Protocol):
    """The fronted upstream's rules (``VersionWatch``, or ``FixedRules``)."""

    @property
    def current(self) -> Dialect: ...  # assumed ones until the version is known
    async def confirm(self) -> None: ...  # ask the upstream now, while they are assumed


class FixedRules:
    """Rules that are known and never change (an engine without a version watch)."""

    def __init__(self, dialect: Dialect = V0_14) -> None:
        self.current = dialect

    async def confirm(self) -> None:
        pass


class VersionWatch:
    """Learns the upstream's version and hands the matching Dialect to ``apply``."""

    def __init__(self, upstream: Upstream, apply: Callable[[Dialect], None] | None = None,
                 *, setting: str = AUTO, summarization: bool = True,
                 threshold: float = 0.7) -> None:
        self.upstream = upstream
        self.apply = apply  # told each version learned (the engine reads ``current``)
        self.setting = setting
        self.summarization = summarization
        self.threshold = threshold
        self.dialect: Dialect | None = None  # None: not known yet
        self._assumed = replace(self._configured(NEWEST)[0], confirmed=False)
        self._asking: asyncio.Task[bool] | None = None
        self._retry: asyncio.Task[None] | None = None

    @property
    def current(self) -> Dialect:
        """The rules to answer by now: the known version's, else the newest's, assumed."""
        return self.dialect if self.dialect is not None else self._assumed

    async def start(self, wait: float) -> Dialect:
        """Learn the version (waiting at most ``wait`` s for the upstream); returns the
        rules to answer by now, assumed ones when the upstream did not answer."""
        if self.setting != AUTO:
            return self._settle(self.setting)
        try:
            if await asyncio.wait_for(asyncio.shield(self._ask()), wait):
                assert self.dialect is not None
                return self.dialect
        except TimeoutError:
            pass
        log.warning("the upstream's version is not known yet (%s does not answer); "
                    "answering as agent-memory-server %s until it is", self.upstream.base,
                    self._assumed.version)
        self._retry = spawn(self._keep_asking(), name="upstream-version")
        return self._assumed

    async def confirm(self) -> None:
        """Ask now when the version is not known yet (requests asking at the same time
        share one call); no-op once it is."""
        if self.dialect is None:
            await asyncio.shield(self._ask())

    async def close(self) -> None:
        for task in (self._retry, self._asking):
            if task is not None:
                await cancel_and_wait(task)

    def _ask(self) -> asyncio.Task[bool]:
        if self._asking is None or self._asking.done():
            self._asking = spawn(self._ask_once(), name="upstream-version-ask")
        return self._asking

    async def _ask_once(self) -> bool:
        if self.dialect is not None:
            return True
        try:
            version = await reported_version(self.upstream)
        except HttpError as exc:  # unreachable, too slow, or no free connection
            log.debug("upstream version not learned: %s", exc.detail)
            return False
        dialect = self._settle(version)
        if self.apply is not None:
            self.apply(dialect)
        return True

    async def _keep_asking(self) -> None:
        delay = RETRY_FIRST
        while not await asyncio.shield(self._ask()):
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _settle(self, version: str) -> Dialect:
        dialect, warning = for_version(version)
        if warning:
            log.warning("%s", warning)
        self.dialect, warnings = self._configured(dialect)
        for text in warnings:
            log.warning("%s", text)
        log.info("answering as agent-memory-server %s (upstream reports %s)",
                 self.dialect.version, version)
        return self.dialect

    def _configured(self, dialect: Dialect) -> tuple[Dialect, list[str]]:
        return dialect.configured(self.summarization, self.threshold)

