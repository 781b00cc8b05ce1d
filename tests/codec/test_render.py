"""The codec against the contract's examples (E1-E18, §6.2, §6.3) and its refusals."""

import re
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from proxy import codec
from proxy.codec import Query, Unsupported
from proxy.codec.memories import FULL_KEYS

NOW = datetime(2026, 11, 23, 19, 52, 3, 347265, tzinfo=UTC)
JSON = "application/json"
ULID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def put(body: Any, query: dict[str, str] | None = None, sid: str = "s") -> tuple[bytes, bytes]:
    """(PUT response, GET response with the body's scope and the same query)."""
    pb = codec.parse_put(orjson.dumps(body), JSON, NOW)
    enc = codec.encode_messages(pb.messages, NOW)
    msgs = codec.join_messages([e.body for e in enc])
    total = sum(e.tokens for e in enc)
    out = codec.render_put(sid, pb, msgs, total, codec.parse_query(query or {}, "put"))
    gq = codec.parse_query(query or {}, "get")
    got = codec.render_get(sid, pb.doc, gq.namespace, msgs, total, gq)
    return out, got


def render_get_like_engine(body: Any, query: dict[str, str]) -> dict[str, Any]:
    pb = codec.parse_put(orjson.dumps(body), JSON, NOW)
    enc = codec.encode_messages(pb.messages, NOW)
    q = codec.parse_query(query, "get")
    if q.recent_messages_limit and q.recent_messages_limit > 0:
        enc = sorted(enc, key=lambda e: e.created_at_us)[-q.recent_messages_limit :]
    limit = codec.truncation_limit(q)
    if enc and limit is not None:
        enc = enc[codec.truncate_count([e.tokens for e in enc], limit) :]
    msgs = codec.join_messages([e.body for e in enc])
    out = codec.render_get("s", pb.doc, q.namespace, msgs, sum(e.tokens for e in enc), q)
    parsed: dict[str, Any] = orjson.loads(out)
    return parsed


E4_BODY = {
    "messages": [
        {
            "role": "user",
            "content": "one two three four five",
            "id": "t1",
            "created_at": "2024-01-01T00:00:03Z",
        },
        {
            "role": "assistant",
            "content": "six seven eight",
            "id": "t2",
            "created_at": "2024-01-01T00:00:01Z",
        },
        {
            "role": "user",
            "content": "nine ten",
            "id": "t3",
            "created_at": "2024-01-01T00:00:02+00:00",
        },
    ],
    "data": {"k": [1, None]},
    "ttl_seconds": 600,
    "tokens": 5,
}


def test_e1_put_without_created_at_renders_generated_values() -> None:
    body = {
        "messages": [{"role": "user", "content": "Hi, we am Ana"}],
        "user_id": "spec-ana",
        "namespace": "spec-app",
    }
    out, _ = put(body, sid="spec-ex1")
    masked = ULID_RE.sub("ULID", out.decode())
    now = "2026-11-23T19:52:03.347265Z"
    assert masked == (
        '{"messages":[{"role":"user","content":"Hi, we am Ana","id":"ULID",'
        f'"created_at":"{now}","persisted_at":null,"discrete_memory_extracted":"f"}}],'
        '"memories":[],"data":null,"context":null,"user_id":"spec-ana","tokens":0,'
        '"session_id":"spec-ex1","namespace":"spec-app",'
        '"long_term_memory_strategy":{"strategy":"discrete","config":{}},"ttl_seconds":null,'
        f'"last_accessed":"{now}","created_at":"{now}","updated_at":"{now}",'
        '"context_percentage_total_used":null,"context_percentage_until_summarization":null}'
    )
    enc = codec.encode_messages([{"role": "user", "content": "x"}], NOW)
    assert enc[0].had_created_at is False  # the handler adds x-deprecation-warning


