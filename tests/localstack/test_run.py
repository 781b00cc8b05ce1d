"""``agent-memory-proxy up`` (``make run``): the whole local stack from one command, run
for real and stopped with Ctrl-C (SIGINT), which must take every process down with it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from typing import IO

import pytest

from proxy.localstack import RUN_VERSION, Stack, free_port, run_version

pytestmark = pytest.mark.timeout(180)


def read_until(stream: IO[str], last: str, limit: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(last):
            return lines
    raise AssertionError(f"no {last!r} line; got {lines}")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(resp.status), bytes(resp.read())


def refused(url: str) -> bool:
    try:
        get(url)
    except OSError:
        return True
    return False


def test_up_runs_the_newest_version_unless_the_environment_names_one() -> None:
    assert run_version({}) == RUN_VERSION == "0.15.2"
    assert run_version({"AMP_UPSTREAM_VERSION": "0.14.0"}) == "0.14.0"


def test_up_runs_the_stack_until_ctrl_c(stack: Stack) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "up", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "AMP_LOG_LEVEL": "WARNING", "AMP_WORKERS": "1"})
    try:
        assert proc.stdout is not None
        lines = read_until(proc.stdout, "Ctrl-C stops everything.", 150)
        text = "\n".join(lines)
        version = run_version(os.environ)
        found = re.search(rf"upstream agent-memory-server {re.escape(version)}: (\S+)", text)
        assert found, text
        upstream = found.group(1)
        proxy = f"http://127.0.0.1:{port}"
        assert f"agent-memory-proxy:           {proxy}" in text
        deadline = time.monotonic() + 30
        while refused(proxy + "/-/healthz") and time.monotonic() < deadline:
            time.sleep(0.2)
        status, body = get(proxy + "/openapi.json")  # passed through to the upstream
        assert status == 200 and json.loads(body)["info"]["version"] == version
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert refused(proxy + "/-/healthz") and refused(upstream + "/v1/health")
    finally:
        if proc.poll() is None:  # a failed check: Ctrl-C still stops the whole stack
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
