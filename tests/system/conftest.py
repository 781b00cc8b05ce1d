"""Fixtures for the tests that build and run the images on a real Docker engine.

The engine is the one that answers, or one installed and started for this session and
stopped after it (see docker_engine). Base images and wheelhouses are cached between runs,
so only the first run on a machine pays for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from proxy.localstack import ProcessGroup, Stack
from tests.differential import Sides
from tests.sync.stack import LtmStack, ltm_stack
from tests.system.docker_engine import Engine, EngineUnavailable, start_engine
from tests.system.wheelhouses import REPO, prepare_builds

# Figures worth reading after a run (build times, image size), printed in the summary.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("containers")
        for line in FIGURES:
            terminalreporter.write_line(line)


def figure(line: str) -> None:
    FIGURES.append(line)


@pytest.fixture(scope="session")
def docker() -> Iterator[Engine]:
    started = time.monotonic()
    try:
        engine = start_engine()
    except EngineUnavailable as exc:
        pytest.fail(f"no Docker engine: {exc}", pytrace=False)
    try:
        made = prepare_builds(engine)
    except EngineUnavailable as exc:
        engine.stop()
        pytest.fail(f"cannot prepare image builds: {exc}", pytrace=False)
    figure(f"engine ready in {time.monotonic() - started:.1f} s: "
           + ("started here" if engine.daemon else "already running")
           + (f"; stand-ins made for {', '.join(made)}" if made else ""))
    try:
        yield engine
    finally:
        engine.stop()


def build(engine: Engine, tag: str, context: Path = REPO, dockerfile: Path | None = None
          ) -> float:
    """``docker build``; returns its duration in seconds."""
    started = time.monotonic()
    args = ["build", "--quiet", "--force-rm", "--tag", tag]
    if dockerfile is not None:
        args += ["--file", str(dockerfile)]
    engine.run(*args, str(context), timeout=900)
    return time.monotonic() - started


def image_size(engine: Engine, name: str) -> int:
    return int(engine.run("image", "inspect", "--format", "{{.Size}}", name).stdout)


# The upstream with long-term memory on and its model server, shared by the sync suites.
@pytest.fixture(scope="session")
def ltm(stack: Stack, processes: ProcessGroup) -> LtmStack:
    return ltm_stack(stack, processes)


@pytest.fixture
def group() -> Iterator[ProcessGroup]:
    g = ProcessGroup()
    yield g
    g.stop()


@pytest.fixture
def sides(direct: aiohttp.ClientSession, proxy: TestClient[Any, Any],
          redis_client: aioredis.Redis) -> Sides:
    """The upstream and a proxy in front of it, on an emptied proxy Redis (the
    differential suites)."""
    return Sides(direct, proxy)
