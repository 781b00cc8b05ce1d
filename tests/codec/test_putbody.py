"""PUT bodies: refusals, JSON content types, session-level fields and scope."""


import orjson
import pytest

from proxy import codec
from proxy.codec import Query, Unsupported
from tests.codec.samples import JSON, NOW


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
        (b'{"tokens":null}', JSON),  # a 422 upstream (tokens is an int, 0 when absent)
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


def test_absent_and_null_ints_read_as_the_upstream_reads_them() -> None:
    """``ttl_seconds`` may be null (no TTL); ``tokens`` defaults to 0 when absent, but an
    explicit null is refused (above), as the upstream's 422 refuses it."""
    pb = codec.parse_put(b'{"ttl_seconds":null}', JSON, NOW)
    assert (pb.ttl_seconds, pb.tokens) == (None, 0)


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
