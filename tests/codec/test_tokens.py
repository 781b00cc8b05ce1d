import threading

import pytest

from proxy.codec.tokens import count_text, count_tokens
from proxy.errors import Unsupported


def test_counts_role_and_content_as_the_upstream() -> None:
    # contract §6.1: "user: Hello there" is 4 tokens
    assert count_tokens("user", "Hello there") == 4


def test_examples_used_by_the_contract_e4() -> None:
    # E4's messages total 16 tokens (7 + 5 + 4), as the percentages 16.0 show
    counts = [
        count_tokens("user", "one two three four five"),
        count_tokens("assistant", "six seven eight"),
        count_tokens("user", "nine ten"),
    ]
    assert counts == [7, 5, 4]


def test_empty_role_still_counts_the_separator() -> None:
    assert count_tokens("", "x") == count_text(": x")


def test_special_token_text_is_left_to_the_upstream() -> None:
    # tiktoken's default encode() refuses special tokens; the upstream answers 500
    with pytest.raises(Unsupported):
        count_tokens("user", "a <|endoftext|> b")
    assert count_tokens("user", "a <|endoftext b") > 0


def test_concurrent_first_use_loads_once() -> None:
    results: list[int] = []

    def work() -> None:
        results.append(count_tokens("user", "Hello there"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [4] * 8
