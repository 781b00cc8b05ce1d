"""The differential suites against every other supported upstream version.

The session fixtures run agent-memory-server ``$AMP_UPSTREAM_VERSION`` (the local stack's
default when unset). This module collects the tests of test_parity, test_parity_fuzz,
test_client and test_versions once more, with ``upstream`` and ``upstream_redis``
replaced by each other supported version (own Redis, started for this module). Each
proxy runs with default settings and learns the version from its upstream; what differs
between versions is asserted through the ``dialect`` fixture. The first run installs the
other version into the cache (``make stack`` does that up front).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from _pytest.fixtures import FixtureFunctionDefinition, FixtureRequest

from proxy.localstack import (
    SUPPORTED_VERSIONS,
    ProcessGroup,
    Service,
    Stack,
    start_redis,
    start_upstream,
    upstream_version,
)
from tests.system import test_client, test_parity, test_parity_fuzz, test_versions

OTHERS = [v for v in SUPPORTED_VERSIONS if v != upstream_version(os.environ)]
SUITES: tuple[ModuleType, ...] = (test_parity, test_parity_fuzz, test_client, test_versions)

pytestmark = [pytest.mark.v015, pytest.mark.timeout(600)]  # a first run installs it

# The suites' tests, and the module fixtures they use (pytest collects both from here).
for _suite in SUITES:
    for _name, _value in vars(_suite).items():
        if _name.startswith("test_") or isinstance(_value, FixtureFunctionDefinition):
            globals()[_name] = _value


@pytest.fixture(scope="module", params=OTHERS)
def other_version(request: FixtureRequest) -> str:
    version: str = request.param
    return version


@pytest.fixture(scope="module")
def upstream_redis(stack: Stack, processes: ProcessGroup, other_version: str
                   ) -> Iterator[Service]:
    service = start_redis(processes, stack, f"upstream-redis-{other_version}")
    yield service
    processes.stop(service)


@pytest.fixture(scope="module")
def upstream(stack: Stack, processes: ProcessGroup, upstream_redis: Service,
             other_version: str) -> Iterator[Service]:
    service = start_upstream(processes, stack, upstream_redis.url,
                             name=f"upstream-{other_version}", version=other_version)
    yield service
    processes.stop(service)
