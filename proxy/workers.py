"""``serve --workers N``: one proxy per core, all on one port.

The parent forks N workers before it has imported the application (or prometheus_client,
or started an event loop). Each worker is a whole proxy: its own event loop, cache,
Redis pool and read-lease holder id, so workers are coherent with one another exactly as
separate proxies are. They share the port through SO_REUSEPORT: the kernel spreads new
connections over their listening sockets.

The parent forwards SIGTERM and SIGINT to the workers and waits for them (each drains,
see __main__), restarts a worker that dies while serving, and gives up on one that dies at
start-up. Metrics run in prometheus_client's multiprocess mode over a directory the parent
owns, so a scrape answered by any worker reports the whole group.

Default worker count: the cores this process may run on, ``os.sched_getaffinity``
(taskset, cpusets, Docker's ``--cpuset-cpus``), capped by a cgroup CPU quota (v2 or v1:
Docker's ``--cpus``, a Kubernetes CPU limit) when one is set. ``os.cpu_count()`` counts the
machine's cores instead: a sidecar limited to one CPU on a 64-core node would fork 64.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from proxy.config import Settings

log = logging.getLogger("proxy.workers")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when imported
CGROUP = Path("/sys/fs/cgroup")
STARTUP_GRACE = 5.0  # a worker that dies sooner is broken, not unlucky: no restart
# A worker's stop takes at most drain_seconds + 2 x shutdown_timeout (in-flight requests,
# then the write queue); one still running this long after that is stuck, and killed.
KILL_AFTER = 5.0

Worker = Callable[[Settings, bool], int]

# SIGTERM or SIGINT that came before the event loop took the signals over (a worker still
# importing the application): the loop acts on them once it runs, none is lost or fatal.
_early: list[signal.Signals] = []


def _remember(signum: int, frame: FrameType | None) -> None:
    _early.append(signal.Signals(signum))


def catch_early_signals() -> dict[signal.Signals, object]:
    """Remember SIGTERM and SIGINT from now on; the handlers they had before."""
    return {s: signal.signal(s, _remember) for s in (signal.SIGTERM, signal.SIGINT)}


def early_signals() -> list[signal.Signals]:
    """The signals caught early, forgotten once taken."""
    taken = list(_early)
    _early.clear()
    return taken


def available_cores(cgroup: Path = CGROUP) -> int:
    """Cores this process may use: its affinity, capped by a cgroup CPU quota."""
    cores = len(os.sched_getaffinity(0))
    quota = _cpu_quota(cgroup)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _cpu_quota(cgroup: Path) -> float | None:
    """CPUs' worth of time the cgroup may use (None: no limit, or no CPU controller):
    cgroup v2's ``cpu.max`` ("<quota> <period>" or "max <period>"), else cgroup v1's
    ``cpu.cfs_quota_us`` (-1: none) over ``cpu.cfs_period_us``."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (cgroup / "cpu", cgroup / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def worker_count(setting: int) -> int:
    return setting if setting > 0 else available_cores()


def serve_group(settings: Settings, count: int, worker: Worker) -> int:
    """Fork ``count`` workers running ``worker(settings, reuse_port=True)``; wait for them."""
    if settings.port == 0:
        log.error("workers = %d needs a fixed port: each worker binds it itself", count)
        return 2
    directory, owned = _metrics_directory()
    group = _Group(settings, worker, count)
    try:
        return group.run()
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)


def _metrics_directory() -> tuple[str, bool]:
    """The multiprocess metrics directory (the operator's if set) and whether it is ours.
    Emptied first: files of an earlier group would be counted as this one's."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return given, False
    directory = tempfile.mkdtemp(prefix="amp-metrics-")
    os.environ[MULTIPROC_ENV] = directory  # inherited by the workers forked next
    return directory, True


class _Group:
    def __init__(self, settings: Settings, worker: Worker, count: int) -> None:
        self.settings = settings
        self.worker = worker
        self.count = count
        self.context = multiprocessing.get_context("fork")
        self.running: dict[int, tuple[BaseProcess, float]] = {}  # slot -> (process, start)
        self.stopping: signal.Signals | None = None
        self.status = 0
        self.pid = os.getpid()

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for early in early_signals():
                self._on_signal(early, None)
            for slot in range(self.count):
                if self.stopping is None:
                    self._start(slot)
            log.info("%d workers on http://%s:%d", self.count, self.settings.host,
                     self.settings.port)
            self._supervise()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        log.info("all workers stopped")
        return self.status

    def _start(self, slot: int) -> None:
        process = self.context.Process(target=_worker_main, name=f"amp-worker-{slot}",
                                       args=(self.worker, self.settings))
        process.start()
        self.running[slot] = (process, time.monotonic())

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if os.getpid() != self.pid:  # a worker before it installed its own handlers
            _remember(signum, frame)
            return
        if self.stopping is None or sig == signal.SIGINT:
            log.info("%s: stopping %d workers", sig.name, len(self.running))
            self.stopping = sig
            self._signal_all(sig)

    def _signal_all(self, sig: signal.Signals) -> None:
        for process, _ in self.running.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, sig)

    def _supervise(self) -> None:
        deadline: float | None = None
        while self.running:
            sentinels = {p.sentinel: slot for slot, (p, _) in self.running.items()}
            for sentinel in multiprocessing.connection.wait(list(sentinels), timeout=0.5):
                assert isinstance(sentinel, int)
                self._reap(sentinels[sentinel])
            if self.stopping is not None and deadline is None:
                deadline = time.monotonic() + self.settings.drain_seconds + \
                    2 * self.settings.shutdown_timeout + KILL_AFTER
            if deadline is not None and time.monotonic() > deadline:
                log.error("workers still running past the shutdown deadline: killing them")
                self._signal_all(signal.SIGKILL)
                deadline = math.inf

    def _reap(self, slot: int) -> None:
        process, started = self.running.pop(slot)
        process.join()
        _mark_dead(process.pid)
        code = process.exitcode
        if self.stopping is not None:
            if code != 0:
                log.error("worker %s exited with %s", process.pid, code)
                self.status = 1
            return
        if time.monotonic() - started < STARTUP_GRACE:
            log.error("worker %s exited with %s at start-up: stopping the group",
                      process.pid, code)
            self.status = 1
            self.stopping = signal.SIGINT
            self._signal_all(signal.SIGINT)
            return
        log.error("worker %s exited with %s; starting another", process.pid, code)
        self._start(slot)


def _worker_main(worker: Worker, settings: Settings) -> None:
    catch_early_signals()  # the fork copied the parent's handlers; its event loop takes over
    raise SystemExit(worker(settings, True))


def _mark_dead(pid: int | None) -> None:
    """Drop a dead worker's live gauges (its counters stay: totals survive restarts)."""
    if pid is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
