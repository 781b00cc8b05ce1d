"""Start and stop the local stack's processes: Redis servers and the real upstream.

Every process listens on 127.0.0.1, runs in its own process group (so stopping it
also stops anything it spawned) and is stopped by ``ProcessGroup.stop``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.localstack.install import Stack, ensure_stack

log = logging.getLogger("proxy.localstack")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: each is held until all are chosen, since a port just
    released may be handed out again by the next ``bind(0)``."""
    with ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def tail_log(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


@dataclass
class ProcessGroup:
    """Owns the processes it starts; stops them newest first."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="amp-stack-")))
    services: list[Service] = field(default_factory=list)

    def start(
        self,
        name: str,
        cmd: list[str],
        url: str,
        ready: Callable[[], bool],
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Service:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, cwd=self.workdir, start_new_session=True,
            )
        service = Service(name, url, proc, log_path)
        self.services.append(service)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}):\n{service.tail_log()}")
            if ready():
                log.info("%s ready at %s", name, url)
                return service
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s:\n{service.tail_log()}")

    def stop(self, service: Service | None = None, timeout: float = 10.0) -> None:
        targets = [service] if service else list(reversed(self.services))
        for svc in targets:
            if svc.process.poll() is None:
                try:
                    os.killpg(svc.process.pid, signal.SIGTERM)
                    svc.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(svc.process.pid, signal.SIGKILL)
                    svc.process.wait()
                except ProcessLookupError:
                    pass
            if svc in self.services:
                self.services.remove(svc)


def _tcp_answers(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    return check


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return check


def start_redis(group: ProcessGroup, stack: Stack, name: str = "redis",
                port: int | None = None, modules: bool = True) -> Service:
    """A throwaway Redis (no persistence) from the Redis Stack binary."""
    port = port or free_port()
    cmd = [str(stack.redis_server), "--port", str(port), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no", "--dir", str(group.workdir)]
    if modules:
        for module in stack.redis_modules:
            cmd += ["--loadmodule", str(module)]
    env = {"LD_LIBRARY_PATH": str(stack.ssl_dir)}
    return group.start(name, cmd, f"redis://127.0.0.1:{port}", _tcp_answers(port), env)


def upstream_env(stack: Stack, redis_url: str,
                 extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The upstream's settings: auth and long-term memory off unless ``extra_env`` (e.g.
    ``DISABLE_AUTH=false AUTH_MODE=token``, ``LONG_TERM_MEMORY=true OPENAI_API_BASE=...``)
    says otherwise."""
    return {
        "REDIS_URL": redis_url,
        "TIKTOKEN_CACHE_DIR": str(stack.tiktoken_cache),
        "LONG_TERM_MEMORY": "false",
        "DISABLE_AUTH": "true",
        "OPENAI_API_KEY": "sk-unused",
        "LOG_LEVEL": "WARNING",
        # LiteLLM fetches a model price list from the internet at import without this.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        **(extra_env or {}),
    }


def start_upstream(group: ProcessGroup, stack: Stack, redis_url: str,
                   port: int | None = None, name: str = "upstream",
                   version: str | None = None,
                   extra_env: Mapping[str, str] | None = None) -> Service:
    """The real agent-memory-server, answering once /v1/health does (~5 s).

    ``version`` picks another installed upstream than ``stack``'s (installing it first if
    needed); ``extra_env`` is added to its environment."""
    if version and version != stack.version:
        stack = ensure_stack(stack.root, version=version)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [*stack.cli, "api", "--host", "127.0.0.1", "--port", str(port),
           "--task-backend", "asyncio"]
    return group.start(name, cmd, url, http_ok(url + "/v1/health"),
                       upstream_env(stack, redis_url, extra_env), timeout=90)


def run_upstream_cli(stack: Stack, redis_url: str, *args: str,
                     extra_env: Mapping[str, str] | None = None,
                     timeout: float = 60.0) -> str:
    """Run the upstream's ``agent-memory <args>`` against ``redis_url``; its stdout.
    Raises ``RuntimeError`` with the output when it exits non-zero."""
    result = subprocess.run(
        [*stack.cli, *args], capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **upstream_env(stack, redis_url, extra_env)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"agent-memory {' '.join(args)} exited {result.returncode}:\n"
                           f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


def add_token(stack: Stack, redis_url: str, description: str = "test",
              expires_days: int | None = None, token: str | None = None) -> dict[str, Any]:
    """``agent-memory token add --format json``: a bearer token the upstream accepts in
    ``AUTH_MODE=token``. Returns ``{"token", "description", "created_at", "expires_at",
    "hash"}`` (the same keys in 0.14.0 and 0.15.2)."""
    args = ["token", "add", "--description", description, "--format", "json"]
    if expires_days is not None:
        args += ["--expires-days", str(expires_days)]
    if token is not None:
        args += ["--token", token]
    out = run_upstream_cli(stack, redis_url, *args)
    # The JSON document is the last line; anything before it is log output.
    last = out.strip().splitlines()[-1]
    data: dict[str, Any] = json.loads(last)
    return data


def reported_version(url: str) -> str:
    """The version a running upstream reports: ``info.version`` of its OpenAPI document."""
    with urllib.request.urlopen(url + "/openapi.json", timeout=5) as resp:
        return str(json.load(resp)["info"]["version"])
