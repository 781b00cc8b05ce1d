"""Context-window arithmetic: percentages, truncation, summarization thresholds (§6.2, §6.3)."""


import pytest

from proxy import codec
from proxy.codec import Query
from tests.codec.samples import JSON, NOW


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
