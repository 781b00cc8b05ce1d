"""A PUT body's top-level message array, found and cut in its raw bytes, never parsed whole.

A client that resends its session sends, at the start of ``"messages": [``, the very bytes
it sent last time. Those bytes are compared as bytes (engine/plan.py); what is left is the
body with that run of bytes replaced by one sentinel string, which orjson parses at the
cost of the new messages and the session fields alone.

Why the cut is sound, whatever the client sent:

* The sentinel is a JSON string holding 128 random bits drawn at start-up and never sent
  anywhere. The cut body is accepted only when its top-level ``messages`` (as orjson
  resolves it: the last of duplicate keys, escapes decoded, as ``json.loads`` upstream
  does) is a list whose first element is exactly that string. No client can write it, so
  the sentinel's bytes then are that element, as a whole: not inside another string, not
  under a nested ``"messages"`` key in ``data``, not under a key spelled with escapes.
* The bytes it replaced were, byte for byte, a complete comma-separated run of values (the
  elements of an earlier body's array). JSON is context-free: putting such a run where a
  single element stood gives a valid array whose first elements are that run's values and
  whose rest is what the cut body parsed to. So the whole body parses to exactly the stored
  messages followed by the new ones, and nothing else in it changes meaning.

Anything else (no such key, whitespace inside the array before the run, a run that is not
there) is simply not this fast path: the caller parses the body whole, as before.
"""

from __future__ import annotations

import os

_KEY = b'"messages"'
_SPACE = frozenset(b" \t\n\r")  # JSON's insignificant whitespace
_TRIES = 8  # occurrences of the key looked at before giving up on the fast path

SENTINEL_VALUE = "\x00amp-" + os.urandom(16).hex()  # \x00: no sane message looks like it
SENTINEL = b'"\\u0000amp-' + SENTINEL_VALUE[5:].encode() + b'"'


def _skip_space(raw: bytes, i: int) -> int:
    n = len(raw)
    while i < n and raw[i] in _SPACE:
        i += 1
    return i


def array_start(raw: bytes) -> int | None:
    """The index just past the ``[`` of the first ``"messages"`` key that opens an array
    (``"messages"`` ws ``:`` ws ``[``), or None. Only a proposal: ``after_sentinel``
    proves it was the top-level one."""
    i = raw.find(_KEY)
    for _ in range(_TRIES):
        if i < 0:
            return None
        j = _skip_space(raw, i + len(_KEY))
        if raw[j:j + 1] == b":":
            j = _skip_space(raw, j + 1)
            if raw[j:j + 1] == b"[":
                return j + 1
        i = raw.find(_KEY, i + 1)
    return None


def with_sentinel(raw: bytes, start: int, length: int) -> bytes:
    """``raw`` with ``raw[start:start + length]`` replaced by the sentinel (one copy of
    the bytes around it)."""
    view = memoryview(raw)
    return b"".join((view[:start], SENTINEL, view[start + length:]))


def after_sentinel(messages: object) -> list[object] | None:
    """The elements after the sentinel when the parsed ``messages`` starts with it, else
    None (the cut was not the top-level array's first run: see the module docstring)."""
    if type(messages) is not list or not messages:
        return None
    first = messages[0]
    if type(first) is not str or first != SENTINEL_VALUE:
        return None
    return messages[1:]
