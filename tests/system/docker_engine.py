"""A Docker engine for the system tests: the one that answers, or one installed and started here.

When ``docker info`` answers, that engine is used and left as it was. Otherwise (as root) the
Debian packages docker.io, docker-compose and mmdebstrap are installed when missing, and
dockerd is started without NAT or a default bridge (``--bridge=none --iptables=false``):
Compose's own networks and ports published on 127.0.0.1 still work, and nothing needs the
outside network. ``Engine.stop`` stops a daemon started here, so none is left running.

Whatever cannot be done raises ``EngineUnavailable`` with one line saying what.

    python -m tests.system.docker_engine     # one by hand, ready to build (Ctrl-C stops it)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

APT_PACKAGES = ("docker.io", "docker-compose", "mmdebstrap")
DOCKERD_ARGS = ("--bridge=none", "--iptables=false", "--ip6tables=false")
PIDFILE = Path("/var/run/docker.pid")
# The classic builder: a Docker CLI without buildx has only it, and it needs no frontend image
# from a registry. Compose v1 builds through the CLI (its own context packing is ten times
# slower on the upstream's wheelhouse).
CLIENT_ENV = {"DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "1"}


class EngineUnavailable(RuntimeError):
    """No Docker engine can be had on this machine; the message is one line."""


@dataclass
class Engine:
    """A reachable Docker engine and the commands to drive it."""

    docker: str
    compose: tuple[str, ...]
    daemon: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=lambda: {**os.environ, **CLIENT_ENV})

    def run(self, *args: str, timeout: float = 300, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _run([self.docker, *args], timeout, check, {**self.env, **(env or {})})

    def compose_run(self, project: str, *args: str, timeout: float = 600, check: bool = True,
                    env: dict[str, str] | None = None, cwd: Path | None = None
                    ) -> subprocess.CompletedProcess[str]:
        cmd = [*self.compose, "--project-name", project, *args]
        return _run(cmd, timeout, check, {**self.env, **(env or {})}, cwd)

    def stop(self) -> None:
        """Stop the daemon if it was started here (containers it ran stop with it)."""
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        if self.log_path is not None:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def log_tail(self, limit: int = 2000) -> str:
        if self.log_path is None:
            return ""
        return self.log_path.read_text(errors="replace")[-limit:]


def _run(cmd: list[str], timeout: float, check: bool, env: dict[str, str],
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                            cwd=cwd, stdin=subprocess.DEVNULL, check=False)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, cmd, result.stdout,
                                            result.stderr[-4000:])
    return result


def start_engine() -> Engine:
    """An engine that answers: the running one, or one installed and started here."""
    if shutil.which("docker") and _answers(shutil.which("docker") or "docker"):
        return Engine(shutil.which("docker") or "docker", _compose_command())
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker engine answers and installing one needs root "
                                "(start dockerd, or run the tests as root)")
    if not (shutil.which("dockerd") and shutil.which("docker")
            and _compose_command(required=False) and shutil.which("mmdebstrap")):
        _apt_install(APT_PACKAGES)
    docker = shutil.which("docker")
    dockerd = shutil.which("dockerd")
    if docker is None or dockerd is None:
        raise EngineUnavailable("docker.io installed but docker/dockerd are not on PATH")
    _clear_stale_pidfile()
    log_path = Path(tempfile.mkdtemp(prefix="amp-dockerd-")) / "dockerd.log"
    with open(log_path, "wb") as out:
        daemon = subprocess.Popen([dockerd, *DOCKERD_ARGS], stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    engine = Engine(docker, _compose_command(), daemon, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            reason = f"dockerd exited ({daemon.returncode}): {_last_line(engine.log_tail())}"
            engine.stop()
            raise EngineUnavailable(reason)
        if _answers(docker):
            return engine
        time.sleep(0.2)
    reason = f"dockerd did not answer within 30 s: {_last_line(engine.log_tail())}"
    engine.stop()
    raise EngineUnavailable(reason)


def _answers(docker: str) -> bool:
    try:
        result = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                                capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def _compose_command(required: bool = True) -> tuple[str, ...]:
    """Compose v2 (the docker CLI plugin) when present, else v1's docker-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 check=False).returncode == 0:
        return (docker, "compose")
    if found := shutil.which("docker-compose"):
        return (found,)
    if required:
        raise EngineUnavailable("neither `docker compose` nor docker-compose is installed")
    return ()


def _apt_install(packages: tuple[str, ...]) -> None:
    if shutil.which("apt-get") is None:
        raise EngineUnavailable("no Docker engine answers and apt-get is missing to install one")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                                stdin=subprocess.DEVNULL, check=False)
        if result.returncode != 0:
            raise EngineUnavailable(f"`{' '.join(cmd)}` failed: "
                                    + _last_line(result.stderr or result.stdout))


def _clear_stale_pidfile() -> None:
    """dockerd refuses to start over the pid file of one that died without cleaning up."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        PIDFILE.unlink(missing_ok=True)
        return
    raise EngineUnavailable(f"a dockerd (pid {pid}) runs but does not answer on its socket")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def main() -> None:
    """Start an engine and prepare what the image builds need here (stand-in base images,
    wheelhouses), then wait: `docker compose up --build` works from another shell."""
    from tests.system.wheelhouses import prepare_builds

    engine = start_engine()
    try:
        made = prepare_builds(engine)
    except BaseException:
        engine.stop()
        raise
    print(f"docker engine ready ({'started here' if engine.daemon else 'already running'}"
          f"{'; stand-ins made for ' + ', '.join(made) if made else ''}); set "
          f"DOCKER_BUILDKIT=0 for builds without buildx. Ctrl-C stops it.", file=sys.stderr)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        engine.stop()


if __name__ == "__main__":
    main()
