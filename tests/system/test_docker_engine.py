"""Where no Docker engine can be had, the container tests fail with one line that says why."""

from __future__ import annotations

import os

import pytest

from tests.system import docker_engine
from tests.system.docker_engine import EngineUnavailable, start_engine


def test_without_an_engine_or_root_the_reason_is_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_engine, "_answers", lambda docker: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EngineUnavailable) as caught:
        start_engine()
    assert "\n" not in str(caught.value)
    assert "needs root" in str(caught.value)

