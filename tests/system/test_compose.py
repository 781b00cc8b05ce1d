"""compose.yaml brought up for real: Redis Stack, the real upstream, the proxy's Redis and the
proxy (the default profile), then the sidecar profile; a smoke test goes through the proxy.
The stack runs under a project name of its own, on free ports of 127.0.0.1, and is always
taken down with its volumes.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from proxy.localstack import free_port
from tests.system.conftest import figure
from tests.system.docker_engine import Engine
from tests.system.probes import get, request, wait_until
from tests.system.wheelhouses import REPO

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

SERVICES = ("redis-stack", "upstream", "proxy-redis", "proxy")
SIDECAR_SERVICES = ("app", "sidecar")
PORTS = ("AMP_PROXY_PORT", "AMP_UPSTREAM_PORT", "AMP_APP_PORT", "AMP_SIDECAR_PORT")
DRAIN_SECONDS = 1


@dataclass
class Stack:
    docker: Engine
    project: str
    env: dict[str, str]

    def compose(self, *args: str, check: bool = True) -> str:
        result = self.docker.compose_run(self.project, "--file", str(REPO / "compose.yaml"),
                                         *args, env=self.env, cwd=REPO, check=check)
        return result.stdout

    def url(self, port_variable: str) -> str:
        return f"http://127.0.0.1:{self.env[port_variable]}"

    def container(self, service: str) -> dict[str, Any]:
        cid = self.compose("--profile", "sidecar", "ps", "--quiet", service).strip()
        assert cid, f"no container for {service}"
        found: dict[str, Any] = json.loads(self.docker.run("inspect", cid).stdout)[0]
        return found

    def health(self, service: str) -> str:
        state = self.container(service)["State"]
        return str(state.get("Health", {}).get("Status", state["Status"]))

    def wait_healthy(self, services: tuple[str, ...], timeout: float) -> float:
        return wait_until(lambda: all(self.health(s) == "healthy" for s in services), timeout,
                          lambda: f"{ {s: self.health(s) for s in services} }\n{self.logs()}")

    def logs(self, *services: str) -> str:
        return self.compose("--profile", "sidecar", "logs", "--no-color", "--tail", "30",
                            *services, check=False)[-4000:]


@pytest.fixture(scope="module")
def stack(docker: Engine) -> Iterator[Stack]:
    env = {name: str(free_port()) for name in PORTS}
    env["AMP_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
    running = Stack(docker, f"amptest{os.getpid()}{uuid.uuid4().hex[:6]}", env)
    try:
        started = time.monotonic()
        running.compose("build")
        built = time.monotonic() - started
        running.compose("up", "--detach")
        healthy = running.wait_healthy(SERVICES, 180)
        figure(f"compose: build {built:.1f} s, up until all healthy "
               f"{time.monotonic() - started - built:.1f} s (last wait {healthy:.1f} s)")
        yield running
    finally:
        started = time.monotonic()
        running.compose("--profile", "sidecar", "down", "--volumes", "--remove-orphans",
                        "--timeout", "30", check=False)
        figure(f"compose: down -v in {time.monotonic() - started:.1f} s")


def test_working_memory_round_trip_through_the_proxy(stack: Stack) -> None:
    proxy = stack.url("AMP_PROXY_PORT")
    assert get(proxy + "/-/readyz")[0] == 200
    session = f"compose-{uuid.uuid4().hex[:8]}"
    turns = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    status, put = request("PUT", f"{proxy}/v1/working-memory/{session}", {"messages": turns})
    assert status == 200, put
    status, got = get(f"{proxy}/v1/working-memory/{session}?recent_messages_limit=1")
    assert status == 200, got
    assert [m["content"] for m in got["messages"]] == ["hi"]
    status, listed = get(f"{proxy}/v1/working-memory/")
    assert status == 200 and session in listed["sessions"]


def test_other_routes_pass_through_to_the_upstream(stack: Stack) -> None:
    proxy, upstream = stack.url("AMP_PROXY_PORT"), stack.url("AMP_UPSTREAM_PORT")
    status, health = get(proxy + "/v1/health")
    assert status == 200 and "now" in health
    status, spec = get(proxy + "/openapi.json")
    assert status == 200
    assert spec == get(upstream + "/openapi.json")[1]
    assert "/v1/working-memory/{session_id}" in spec["paths"]


def test_metrics_are_scraped_in_prometheus_text(stack: Stack) -> None:
    proxy = stack.url("AMP_PROXY_PORT")
    assert get(proxy + "/v1/working-memory/")[0] == 200
    status, text = get(proxy + "/-/metrics")
    assert status == 200, text
    assert isinstance(text, str) and "# TYPE amp_http_requests_total counter" in text
    samples = [line for line in text.splitlines()
               if line.startswith("amp_http_requests_total{") and 'method="GET"' in line]
    assert samples and any(float(line.rsplit(" ", 1)[1]) >= 1 for line in samples)


def test_proxy_logs_one_json_object_per_line(stack: Stack) -> None:
    get(stack.url("AMP_PROXY_PORT") + "/-/healthz")
    cid = stack.container("proxy")["Id"]
    result = stack.docker.run("logs", cid)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    access = [r for r in records if r.get("route") == "/-/healthz"]
    assert access and {"time", "level", "logger", "message", "request_id", "status",
                       "duration_ms"} <= set(access[-1])


def test_sidecar_profile_shares_the_app_network_namespace(stack: Stack) -> None:
    stack.compose("--profile", "sidecar", "up", "--detach")
    stack.wait_healthy(SIDECAR_SERVICES, 120)
    app_id = stack.container("app")["Id"]
    assert stack.container("sidecar")["HostConfig"]["NetworkMode"] == f"container:{app_id}"
    # The app reaches its proxy on 127.0.0.1:8090, as a pod's containers do.
    status, answer = get(stack.url("AMP_APP_PORT") + "/")
    assert status == 200, f"{answer}\n{stack.logs('app', 'sidecar')}"
    assert answer["messages"] == 1 and answer["memory_url"] == "http://127.0.0.1:8090"
    assert get(stack.url("AMP_SIDECAR_PORT") + "/-/readyz")[0] == 200


def test_proxy_stops_cleanly_within_its_drain_and_flush(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("stop", "--timeout", "30", "proxy")
    elapsed = time.monotonic() - started
    figure(f"compose: proxy stopped in {elapsed:.1f} s (AMP_DRAIN_SECONDS={DRAIN_SECONDS})")
    state = stack.container("proxy")["State"]
    assert state["ExitCode"] == 0, stack.logs("proxy")
    assert elapsed < DRAIN_SECONDS + 10