def test_e3_get_floors_timestamps_data_becomes_object_and_namespace_is_the_query() -> None:
    body = {
        "messages": [{"role": "user", "content": "Hi, we am Ana"}],
        "user_id": "spec-ana",
        "namespace": "spec-app",
    }
    _, got = put(
        body,
        {"namespace": "spec-app", "user_id": "spec-ana", "context_window_max": "100"},
        sid="spec-ex1",
    )
    text = got.decode()
    assert '"data":{},"context":null,"user_id":"spec-ana","tokens":0,' in text
    assert '"session_id":"spec-ex1","namespace":"spec-app",' in text
    assert text.endswith(
        '"ttl_seconds":null,"last_accessed":"2026-11-23T19:52:03Z",'
        '"created_at":"2026-11-23T19:52:03Z","updated_at":"2026-11-23T19:52:03Z",'
        '"context_percentage_total_used":7.000000000000001,'
        '"context_percentage_until_summarization":10.0}'
    )


def test_get_namespace_echo_is_the_query_value_even_empty() -> None:
    pb = codec.parse_put(b'{"namespace":"ns"}', JSON, NOW)
    assert b'"namespace":null,' in codec.render_get("s", pb.doc, None, b"[]", 0, Query())
    assert b'"namespace":"",' in codec.render_get("s", pb.doc, "", b"[]", 0, Query())


def test_e4_put_keeps_body_order_and_writes_utc_offsets_as_z() -> None:
    out, _ = put(E4_BODY, {"context_window_max": "100"})
    doc = orjson.loads(out)
    assert [m["id"] for m in doc["messages"]] == ["t1", "t2", "t3"]
    assert doc["messages"][2]["created_at"] == "2024-01-01T00:00:02Z"
    assert doc["data"] == {"k": [1, None]} and doc["ttl_seconds"] == 600 and doc["tokens"] == 5
    assert out.endswith(
        b'"context_percentage_total_used":16.0,'
        b'"context_percentage_until_summarization":22.857142857142858}'
    )


def test_e5_recent_messages_limit_sorts_oldest_first() -> None:
    doc = render_get_like_engine(E4_BODY, {"recent_messages_limit": "2"})
    assert [m["id"] for m in doc["messages"]] == ["t3", "t1"]
    assert doc["context_percentage_total_used"] is None


def test_e6_truncation_drops_oldest_in_stored_order() -> None:
    doc = render_get_like_engine(E4_BODY, {"context_window_max": "12"})
    assert [m["id"] for m in doc["messages"]] == ["t2", "t3"]
    assert doc["context_percentage_total_used"] == 75.0
    assert doc["context_percentage_until_summarization"] == 100.0


def test_e17_e18_client_shaped_memory_ingested_from_upstream_turns_full_on_get() -> None:
    upstream_put = (
        b'{"messages":[],"memories":[{"id":"01M84ZECFEVMCMREYR2N4XTXWE","text":"Ana likes tea",'
        b'"session_id":null,"user_id":null,"namespace":null,'
        b'"last_accessed":"2026-11-23T19:52:03.1Z","created_at":"2026-11-23T19:52:03.1Z",'
        b'"updated_at":"2026-11-23T19:52:03.1Z","topics":null,"entities":null,"memory_hash":null,'
        b'"discrete_memory_extracted":"f","memory_type":"semantic","persisted_at":null,'
        b'"extracted_from":null,"event_date":null}],"data":null,"context":null,"user_id":null,'
        b'"tokens":0,"session_id":"scratch","namespace":null,'
        b'"long_term_memory_strategy":{"strategy":"discrete","config":{}},"ttl_seconds":null,'
        b'"last_accessed":"2026-11-23T19:52:03.347297Z","created_at":"2026-11-23T19:52:03.347298Z",'
        b'"updated_at":"2026-11-23T19:52:03.347504Z","context_percentage_total_used":null,'
        b'"context_percentage_until_summarization":null}'
    )
    body, msgs = codec.ingest_upstream_put_response(upstream_put)
    assert msgs == []
    assert codec.render_put("scratch", body, b"[]", 0, Query()) == upstream_put
    got = codec.render_get("spec-ex5", body.doc, None, b"[]", 0, Query())
    mem = orjson.loads(got)["memories"][0]
    assert list(mem)[8:10] == ["pinned", "access_count"]
    assert mem["pinned"] is False and mem["access_count"] == 0
    assert list(mem)[-2:] == ["extraction_strategy", "extraction_strategy_config"]
    assert mem["extraction_strategy_config"] == {}
    assert b'"data":{},' in got and b'"updated_at":"2026-11-23T19:52:03Z"' in got


