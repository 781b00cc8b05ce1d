"""What the load test and the benchmark share: messages, request bodies, URLs and size buckets.

Messages are built the way the 0.14.0 client sends them (every message has an ``id`` and an ISO
``created_at``) and kept as encoded JSON bytes, so a client can resend a whole session by joining
bytes instead of re-encoding thousands of dicts per request.
"""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import orjson

#: Large enough that the upstream never summarizes (which would call an LLM).
CONTEXT_WINDOW_MAX = 100_000_000
RECENT_LIMIT = 20

#: (label, lowest size, highest size exclusive) of the session-size buckets.
BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("0-500", 0, 500),
    ("500-1k", 500, 1_000),
    ("1k-2k", 1_000, 2_000),
    ("2k-5k", 2_000, 5_000),
    ("5k+", 5_000, 1 << 62),
)

_WORDS = (
    "the agent keeps a long running conversation with its user and every turn adds context "
    "about plans tools results questions answers and follow ups that matter later on"
).split()
_counter = itertools.count()


def bucket(messages: int) -> str:
    """The label of the bucket a session of this many messages falls in."""
    for label, low, high in BUCKETS:
        if low <= messages < high:
            return label
    return BUCKETS[-1][0]


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``, as the server writes it."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_session_id(prefix: str = "load") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def _content(n: int, role: str) -> str:
    start = n % len(_WORDS)
    words = [_WORDS[(start + 5 * k + k * k) % len(_WORDS)] for k in range(22)]
    return f"{role} turn {n}: " + " ".join(words)


_SHORT = ("ok", "thanks!", "sure, 3 pm works", "what about tomorrow?", "yes", "no, the other one",
          "done", "can you check again?", "great, go ahead", "hmm, not quite")


def _short_content(n: int) -> str:
    return _SHORT[n % len(_SHORT)]


#: Message mixes: the benchmark's own (~230-byte messages) and short chat turns (~120 bytes,
#: most of them id and timestamp).
MIXES = ("bench", "chat")


def message(role: str, created_at: datetime | None = None, mix: str = "bench") -> bytes:
    """One encoded message with a unique id and a timestamp: ~230 bytes in the "bench"
    mix, ~120 in the "chat" mix."""
    n = next(_counter)
    return orjson.dumps({
        "role": role,
        "content": _content(n, role) if mix == "bench" else _short_content(n),
        "id": f"m{os.getpid():x}-{n:09d}-{uuid.uuid4().hex[:10]}",
        "created_at": iso(created_at or datetime.now(UTC)),
    })


class Clock:
    """Timestamps one millisecond apart from ``start``: strictly rising, never in the future."""

    def __init__(self, start: datetime | None = None) -> None:
        self._next = start or datetime.now(UTC) - timedelta(hours=2)

    def __call__(self) -> datetime:
        now, self._next = self._next, self._next + timedelta(milliseconds=1)
        return now


def turn(clock: Clock | None = None, mix: str = "bench") -> list[bytes]:
    """A user message and the assistant's answer (dated now unless a clock is given)."""
    return [message("user", clock() if clock else None, mix),
            message("assistant", clock() if clock else None, mix)]


def history(count: int, clock: Clock | None = None, mix: str = "bench") -> list[bytes]:
    """``count`` messages dated in the past, oldest first, for seeding a session."""
    clock = clock or Clock()
    return [message("user" if i % 2 == 0 else "assistant", clock(), mix)
            for i in range(count)]


def put_body(session_id: str, messages: list[bytes]) -> bytes:
    """The whole-session PUT body, shaped like the 0.14.0 client's dump."""
    return (b'{"messages":[' + b",".join(messages) + b'],"memories":[],"data":{},"tokens":0,'
            b'"session_id":' + orjson.dumps(session_id) + b"}")


def append_body(messages: list[bytes]) -> bytes:
    """The proxy's append endpoint body: the new messages only."""
    return b'{"messages":[' + b",".join(messages) + b"]}"


def session_path(session_id: str) -> str:
    return "/v1/working-memory/" + quote(session_id, safe="")


def put_path(session_id: str) -> str:
    return f"{session_path(session_id)}?context_window_max={CONTEXT_WINDOW_MAX}"


def append_path(session_id: str) -> str:
    return f"{session_path(session_id)}/messages?context_window_max={CONTEXT_WINDOW_MAX}"


def recent_path(session_id: str, limit: int = RECENT_LIMIT) -> str:
    return f"{session_path(session_id)}?recent_messages_limit={limit}"


JSON_HEADERS = {"Content-Type": "application/json"}
