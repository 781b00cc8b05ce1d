"""The command line as users run it: a real `agent-memory-proxy serve` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import orjson
import pytest
import redis

from proxy.localstack import Service, free_port


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b""
        try:
            with urllib.request.urlopen(url + "/-/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("proxy did not start")


@pytest.fixture
def serve(upstream: Service, proxy_redis: Service) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    redis.Redis.from_url(proxy_redis.url).flushdb()
    port = free_port()
    env = {**os.environ, "AMP_ACK_MODE": "buffered", "AMP_UPSTREAM_URL": upstream.url,
           "AMP_REDIS_URL": proxy_redis.url, "AMP_LOG_LEVEL": "INFO", "AMP_WORKERS": "1",
           "AMP_DRAIN_SECONDS": "0", "AMP_LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_ready(url, proc)
    yield url, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _put(url: str, sid: str, n: int) -> int:
    msgs = [{"role": "user", "content": f"m{i}", "id": f"i{i}",
             "created_at": "2024-01-01T00:00:00Z"} for i in range(n)]
    req = urllib.request.Request(f"{url}/v1/working-memory/{sid}", method="PUT",
                                 data=orjson.dumps({"messages": msgs}),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


def test_sigterm_flushes_buffered_writes(serve: tuple[str, subprocess.Popen[bytes]],
                                         proxy_redis: Service) -> None:
    url, proc = serve
    # Hold Redis writes so the acknowledged PUTs are still queued when SIGTERM arrives.
    redis.Redis.from_url(proxy_redis.url).execute_command("CLIENT", "PAUSE", "1500", "WRITE")
    for i in range(20):
        assert _put(url, f"term-{i}", 5 + i) == 200
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    lines = [orjson.loads(line) for line in out.decode().splitlines()]
    messages = [line["message"] for line in lines]
    assert any("flusher stopped" in m and "0 not written" in m for m in messages), messages
    r = redis.Redis.from_url(proxy_redis.url)
    sessions = r.zrange("amp:index", 0, -1)
    assert len(sessions) == 20
    counts = sorted(int(r.hget(k, "n") or 0) for k in r.keys("amp:*:meta"))
    assert counts == list(range(5, 25))


def test_serve_refuses_bad_setting() -> None:
    env = {**os.environ, "AMP_QUEUE_MAX": "-3"}
    out = subprocess.run([sys.executable, "-m", "proxy", "serve"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "queue_max" in out.stderr


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_json_logs_one_object_per_line_with_request_ids(
        serve: tuple[str, subprocess.Popen[bytes]]) -> None:
    url, proc = serve
    assert _put(url, "logged", 3) == 200
    status, headers, _ = _get(url + "/v1/working-memory/logged", {"X-Request-ID": "given-id-1"})
    assert status == 200 and headers["X-Request-ID"] == "given-id-1"
    status, headers, _ = _get(url + "/v1/working-memory/absent-session")
    generated = headers["X-Request-ID"]
    assert status == 404 and generated and generated != "given-id-1"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = [orjson.loads(line) for line in out.decode().splitlines()]  # every line is JSON
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    access = {line.get("request_id"): line for line in lines if line["logger"] == "proxy.access"}
    given = access["given-id-1"]
    assert given["route"] == "/v1/working-memory/{session_id}"
    assert given["status"] == 200 and given["duration_ms"] > 0 and given["level"] == "INFO"
    assert given["time"].endswith("Z")
    assert access[generated]["status"] == 404


def test_sigint_skips_the_drain(upstream: Service, proxy_redis: Service) -> None:
    port = free_port()
    env = {**os.environ, "AMP_UPSTREAM_URL": upstream.url, "AMP_REDIS_URL": proxy_redis.url,
           "AMP_WORKERS": "1", "AMP_DRAIN_SECONDS": "30"}
    proc = subprocess.Popen([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_in_use_fails_with_one_line(upstream: Service, proxy_redis: Service) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "AMP_UPSTREAM_URL": upstream.url,
               "AMP_REDIS_URL": proxy_redis.url, "AMP_WORKERS": "1"}
        out = subprocess.run([sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                             env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr
