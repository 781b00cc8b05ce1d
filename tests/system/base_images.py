"""Stand-in base images for machines that reach no image registry.

The Dockerfiles start ``FROM python:3.11-slim``, ``python:3.12-slim`` (the upstream needs 3.12)
and ``debian:bookworm-slim``. Where a registry is reachable those are the official images and
nothing here runs (pull them first: an image present locally is never rebuilt). Where none is,
each missing one is made under the same name and with the same layout: a Debian bookworm
minbase root file system from mmdebstrap (the machine's apt sources), and for the Python
images a relocatable CPython (pyenv's) copied to /usr/local with pip, as the official images
have it. So the same Dockerfiles build here and elsewhere.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.system.docker_engine import Engine, EngineUnavailable

DEBIAN_IMAGE = "debian:bookworm-slim"
PYTHON_IMAGES = {"python:3.11-slim": "3.11", "python:3.12-slim": "3.12"}
# What the official slim images carry, and the shared libraries CPython's modules link.
ROOTFS_PACKAGES = ("ca-certificates", "netbase", "tzdata", "libffi8", "libsqlite3-0", "libssl3",
                   "libncursesw6", "libreadline8", "libuuid1", "libnsl2", "libbz2-1.0",
                   "liblzma5", "zlib1g")
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*",
                 "/usr/share/locale/*", "/usr/share/lintian/*")
# Parts of a CPython prefix a server image does not need (its test suite alone is 130 MB).
PREFIX_EXCLUDES = ("test", "idlelib", "tkinter", "turtledemo", "site-packages", "*.a")
PATH_ENV = "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


def ensure_base_images(engine: Engine) -> list[str]:
    """Make a stand-in for each missing base image; returns the names it made."""
    missing = [name for name in (DEBIAN_IMAGE, *PYTHON_IMAGES) if not has_image(engine, name)]
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        raise EngineUnavailable(f"base images {', '.join(missing)} are missing and no registry "
                                "is used; making stand-ins needs root and mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="amp-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _debootstrap(rootfs)
        for name in missing:
            if name == DEBIAN_IMAGE:
                _import(engine, rootfs, name, ['CMD ["bash"]'])
                continue
            version = PYTHON_IMAGES[name]
            stage = Path(tmp) / f"python{version}"
            # cp -a, not shutil.copytree: the tree holds device nodes (copytree would read
            # /dev/zero as a file, forever).
            subprocess.run(["cp", "-a", str(rootfs), str(stage)], check=True, timeout=300)
            _add_python(stage, find_prefix(version), version)
            _import(engine, stage, name, [f"ENV PYTHON_VERSION={version}", "ENV LANG=C.UTF-8",
                                          'CMD ["python3"]'])
            shutil.rmtree(stage)
    return missing


def has_image(engine: Engine, name: str) -> bool:
    return engine.run("image", "inspect", name, check=False).returncode == 0


def find_prefix(version: str) -> Path:
    """A relocatable CPython ``version`` install prefix: pyenv's newest patch release."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin",
                                          f"python{version}")),
                   key=lambda p: [int(x) for x in Path(p).parts[-3].split(".") if x.isdigit()])
    if not found:
        raise EngineUnavailable(f"python:{version}-slim is missing and no pyenv CPython "
                                f"{version} was found to make a stand-in from")
    return Path(found[-1]).parent.parent


def _debootstrap(rootfs: Path) -> None:
    # The merged-usr hook does what the usrmerge package would, without its Perl (50 MB).
    cmd = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(ROOTFS_PACKAGES),
           "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
           *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES), "bookworm", str(rootfs)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
        raise EngineUnavailable(f"mmdebstrap failed: {lines[-1]}")


def _add_python(stage: Path, prefix: Path, version: str) -> None:
    local = stage / "usr" / "local"
    shutil.copytree(prefix, local, symlinks=True, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(*PREFIX_EXCLUDES))
    (local / "lib" / f"python{version}" / "site-packages").mkdir()
    # Only the interpreter: scripts of packages installed in that prefix stay behind, and
    # ensurepip writes pip's with this prefix in their shebangs.
    for path in (local / "bin").iterdir():
        if path.name.startswith("python"):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    # pyenv does not strip its builds: debug symbols are most of libpython's 30 MB.
    if shutil.which("strip"):
        libs = [str(p) for p in local.rglob("*.so*") if p.is_file() and not p.is_symlink()]
        subprocess.run(["strip", "--strip-unneeded", *libs], capture_output=True, check=False)
    # libpython's run path names the old prefix; the loader cache finds it in /usr/local/lib.
    _chroot(stage, "ldconfig")
    _chroot(stage, f"/usr/local/bin/python{version}", "-m", "ensurepip", "--default-pip")


def _chroot(stage: Path, *cmd: str) -> None:
    result = subprocess.run(["chroot", str(stage), *cmd], capture_output=True, text=True,
                            timeout=300, check=False, env={"PATH": PATH_ENV[5:]})
    if result.returncode != 0:
        raise EngineUnavailable(f"{' '.join(cmd)} in the stand-in image failed: "
                                + (result.stderr.strip().splitlines() or ["?"])[-1])


def _import(engine: Engine, tree: Path, name: str, changes: list[str]) -> None:
    args = [engine.docker, "import"]
    for change in (f"ENV {PATH_ENV}", *changes):
        args += ["--change", change]
    tar = subprocess.Popen(["tar", "-C", str(tree), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    result = subprocess.run([*args, "-", name], stdin=tar.stdout, capture_output=True,
                            text=True, env=engine.env, timeout=300, check=False)
    assert tar.stdout is not None
    tar.stdout.close()
    if tar.wait() != 0 or result.returncode != 0:
        raise EngineUnavailable(f"docker import of {name} failed: {result.stderr.strip()}")
