"""Query strings as the upstream reads them: last value wins, lax integers, refusals."""


import pytest

from proxy import codec
from proxy.codec import Query, Unsupported


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