def test_full_shape_memory_renders_the_same_on_put_and_get() -> None:
    mem = {
        "id": "m1",
        "text": "fact",
        "memory_type": "semantic",
        "topics": ["a"],
        "created_at": "2024-01-01T00:00:00+00:00",
        "bogus": 1,
    }
    out, got = put({"memories": [mem]})
    put_mem = orjson.loads(out)["memories"][0]
    assert put_mem == orjson.loads(got)["memories"][0]
    assert tuple(put_mem) == FULL_KEYS
    assert put_mem["created_at"] == "2024-01-01T00:00:00Z" and "bogus" not in put_mem


def test_import_of_a_get_document_reproduces_it() -> None:
    _, got = put(E4_BODY)
    body, msgs = codec.import_upstream_document(got)
    again = codec.render_get(
        "s",
        body.doc,
        None,
        codec.join_messages([m.body for m in msgs]),
        sum(m.tokens for m in msgs),
        Query(),
    )
    assert again == got
    assert body.ttl_seconds == 600 and [m.tokens for m in msgs] == [7, 5, 4]


# §6.3 percentages, each with the IEEE result the upstream renders.
@pytest.mark.parametrize(
    ("tokens", "query", "expected"),
    [
        (7, {"context_window_max": "100"}, (7.000000000000001, 10.0)),
        (19, {"context_window_max": "100"}, (19.0, 27.142857142857142)),
        (19, {"model_name": "gpt-4"}, (0.23193359375, 0.33135681897453784)),
        (19, {"model_name": "gpt-3.5-turbo"}, (0.4638671875, 0.6627136379490757)),
        (19, {"context_window_max": "28"}, (67.85714285714286, 100.0)),
        (19, {}, (None, None)),
        (19, {"context_window_max": "0"}, (None, None)),
        (19, {"model_name": "gpt-4", "context_window_max": "0"}, (None, None)),
        (19, {"context_window_max": "-5"}, (None, None)),
        (1, {"context_window_max": "1"}, (100.0, 100.0)),  # thr int(0.7) = 0 -> 100.0
    ],
)
def test_percentages(
    tokens: int, query: dict[str, str], expected: tuple[float | None, float | None]
) -> None:
    assert codec.percentages(tokens, True, codec.parse_query(query, "get")) == expected


def test_percentages_without_messages_are_zero_only_with_model_information() -> None:
    assert codec.percentages(0, False, codec.parse_query({"model_name": "o1"}, "get")) == (0.0, 0.0)
    assert codec.percentages(0, False, Query()) == (None, None)


def test_small_percentages_render_like_pydantic() -> None:
    out = codec.render_get(
        "s",
        codec.parse_put(b"{}", JSON, NOW).doc,
        None,
        b"[{}]",
        1,
        codec.parse_query({"model_name": "gpt-5-mini"}, "get"),
    )
    assert out.endswith(
        b'"context_percentage_total_used":0.00025,'
        b'"context_percentage_until_summarization":0.00035714285714285714}'
    )


# §6.2: messages of 7, 5, 4 and 3 tokens.
@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ({"context_window_max": "100"}, 4),
        ({"context_window_max": "15"}, 3),
        ({"context_window_max": "10"}, 2),
        ({"context_window_max": "5"}, 1),
        ({"context_window_max": "1"}, 1),
        ({"context_window_max": "0"}, 4),
        ({"context_window_max": "-5"}, 1),
        ({"model_name": "gpt-4", "context_window_max": "0"}, 1),
        ({"model_name": "gpt-4"}, 4),
        ({}, 4),
    ],
)
def test_truncation(query: dict[str, str], kept: int) -> None:
    counts = [7, 5, 4, 3]
    limit = codec.truncation_limit(codec.parse_query(query, "get"))
    dropped = 0 if limit is None else codec.truncate_count(counts, limit)
    assert len(counts) - dropped == kept


