"""The install side of the local stack: choosing a version, reading a wheel's requirements,
and the bookkeeping that makes an interrupted install harmless. None of these install
anything; the real installs are exercised by tests/localstack/test_upstream_versions.py."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from proxy.localstack.install import (
    DEFAULT_VERSION,
    SUPPORTED_VERSIONS,
    VERSION_ENV,
    Stack,
    StackUnavailable,
    _fresh_dir,
    ensure_stack,
    upstream_version,
    wheel_requirements,
)


def test_version_comes_from_the_environment_else_the_default() -> None:
    assert upstream_version({}) == DEFAULT_VERSION == "0.14.0"
    assert upstream_version({VERSION_ENV: ""}) == DEFAULT_VERSION
    assert upstream_version({VERSION_ENV: "0.15.2"}) == "0.15.2"
    assert set(SUPPORTED_VERSIONS) == {"0.14.0", "0.15.2"}


def test_each_version_has_its_own_venv(tmp_path: Path) -> None:
    assert Stack(tmp_path).venv == tmp_path / "upstream-0.14.0"
    newer = Stack(tmp_path).with_version("0.15.2")
    assert newer.venv == tmp_path / "upstream-0.15.2"
    assert newer.cli[1:] == ["-m", "agent_memory_server.cli"]
    # Redis and the tokenizer cache are shared between versions.
    assert newer.ssl_dir == Stack(tmp_path).ssl_dir
    assert newer.tiktoken_cache == Stack(tmp_path).tiktoken_cache


def test_an_unknown_version_is_refused_naming_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(StackUnavailable, match=r"0\.9\.9 .*supported: 0\.14\.0, 0\.15\.2"):
        ensure_stack(tmp_path, version="0.9.9")
    assert not any(tmp_path.iterdir())


def _wheel(tmp_path: Path, requires: list[str]) -> Path:
    path = tmp_path / "agent_memory_server-9.9.9-py3-none-any.whl"
    metadata = "Metadata-Version: 2.4\nName: agent-memory-server\nVersion: 9.9.9\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("agent_memory_server-9.9.9.dist-info/METADATA", metadata)
    return path


def test_wheel_requirements_drop_extras_and_the_excluded_client(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, [
        "agent-memory-client>=0.14.1",
        "litellm<=1.82.6,>=1.75.5",
        "python-jose[cryptography]>=3.3.0",
        "uvloop>=0.19; sys_platform != 'win32'",
        "boto3<2.0.0,>=1.42.1; extra == 'aws'",
        "Agent_Memory.Client; extra == 'dev'",
    ])
    assert wheel_requirements(wheel, exclude={"agent_memory_client"}) == [
        "litellm<=1.82.6,>=1.75.5",
        "python-jose[cryptography]>=3.3.0",
        "uvloop>=0.19; sys_platform != 'win32'",
    ]


def test_a_fresh_dir_clears_what_an_interrupted_install_left(tmp_path: Path) -> None:
    final = tmp_path / "upstream-0.15.2"
    (final / "lib").mkdir(parents=True)  # built in place by an older layout, never marked
    stale = tmp_path / "upstream-0.15.2.tmp-abc123"
    stale.mkdir()
    other = tmp_path / "upstream-0.15.20"  # another version's name starts the same way
    other.mkdir()
    tmp = _fresh_dir(final)
    assert tmp.parent == tmp_path and tmp.name.startswith("upstream-0.15.2.tmp-")
    assert not final.exists() and not stale.exists() and other.exists()


def test_a_stack_is_complete_only_with_every_marker(tmp_path: Path) -> None:
    stack = Stack(tmp_path, "0.15.2")
    for part in (stack.venv, stack.ssl_dir):
        part.mkdir()
        (part / ".complete").write_text("x")
    assert not stack.complete
    stack.tiktoken_cache.mkdir()
    (stack.tiktoken_cache / ".complete").write_text("x")
    assert stack.complete
