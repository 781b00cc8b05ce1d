"""The load test that exposed the problem, runnable against the upstream or the proxy.

Each simulated user owns one long-running session and loops: append a user and an assistant
message, then read the session back with ``recent_messages_limit=20``.

* ``FullPutUser`` appends as the 0.14.0 client does: a PUT of the whole session it keeps locally.
* ``AppendUser`` posts only the new messages to the proxy's append endpoint
  ``POST /v1/working-memory/{id}/messages`` (the upstream has no such route).

Request names carry the session-size bucket, e.g. ``PUT full [1k-2k]``, so Locust's statistics
show latency against session size. Run, for example::

    locust -f load/locustfile.py --headless -u 25 -r 1 -t 2m \
        --host http://127.0.0.1:8090 FullPutUser

``-u 25 -r 1`` ramps one user a second to 25. ``AMP_LOAD_SHAPE=ramp`` instead uses the
``RampTo25`` shape (25 users in steps of 5, ``AMP_LOAD_STEP_SECONDS`` apart, default 10).

Environment:

* ``AMP_LOAD_SEED``: messages each session starts with (one bulk PUT at start), default 0,
  so a short run can reach the large buckets. Statistics restart once every user has
  seeded, so they show the steady loop.
* ``AMP_LOAD_MAX``: when a session reaches this size the user starts a fresh session seeded
  with ``AMP_LOAD_SEED`` messages (named ``PUT seed``), so a run stays in one size range.
  Default 0: sessions grow without bound.
* ``AMP_LOAD_WAIT``: mean seconds each user waits between iterations (uniformly 0.5x to
  1.5x), default 0.
* ``AMP_LOAD_TIMINGS``: a file to write every counted request's name and exact response time
  (ms) to at the end, as CSV. Locust's own statistics round times to whole milliseconds,
  too coarse for ratios of few-millisecond percentiles.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from locust import FastHttpUser, LoadTestShape, between, events, task

# Locust puts this file's own directory on sys.path; the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from load.common import (  # noqa: E402
    JSON_HEADERS,
    append_body,
    append_path,
    bucket,
    history,
    new_session_id,
    put_body,
    put_path,
    recent_path,
    turn,
)

SEED = int(os.environ.get("AMP_LOAD_SEED", "0"))
MAX_MESSAGES = int(os.environ.get("AMP_LOAD_MAX", "0"))
WAIT = float(os.environ.get("AMP_LOAD_WAIT", "0"))
STEP_SECONDS = float(os.environ.get("AMP_LOAD_STEP_SECONDS", "10"))
TIMINGS = os.environ.get("AMP_LOAD_TIMINGS", "")
REQUEST_TIMEOUT = 120.0

_timings: list[tuple[str, float]] = []  # (request name, ms) since the statistics started


def _record(name: str, response_time: float, exception: Exception | None = None,
            **_: object) -> None:
    if TIMINGS and exception is None:
        _timings.append((name, response_time))


def _write_timings(**_: object) -> None:
    if TIMINGS:
        with open(TIMINGS, "w") as out:
            out.writelines(f"{name},{ms:.4f}\n" for name, ms in _timings)


events.request.add_listener(_record)
events.quitting.add_listener(_write_timings)


_users_seeded = 0
_seed: list[bytes] = []


def _seed_history() -> list[bytes]:
    """The SEED messages every session starts with, built once per process: sessions are
    told apart by their ids, and hundreds of users each building thousands of messages
    would keep the load generator busy instead of the server."""
    if len(_seed) != SEED:
        _seed[:] = history(SEED)
    return _seed


def _seeded(user: FastHttpUser) -> None:
    """Once every user has seeded its session, start the statistics afresh: the seeding
    PUTs all land at once and would otherwise stand in for the steady loop's tail."""
    global _users_seeded
    _users_seeded += 1
    runner = user.environment.runner
    if SEED and runner is not None and _users_seeded == runner.target_user_count:
        user.environment.stats.reset_all()
        _timings.clear()


class _SessionUser(FastHttpUser):
    abstract = True
    # Jittered think time: users started together drift apart instead of arriving in
    # lock-step bursts, as independent agents would.
    wait_time = between(WAIT * 0.5, WAIT * 1.5)
    network_timeout = REQUEST_TIMEOUT
    connection_timeout = 10.0

    session_id: str
    messages: list[bytes]

    def _new_session(self) -> None:
        self.session_id = new_session_id("locust")
        self.messages = list(_seed_history())
        if SEED:
            self._put_full(f"PUT seed [{bucket(SEED)}]")

    def on_start(self) -> None:
        self._new_session()
        _seeded(self)
        # A think time before the first turn too: users that all finished seeding together
        # would otherwise send their first PUTs in one burst, unlike independent agents.
        self.wait()

    def _put_full(self, name: str) -> None:
        body = put_body(self.session_id, self.messages)
        with self.client.put(put_path(self.session_id), data=body,  # type: ignore[arg-type]
                             headers=JSON_HEADERS, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")

    def _get_recent(self) -> None:
        name = f"GET recent [{bucket(len(self.messages))}]"
        with self.client.get(recent_path(self.session_id), name=name,
                             catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")

    def _maybe_restart(self) -> None:
        if MAX_MESSAGES and len(self.messages) >= MAX_MESSAGES:
            self._new_session()


class FullPutUser(_SessionUser):
    """Appends by PUT of the whole session, as agent-memory-client 0.14.0 does."""

    @task
    def converse(self) -> None:
        self._maybe_restart()
        self.messages.extend(turn())
        self._put_full(f"PUT full [{bucket(len(self.messages))}]")
        self._get_recent()


class AppendUser(_SessionUser):
    """Appends only the new messages through the proxy's append endpoint."""

    @task
    def converse(self) -> None:
        self._maybe_restart()
        new = turn()
        self.messages.extend(new)
        name = f"POST append [{bucket(len(self.messages))}]"
        body = append_body(new)
        with self.client.post(append_path(self.session_id), data=body,  # type: ignore[arg-type]
                              headers=JSON_HEADERS, name=name, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}")
        self._get_recent()


if os.environ.get("AMP_LOAD_SHAPE") == "ramp":

    class RampTo25(LoadTestShape):
        """5, 10, 15, 20, then 25 users, a step every ``AMP_LOAD_STEP_SECONDS``."""

        def tick(self) -> tuple[int, float] | None:
            step = int(self.get_run_time() // STEP_SECONDS)
            if step >= 6:
                return None
            return min(25, 5 * (step + 1)), 5.0