def test_summarization_limit_and_threshold() -> None:
    assert codec.summarization_limit(Query()) == 16000
    assert codec.summarization_threshold(Query()) == 11200
    assert (
        codec.summarization_threshold(codec.parse_query({"context_window_max": "20"}, "put")) == 14
    )
    assert codec.summarization_limit(codec.parse_query({"model_name": "gpt-4"}, "put")) == 8192
    assert (
        codec.summarization_limit(
            codec.parse_query({"model_name": "gpt-4", "context_window_max": "0"}, "put")
        )
        == 0
    )


def test_query_last_value_wins_and_lax_ints() -> None:
    class Multi(dict[str, str]):
        def getall(self, key: str, default: list[str]) -> list[str]:
            return {"context_window_max": ["5", "03"]}.get(key, default)

    assert codec.parse_query(Multi(), "get").context_window_max == 3
    for text, value in [("03", 3), ("+3", 3), ("2.0", 2), ("-0", 0), ("2.00", 2)]:
        assert codec.lax_int(text) == value
    q = codec.parse_query({"namespace": "n", "user_id": "u", "model_name": "gpt-4"}, "put")
    assert q.namespace is None and q.user_id is None  # PUT scopes only by the body
    assert codec.parse_query({"model_name": "x", "limit": "0"}, "delete") == Query()


@pytest.mark.parametrize(
    ("query", "route"),
    [
        ({"model_name": "gpt-5"}, "get"),
        ({"model_name": ""}, "put"),
        ({"context_window_max": "2.5"}, "get"),
        ({"context_window_max": "abc"}, "get"),
        ({"context_window_max": ""}, "put"),
        ({"recent_messages_limit": "1e3"}, "get"),
        ({"limit": "0"}, "list"),
        ({"limit": "101"}, "list"),
        ({"offset": "-1"}, "list"),
    ],
)
def test_query_errors_are_unsupported(query: dict[str, str], route: codec.Route) -> None:
    with pytest.raises(Unsupported):
        codec.parse_query(query, route)


def msg(**kw: Any) -> dict[str, Any]:
    return {"role": "user", "content": "hi", "id": "i", "created_at": "2024-01-01T00:00:00Z", **kw}


@pytest.mark.parametrize(
    "raw",
    [
        msg(content="  "),
        msg(content=""),
        msg(content=None),
        msg(role=None),
        {"content": "x"},
        "hello",
        msg(id=None),
        msg(id=5),
        msg(created_at=None),
        msg(created_at=1704067200.75),
        msg(created_at="2099-01-01T00:00:00Z"),
        msg(created_at="2024-01-01t00:00:00z"),
        msg(discrete_memory_extracted="x"),
        msg(persisted_at=5),
        msg(content="a <|endoftext|> b"),
    ],
)
def test_message_refusals(raw: object) -> None:
    with pytest.raises(Unsupported):
        codec.encode_messages([raw], NOW)


