"""Messages encoded once into the upstream's canonical JSON, and the ones refused."""

from typing import Any

import orjson
import pytest

from proxy import codec
from proxy.codec import Unsupported
from tests.codec.samples import NOW, ULID_RE


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
