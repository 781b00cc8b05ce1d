"""Finding and cutting a body's top-level message array in its raw bytes: the cut is
accepted only where orjson (and json.loads upstream) sees the top-level array start."""

from __future__ import annotations

import json

import orjson
import pytest

from proxy.codec import rawbody

RUN = b'{"role":"user","content":"a","id":"1"},{"role":"user","content":"b","id":"2"}'


def cut(raw: bytes, run: bytes = RUN) -> list[object] | None:
    """What the fast path would take as the new messages, or None when it declines."""
    start = rawbody.array_start(raw)
    if start is None or not raw.startswith(run, start):
        return None
    parsed = orjson.loads(rawbody.with_sentinel(raw, start, len(run)))
    return rawbody.after_sentinel(parsed.get("messages"))


def test_the_sentinel_is_one_json_string_no_client_can_write() -> None:
    assert orjson.loads(rawbody.SENTINEL) == rawbody.SENTINEL_VALUE
    assert json.loads(rawbody.SENTINEL) == rawbody.SENTINEL_VALUE
    assert len(rawbody.SENTINEL_VALUE) == 5 + 32  # 128 random bits


@pytest.mark.parametrize("raw, start", [
    (b'{"messages":[1]}', 13),
    (b'{ "messages" :\n\t[ 1]}', 17),
    (b'{"data":"messages","messages":[]}', 31),  # the key, not the value before it
    (b'{"messages":1,"messages":[2]}', 26),  # the first key that opens an array
])
def test_the_array_start_is_just_past_its_bracket(raw: bytes, start: int) -> None:
    assert rawbody.array_start(raw) == start
    assert raw[start - 1:start] == b"["


@pytest.mark.parametrize("raw", [b'{"memories":[]}', b'{"messages":null}', b"",
                                 b'{"messages"', b'{"messages":'])
def test_no_array_no_start(raw: bytes) -> None:
    assert rawbody.array_start(raw) is None


def test_new_messages_come_from_the_rest_of_the_body() -> None:
    new = b'{"role":"user","content":"c","id":"3"}'
    assert cut(b'{"messages":[' + RUN + b"," + new + b'],"data":{}}') == [orjson.loads(new)]
    assert cut(b'{"messages":[' + RUN + b'],"data":{}}') == []
    assert cut(b'{"messages":[' + RUN + b" ,\n" + new + b" ]}") == [orjson.loads(new)]


def test_a_nested_messages_key_is_never_taken_for_the_top_level_one() -> None:
    # The stored run under data.messages, first in the body: the cut lands there, and the
    # top-level array does not start with the sentinel.
    raw = b'{"data":{"messages":[' + RUN + b']},"messages":[{"role":"user"}]}'
    assert rawbody.array_start(raw) == raw.index(RUN)
    assert cut(raw) is None


def test_a_key_spelled_with_escapes_is_the_top_level_one_for_orjson() -> None:
    raw = b'{"data":{"messages":[' + RUN + b']},"\\u006dessages":[]}'
    assert orjson.loads(raw)["messages"] == [] and cut(raw) is None


def test_duplicate_keys_resolve_as_json_loads_does() -> None:
    # Last one wins in orjson and in json.loads (the upstream's parser) alike.
    for raw in (b'{"messages":[' + RUN + b'],"messages":[]}',
                b'{"messages":[],"messages":[' + RUN + b"]}"):
        assert orjson.loads(raw) == json.loads(raw)
    assert cut(b'{"messages":[' + RUN + b'],"messages":[]}') is None  # the cut one loses
    # The first key opens the array the run is looked for in; it is not there: declined.
    assert cut(b'{"messages":[],"messages":[' + RUN + b"]}") is None
    dup = b'{"messages":[1],"messages":[' + RUN + b"]}"
    start = rawbody.array_start(dup)
    assert start is not None and not dup.startswith(RUN, start)


def test_messages_text_inside_strings_cannot_fake_the_array() -> None:
    # A string holding "messages": [ needs escaped quotes, so its bytes never match.
    inner = b'{"context":"say \\"messages\\": [' + RUN + b'","messages":[]}'
    assert rawbody.array_start(inner) == inner.rindex(b"[") + 1
    assert cut(inner) is None
    # A key ending in an escaped quote plus messages does match the pattern; the cut
    # then lands inside data and is refused.
    tricky = b'{"data":{"x\\"messages":[' + RUN + b']},"messages":[]}'
    assert rawbody.array_start(tricky) == tricky.index(RUN)
    assert cut(tricky) is None


def test_a_run_that_ends_inside_a_value_is_refused() -> None:
    half = RUN[:-10]
    raw = b'{"messages":[' + RUN + b"]}"
    start = rawbody.array_start(raw)
    assert start is not None and raw.startswith(half, start)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(rawbody.with_sentinel(raw, start, len(half)))


def test_after_sentinel_wants_the_sentinel_first() -> None:
    assert rawbody.after_sentinel([rawbody.SENTINEL_VALUE, 1]) == [1]
    for other in (None, [], [1, rawbody.SENTINEL_VALUE], "x", [rawbody.SENTINEL_VALUE[:-1]]):
        assert rawbody.after_sentinel(other) is None
