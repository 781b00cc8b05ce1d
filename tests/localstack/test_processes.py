"""Processes of the local stack: started on free ports, ready when they answer, stopped
with everything they spawned; failures say what the process printed."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.localstack import (
    ProcessGroup,
    Service,
    Stack,
    free_port,
    reported_version,
    start_redis,
)
from proxy.localstack.processes import free_ports, http_ok, upstream_env


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    own = ProcessGroup(tmp_path)
    yield own
    own.stop()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_free_port_is_free_to_bind() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_redis_starts_answers_and_stops(group: ProcessGroup, stack: Stack) -> None:
    redis = start_redis(group, stack, "plain", modules=False)
    port = int(redis.url.rsplit(":", 1)[1])
    assert redis.url == f"redis://127.0.0.1:{port}" and not refused(port)
    modules = start_redis(group, stack, "with-modules")
    assert group.services == [redis, modules]
    group.stop(redis)
    assert redis.process.poll() is not None and refused(port)
    assert group.services == [modules]
    group.stop()
    assert modules.process.poll() is not None and group.services == []


def test_stop_takes_down_what_a_service_spawned(group: ProcessGroup) -> None:
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    log = group.workdir / "parent.log"
    service = group.start("parent", [sys.executable, "-c", script], "none",
                          lambda: log.exists() and log.read_text().strip() != "")
    child = int(service.tail_log())
    assert alive(child)
    group.stop(service)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_process_that_exits_says_why(group: ProcessGroup) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)early exited \(3\):.*no luck"):
        group.start("early", [sys.executable, "-c", "print('no luck'); raise SystemExit(3)"],
                    "none", lambda: False)


def test_a_process_that_never_answers_times_out(group: ProcessGroup) -> None:
    with pytest.raises(RuntimeError, match="silent not ready after 0s"):
        group.start("silent", [sys.executable, "-c", "import time; time.sleep(30)"], "none",
                    lambda: False, timeout=0.3)
    assert [s.name for s in group.services] == ["silent"]  # still stopped by the group


def test_upstream_environment_and_extra_settings(stack: Stack) -> None:
    env = upstream_env(stack, "redis://127.0.0.1:1")
    assert env["REDIS_URL"] == "redis://127.0.0.1:1" and env["DISABLE_AUTH"] == "true"
    assert env["LONG_TERM_MEMORY"] == "false"
    assert env["TIKTOKEN_CACHE_DIR"] == str(stack.tiktoken_cache)
    extra = upstream_env(stack, "redis://x:1", {"DISABLE_AUTH": "false", "AUTH_MODE": "token"})
    assert (extra["DISABLE_AUTH"], extra["AUTH_MODE"]) == ("false", "token")


def test_the_running_upstream_reports_its_version(upstream: Service, stack: Stack) -> None:
    assert http_ok(upstream.url + "/v1/health")()
    assert not http_ok(upstream.url + "/nope")()
    assert reported_version(upstream.url) == stack.version


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(40)  # as many as a cluster's nodes and bus ports, and more
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))  # released once chosen
