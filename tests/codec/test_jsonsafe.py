"""Free-form values the fast path can store and echo exactly, and the ones it refuses."""

from __future__ import annotations

import pytest

from proxy.codec import jsonsafe
from proxy.errors import Unsupported


def test_64_bit_integers_and_plain_floats_pass() -> None:
    jsonsafe.check_value({"a": [jsonsafe.I64_MAX, jsonsafe.I64_MIN, 1.5, None, "s", True]})


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, {"deep": [float(2**64)]}])
def test_values_beyond_64_bits_are_unsupported(value: object) -> None:
    with pytest.raises(Unsupported):
        jsonsafe.check_value(value)


def test_deep_nesting_is_walked_without_recursion() -> None:
    value: object = 2**70
    for _ in range(5000):
        value = [value]
    with pytest.raises(Unsupported):
        jsonsafe.check_value(value)


def test_optional_str() -> None:
    assert jsonsafe.optional_str(None, "x") is None
    assert jsonsafe.optional_str("v", "x") == "v"
    with pytest.raises(Unsupported, match="^user_id is not a string$"):
        jsonsafe.optional_str(3, "user_id")
