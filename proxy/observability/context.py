"""The request id of the request being served, for log lines and upstream calls.

Taken from the client's ``X-Request-ID`` when it sent one, generated otherwise; set by the
access record (access.py) for the duration of a request. Tasks spawned while serving
a request inherit it (asyncio copies the context), so their upstream calls carry it too.
"""

from __future__ import annotations

import itertools
import os
from contextvars import ContextVar

from multidict import istr

HEADER = istr("X-Request-ID")  # pre-folded: no case folding per lookup
MAX_LENGTH = 128  # a longer id from a client is cut: it lands in every log line

current: ContextVar[str | None] = ContextVar("request_id", default=None)

# A random per-process prefix and a counter: unique across processes and restarts, and
# cheaper than a uuid4 per request.
_prefix = os.urandom(6).hex()
_counter = itertools.count(1)


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(6).hex()
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)  # forked workers must not repeat the parent's ids


def new_request_id() -> str:
    return f"{_prefix}-{next(_counter):x}"


def request_id_from(given: str | None) -> str:
    """The id to use for a request whose client sent ``given`` (maybe none)."""
    if given:
        return given[:MAX_LENGTH]
    return new_request_id()
