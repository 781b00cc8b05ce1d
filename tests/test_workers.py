"""The worker group: how many workers, and how the parent supervises them (real forks)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from proxy.config import Settings
from proxy.workers import (
    MULTIPROC_ENV,
    available_cores,
    early_signals,
    serve_group,
    worker_count,
)

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", AFFINITY),
    ("50000 100000\n", 1),  # half a core still gets one worker
    ("100000 100000\n", 1),
    ("150000 100000\n", min(AFFINITY, 2)),
    ("6400000 100000\n", AFFINITY),  # a quota above the cores one may use
    ("garbage\n", AFFINITY),
])
def test_cores_follow_affinity_and_cgroup_v2_quota(tmp_path: Path, cpu_max: str,
                                                    expected: int) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert available_cores(tmp_path) == expected


@pytest.mark.parametrize(("folder", "quota", "expected"), [
    ("cpu", "-1", AFFINITY),
    ("cpu", "50000", 1),
    ("cpu,cpuacct", "150000", min(AFFINITY, 2)),
])
def test_cgroup_v1_quota(tmp_path: Path, folder: str, quota: str, expected: int) -> None:
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "cpu.cfs_quota_us").write_text(quota + "\n")
    (tmp_path / folder / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(tmp_path) == expected


def test_no_cgroup_file_means_affinity(tmp_path: Path) -> None:
    assert available_cores(tmp_path / "absent") == AFFINITY


def test_worker_count() -> None:
    assert worker_count(3) == 3
    assert worker_count(0) == available_cores()


def test_a_fixed_port_is_required() -> None:
    assert serve_group(Settings(port=0), 2, lambda s, r: 0) == 2


@pytest.fixture
def metrics_env() -> object:
    before = os.environ.get(MULTIPROC_ENV)
    yield None
    if before is None:
        os.environ.pop(MULTIPROC_ENV, None)
    else:
        os.environ[MULTIPROC_ENV] = before


def _until_sigterm(settings: Settings, reuse_port: bool) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(30)
    return 0 if reuse_port and stop.is_set() else 5


def test_sigterm_reaches_every_worker_and_the_group_exits_clean(metrics_env: object) -> None:
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    assert serve_group(Settings(port=1, drain_seconds=0), 3, _until_sigterm) == 0
    assert time.monotonic() - started < 10
    assert MULTIPROC_ENV in os.environ and not Path(os.environ[MULTIPROC_ENV]).exists()


def test_a_worker_failing_at_start_up_stops_the_group(metrics_env: object) -> None:
    started = time.monotonic()
    assert serve_group(Settings(port=1), 2, lambda s, r: 3) == 1
    assert time.monotonic() - started < 10


def _slow_start(settings: Settings, reuse_port: bool) -> int:
    time.sleep(1.5)  # still importing the application when SIGTERM comes
    return 0 if early_signals() == [signal.SIGTERM] else 7


def test_sigterm_while_a_worker_starts_is_kept_for_its_event_loop(
        metrics_env: object) -> None:
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    assert serve_group(Settings(port=1, drain_seconds=0), 2, _slow_start) == 0
