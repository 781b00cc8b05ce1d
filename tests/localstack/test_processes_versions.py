"""The local stack runs either upstream version, with extra environment, and drives the
upstream's CLI. The first run installs 0.15.2 into the cache (about a minute, once)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.localstack import (
    ProcessGroup,
    Service,
    Stack,
    add_token,
    reported_version,
    start_redis,
    start_upstream,
    upstream_version,
)

pytestmark = pytest.mark.timeout(600)  # covers the one-time install of 0.15.2


@pytest.fixture(scope="module")
def redis_0152(stack: Stack, processes: ProcessGroup) -> Iterator[Service]:
    service = start_redis(processes, stack, "redis-0.15.2")
    yield service
    processes.stop(service)


@pytest.fixture(scope="module")
def token_upstream_0152(stack: Stack, processes: ProcessGroup,
                        redis_0152: Service) -> Iterator[Service]:
    """0.15.2 with token authentication switched on through extra environment."""
    service = start_upstream(processes, stack, redis_0152.url, name="upstream-0.15.2",
                             version="0.15.2",
                             extra_env={"DISABLE_AUTH": "false", "AUTH_MODE": "token"})
    yield service
    processes.stop(service)


def call(url: str, method: str = "GET", body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


def test_the_default_upstream_is_the_version_the_environment_names(upstream: Service) -> None:
    assert reported_version(upstream.url) == upstream_version(os.environ)


def test_0152_runs_with_extra_environment_and_accepts_a_cli_token(
    stack: Stack, token_upstream_0152: Service, redis_0152: Service,
) -> None:
    url = token_upstream_0152.url
    assert reported_version(url) == "0.15.2"  # the OpenAPI document stays open under auth
    status, headers, body = call(url + "/v1/working-memory/s1")
    assert (status, body) == (401, {"detail": "Missing authorization header"})
    assert headers["www-authenticate"] == "Bearer"

    token = add_token(stack.with_version("0.15.2"), redis_0152.url, description="versions")
    assert token["description"] == "versions" and token["expires_at"] is None
    assert token["hash"].startswith("$2b$")
    auth = {"Authorization": f"Bearer {token['token']}"}
    put = {"messages": [{"role": "user", "content": "hi", "created_at": "2024-01-01T00:00:00Z"}],
           "namespace": "ns", "user_id": "u"}
    assert call(url + "/v1/working-memory/s1", "PUT", put, auth)[0] == 200
    # 0.15.2 finds a scoped session without its scope, through the search index.
    status, _, body = call(url + "/v1/working-memory/S1", headers=auth)
    assert status == 200
    assert (body["session_id"], body["namespace"], body["user_id"]) == ("S1", "ns", "u")

