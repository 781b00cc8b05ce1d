"""``python -m proxy.localstack``: the install command ``make stack`` runs. The versions
are installed in the cache already (the session fixtures saw to the default one), so each
run only finds them complete."""

from __future__ import annotations

import os
import subprocess
import sys

from proxy.localstack import SUPPORTED_VERSIONS, Stack, cache_root
from proxy.localstack.__main__ import main


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy.localstack", *args],
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, **(env or {})})


def test_help_says_what_it_installs() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "python -m proxy.localstack [VERSION ... | all]" in result.stdout
    assert "``all`` installs every supported" in result.stdout
    assert run("--nope").returncode == 2


def test_all_installs_every_supported_version(stack: Stack) -> None:
    result = run("all")
    assert result.returncode == 0, result.stderr
    root = cache_root(os.environ)
    assert result.stdout.splitlines() == [
        f"reference stack with agent-memory-server {v} ready in {root}"
        for v in SUPPORTED_VERSIONS]
    assert all(Stack(root, v).complete for v in SUPPORTED_VERSIONS)


def test_no_argument_installs_the_version_the_environment_names(stack: Stack) -> None:
    result = run(env={"AMP_UPSTREAM_VERSION": "0.14.0"})
    assert result.returncode == 0, result.stderr
    assert "agent-memory-server 0.14.0 ready" in result.stdout


def test_an_unknown_version_fails_with_one_sentence() -> None:
    assert main(["9.9.9"]) == 1
    result = run("9.9.9")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        "agent-memory-server 9.9.9 is not one the local stack knows how to install "
        f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
