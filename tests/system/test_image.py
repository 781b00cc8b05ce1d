"""The production image, built and run for real in front of the real upstream and Redis.

The container shares the host's network (``--network host``) so it reaches the session's
upstream and Redis on 127.0.0.1; it listens on 127.0.0.1 too (``--host``), on a free port,
with a read-only root file system, as the Kubernetes manifests run it.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from proxy.localstack import Service, free_port
from tests.system.base_images import PYTHON_IMAGES
from tests.system.conftest import build, figure, image_size
from tests.system.docker_engine import Engine
from tests.system.probes import get, request, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TAG = "agent-memory-proxy:test"
BASE = next(iter(PYTHON_IMAGES))  # the Dockerfile's default PYTHON_IMAGE
DRAIN_SECONDS = 1


@pytest.fixture(scope="module")
def image(docker: Engine) -> str:
    seconds = build(docker, TAG)
    size, base = image_size(docker, TAG), image_size(docker, BASE)
    figure(f"proxy image: built in {seconds:.1f} s; {size / 1e6:.0f} MB "
           f"({(size - base) / 1e6:.0f} MB over {BASE})")
    return TAG


@dataclass
class Container:
    id: str
    url: str


@pytest.fixture
def container(docker: Engine, image: str, upstream: Service, proxy_redis: Service
              ) -> Iterator[Container]:
    port = free_port()
    cid = docker.run(
        "run", "--detach", "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--health-interval", "1s",
        "--env", f"AMP_UPSTREAM_URL={upstream.url}", "--env", f"AMP_REDIS_URL={proxy_redis.url}",
        "--env", f"AMP_PORT={port}", "--env", f"AMP_DRAIN_SECONDS={DRAIN_SECONDS}",
        image, "--host", "127.0.0.1",
    ).stdout.strip()
    running = Container(cid, f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: _started(docker, cid) and get(running.url + "/-/healthz")[0] == 200,
                   60, lambda: docker.run("logs", cid, check=False).stderr[-2000:])
        yield running
    finally:
        docker.run("rm", "--force", cid, check=False)


def test_image_is_small_runs_as_non_root_and_carries_its_init(docker: Engine, image: str) -> None:
    config = _inspect(docker, image)["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"][:3] == ["dumb-init", "--single-child", "--"]
    assert "/-/healthz" in " ".join(config["Healthcheck"]["Test"])
    probe = docker.run(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
        "id -u; test ! -e /wheels && test ! -e /src && echo no-build-leftovers; "
        "python -c 'import uvloop, proxy; print(\"uvloop\")'",
    ).stdout.split()
    assert probe == ["10001", "no-build-leftovers", "uvloop"]
    # The runtime stage adds the virtualenv only (about 40 MB of wheels unpacked).
    assert image_size(docker, image) - image_size(docker, BASE) < 120e6


def test_serves_working_memory_through_the_real_upstream(docker: Engine,
                                                         container: Container) -> None:
    assert get(container.url + "/-/readyz")[0] == 200
    session = f"image-{uuid.uuid4().hex[:8]}"
    body = {"messages": [{"role": "user", "content": "hello from a container"}]}
    status, _ = request("PUT", f"{container.url}/v1/working-memory/{session}", body)
    assert status == 200
    status, got = get(f"{container.url}/v1/working-memory/{session}")
    assert status == 200
    assert [m["content"] for m in got["messages"]] == ["hello from a container"]
    status, health = get(container.url + "/v1/health")  # passed through to the upstream
    assert status == 200 and "now" in health
    logs = docker.run("logs", container.id)
    assert "event loop: uvloop" in logs.stdout + logs.stderr


def test_healthcheck_turns_healthy(docker: Engine, container: Container) -> None:
    wait_until(lambda: _inspect(docker, container.id)["State"]["Health"]["Status"] == "healthy",
                20, lambda: json.dumps(_inspect(docker, container.id)["State"]["Health"]))


def test_sigterm_stops_it_cleanly_and_quickly(docker: Engine, container: Container) -> None:
    started = time.monotonic()
    docker.run("stop", "--time", "30", container.id)  # SIGTERM, then SIGKILL only after 30 s
    elapsed = time.monotonic() - started
    state = _inspect(docker, container.id)["State"]
    figure(f"proxy container: SIGTERM to exit in {elapsed:.1f} s "
           f"(AMP_DRAIN_SECONDS={DRAIN_SECONDS})")
    assert state["ExitCode"] == 0, docker.run("logs", container.id).stderr[-2000:]
    assert elapsed < DRAIN_SECONDS + 5


def _started(docker: Engine, cid: str) -> bool:
    """Every worker is listening (the first answers /-/healthz while others still start)."""
    result = docker.run("logs", cid, check=False)
    logs = result.stdout + result.stderr
    group = re.search(r"(\d+) workers on http", logs)
    return logs.count("listening on http") >= (int(group.group(1)) if group else 1)


def _inspect(docker: Engine, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(docker.run("inspect", name).stdout)[0]
    return result
