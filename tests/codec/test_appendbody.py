"""The append endpoint's body and answer."""

from __future__ import annotations

import orjson
import pytest

from proxy.codec.appendbody import AppendBody, parse_append, render_append
from proxy.errors import InvalidRequest


def test_parse() -> None:
    raw = orjson.dumps({"messages": [{"role": "user", "content": "hi"}], "namespace": "ns"})
    assert parse_append(raw) == AppendBody([{"role": "user", "content": "hi"}], "ns", None)


@pytest.mark.parametrize(("raw", "detail"), [
    (b"{", "body is not valid JSON"),
    (b"[]", 'body must be an object with a "messages" list'),
    (b'{"messages": {}}', 'body must be an object with a "messages" list'),
    (b'{"messages": [], "user_id": 3}', "namespace and user_id must be strings or null"),
])
def test_refusals_are_422_with_a_reason(raw: bytes, detail: str) -> None:
    with pytest.raises(InvalidRequest, match=detail) as caught:
        parse_append(raw)
    assert caught.value.status == 422


def test_render() -> None:
    out = orjson.loads(render_append("s", None, "u", 3, (1.5, None)))
    assert out == {"session_id": "s", "namespace": None, "user_id": "u", "message_count": 3,
                   "context_percentage_total_used": 1.5,
                   "context_percentage_until_summarization": None}