def test_message_encoding_details() -> None:
    enc = codec.encode_message(
        msg(
            id="",
            content='é \u2028 "q"\n',
            persisted_at="2024-01-02",
            discrete_memory_extracted="t",
            name="dropped",
            created_at="2024-01-01T10:00:05+02:00",
        ),
        NOW,
    )
    assert (
        enc.body
        == (
            '{"role":"user","content":"é \u2028 \\"q\\"\\n","id":"",'
            '"created_at":"2024-01-01T10:00:05+02:00","persisted_at":"2024-01-02T00:00:00",'
            '"discrete_memory_extracted":"t"}'
        ).encode()
    )
    assert enc.aware and enc.had_created_at and enc.created_at_us == 1704096005 * 10**6
    naive = codec.encode_message(msg(created_at="2024-01-01T00:00:03"), NOW)
    assert not naive.aware and naive.created_at_us == 1704067203 * 10**6
    generated = codec.encode_message({"role": "user", "content": "x"}, NOW)
    assert ULID_RE.fullmatch(orjson.loads(generated.body)["id"])


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"messages": [', JSON),
        (b"", JSON),
        (b"[]", JSON),
        (b"null", JSON),
        (b"{}", None),
        (b"{}", "text/plain"),
        (b"{}", "application/x-www-form-urlencoded"),
        (b'{"messages":"hello","ttl_seconds":"soon"}', JSON),
        (b'{"messages":null}', JSON),
        (b'{"memories":{}}', JSON),
        (b'{"data":{"a":null}}', JSON),
        (b'{"data":[1]}', JSON),
        (b'{"data":{"big":123456789012345678901234567890}}', JSON),
        (b'{"data":{"n":NaN}}', JSON),
        (b'{"data":{"s":"\\ud800"}}', JSON),
        (b"\xef\xbb\xbf{}", JSON),
        (b'{"tokens":"7"}', JSON),
        (b'{"tokens":1.5}', JSON),
        (b'{"tokens":true}', JSON),
        (b'{"ttl_seconds":0}', JSON),
        (b'{"ttl_seconds":-1}', JSON),
        (b'{"ttl_seconds":"100"}', JSON),
        (b'{"user_id":5}', JSON),
        (b'{"namespace":1}', JSON),
        (b'{"context":5}', JSON),
        (b'{"long_term_memory_strategy":null}', JSON),
        (b'{"long_term_memory_strategy":{"strategy":"x"}}', JSON),
        (b'{"long_term_memory_strategy":{"config":[]}}', JSON),
        (b'{"last_accessed":null}', JSON),
        (b'{"created_at":1704067200}', JSON),
        (b'{"updated_at":"nope"}', JSON),
        (b'{"memories":[{"text":"no id"}]}', JSON),
        (b'{"memories":[{"id":"","text":"fact"}]}', JSON),
        (b'{"memories":[{"id":"a","text":""}]}', JSON),
        (b'{"memories":[{"id":"a","text":"t","access_count":-1}]}', JSON),
        (b'{"memories":[{"id":"a","text":"t","pinned":"true"}]}', JSON),
        (b'{"memories":[{"id":"a","text":"t","memory_type":"bogus"}]}', JSON),
        (b'{"memories":[{"id":"a","text":"t","topics":"a"}]}', JSON),
        (b'{"memories":[{"id":"a","text":"t","created_at":null}]}', JSON),
    ],
)
def test_put_body_refusals(body: bytes, content_type: str | None) -> None:
    with pytest.raises(Unsupported):
        codec.parse_put(body, content_type, NOW)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
    ],
)
def test_json_content_types_accepted(content_type: str) -> None:
    assert codec.parse_put(b"{}", content_type, NOW).messages == []


def test_put_body_fields_and_scope() -> None:
    pb = codec.parse_put(
        b'{"messages":[{"role":"u","content":"c"}],"namespace":"n","user_id":"u",'
        b'"ttl_seconds":60,"tokens":-3,"session_id":"ignored","data":{"a":1.5,"b":4e-6}}',
        JSON,
        NOW,
    )
    assert (pb.namespace, pb.user_id, pb.ttl_seconds, pb.tokens) == ("n", "u", 60, -3)
    assert len(pb.messages) == 1
    doc = orjson.loads(pb.doc)
    assert doc["updated_at"] == int(NOW.timestamp()) and doc["data"] == {"a": 1.5, "b": 4e-6}
    out = codec.render_put("path-id", pb, b"[]", 0, Query())
    assert b'"session_id":"path-id"' in out and b'"data":{"a":1.5,"b":4e-6}' in out
