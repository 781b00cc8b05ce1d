"""The version rules: which rules a reported version gets, and what each rule computes.
Whether they are the upstream's own is shown side by side with the real servers in
tests/system (the parity suites and test_versions.py run against both versions)."""

from __future__ import annotations

import orjson
import pytest

from proxy.codec.dialect import (
    DEFAULT_THRESHOLD,
    KNOWN,
    NEWEST,
    V0_14,
    V0_15,
    for_version,
    has_comma_tag,
    imported_scope,
)
from proxy.codec.querystring import parse_query
from proxy.store.keys import logical_key


def test_known_versions_get_their_rules_without_a_warning() -> None:
    assert for_version("0.14.0") == (V0_14, None)
    assert for_version("0.15.2") == (V0_15, None)
    assert NEWEST is V0_15 and set(KNOWN) == {"0.14.0", "0.15.2"}
    assert not (V0_14.lookup_by_id or V0_14.scope_from_store or V0_14.comma_tags_unreadable)
    assert V0_15.lookup_by_id and V0_15.scope_from_store and V0_15.comma_tags_unreadable


@pytest.mark.parametrize(("version", "assumed"), [
    ("0.15.0", "0.15.2"), ("0.15.3", "0.15.2"), ("0.16.1", "0.15.2"), ("1.0.0", "0.15.2"),
    ("0.14.1", "0.14.0"), ("0.13.9", "0.14.0"), ("dev", "0.14.0"), ("", "0.14.0"),
])
def test_an_unknown_version_is_answered_as_the_nearest_known_series(
        version: str, assumed: str) -> None:
    dialect, warning = for_version(version)
    assert dialect.version == assumed
    assert warning == (f"agent-memory-server {version!r} is not a version this proxy knows "
                       f"(supported: 0.14.0, 0.15.2); answering as {assumed}")


def test_get_scope_is_the_query_namespace_and_stored_user_id_in_0140() -> None:
    assert V0_14.response_scope("X", None, None, "X") == (None, None)
    assert V0_14.response_scope(None, "u", "ns", "other") == ("ns", "u")


def test_get_scope_is_stored_or_query_in_0152() -> None:
    assert V0_15.response_scope("X", None, None, "X") == ("X", "X")  # notes §3 (collision)
    assert V0_15.response_scope(None, "Y", "Y", None) == ("Y", "Y")
    assert V0_15.response_scope(None, None, "", None) == ("", None)  # GET ?namespace=
    assert V0_15.response_scope("", "", None, "q") == (None, "q")  # stored "" falls back


def doc(*memories: dict[str, object]) -> bytes:
    return orjson.dumps({"memories": list(memories), "data": {}})


def test_comma_tags_make_a_session_unreadable_in_0152_only() -> None:
    poisoned = doc({"id": "a", "topics": ["x"]}, {"id": "b", "entities": ["c,d"]})
    assert not V0_15.readable(poisoned) and V0_14.readable(poisoned)
    assert V0_15.readable(doc({"id": "a", "topics": ["x", "y"], "extracted_from": None}))
    assert V0_15.readable(doc())
    assert has_comma_tag({"extracted_from": ["m1,m2"]})
    assert not has_comma_tag({"topics": None, "text": "a, b"}) and not has_comma_tag("x")


def test_summarization_follows_the_switch_and_threshold() -> None:
    q = parse_query({"context_window_max": "20"}, "put")
    assert V0_15.would_summarize(15, q) and not V0_15.would_summarize(14, q)  # int(20*0.7)
    off, warnings = V0_15.configured(False, 0.5)
    assert warnings == [] and not off.would_summarize(10**9, q) and off.threshold == 0.5
    half, _ = V0_14.configured(True, 0.5)
    assert half.would_summarize(11, q) and not half.would_summarize(10, q)


def test_settings_a_version_would_not_run_with_are_named_and_replaced() -> None:
    always, warnings = V0_14.configured(False, 0.7)
    assert always.summarizes and warnings == [
        "agent-memory-server 0.14.0 always summarizes: upstream_summarization=false is ignored"]
    for bad in (0.0, -0.1, 1.5):
        kept, warnings = V0_15.configured(True, bad)
        assert kept.threshold == DEFAULT_THRESHOLD and len(warnings) == 1
        assert f"SUMMARIZATION_THRESHOLD={bad!r}" in warnings[0]
    assert V0_14.configured(True, 1.5)[1] == []
    assert V0_15.configured(True, 1.0)[0].threshold == 1.0


@pytest.mark.parametrize(("query", "answer", "stored"), [
    ((None, None), (None, None), (None, None)),
    (("ns", "u"), ("ns", "u"), ("ns", "u")),
    ((None, "X"), ("X", "X"), ("X", None)),  # PUT namespace X, GET user_id X: one key
    (("Y", None), ("Y", "Y"), (None, "Y")),
    ((None, None), ("nsA", "uA"), None),  # found by id under another key
    (("n1", None), ("n1", "u1"), None),
])
def test_imported_scope_recovers_the_stored_scope_or_refuses(
        query: tuple[str | None, str | None], answer: tuple[str | None, str | None],
        stored: tuple[str | None, str | None] | None) -> None:
    assert imported_scope(logical_key, "sid", query, answer) == stored
