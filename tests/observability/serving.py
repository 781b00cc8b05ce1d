"""A real ``agent-memory-proxy serve`` process for tests (output to a file, so a chatty
access log never blocks it on a full pipe)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proxy.localstack import Service, free_port


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_ready(served: Served, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise AssertionError(f"proxy exited ({served.proc.returncode}): "
                                 f"{served.log()[-3000:]}")
        try:
            with urllib.request.urlopen(served.url + "/-/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"proxy did not become ready: {served.log()[-3000:]}")


@contextmanager
def serve_process(upstream: Service, redis: Service, **settings: object) -> Iterator[Served]:
    """``serve`` on a free port with ``AMP_<KEY>`` settings; killed if still running after."""
    port = free_port()
    env = {**os.environ, "AMP_UPSTREAM_URL": upstream.url, "AMP_REDIS_URL": redis.url,
           **{f"AMP_{k.upper()}": str(v) for k, v in settings.items()}}
    with tempfile.TemporaryDirectory(prefix="amp-serve-") as tmp:
        log_path = Path(tmp) / "proxy.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve", "--port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        served = Served(f"http://127.0.0.1:{port}", proc, log_path)
        try:
            wait_ready(served)
            yield served
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
