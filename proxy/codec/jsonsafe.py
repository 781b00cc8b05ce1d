"""Free-form JSON values (``data``, strategy configs) the fast path can store and echo exactly.

orjson turns integer literals beyond 64 bits into floats, where the upstream's ``json.loads``
keeps them exact; RedisJSON keeps only signed 64-bit integers. Values that could hit either
difference are ``Unsupported``. Floats render identically in orjson and Pydantic.

RedisJSON refuses a document nested deeper than ``STORED_DEPTH`` containers (the root
counts): the upstream then answers 500 and stores nothing. Values that would take the
session document past it are ``Unsupported`` too, so the upstream gives that answer.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import Unsupported

I64_MIN = -(2**63)  # RedisJSON and the scripts keep signed 64-bit integers
I64_MAX = 2**63 - 1
_BIG_FLOAT = float(2**63)
MISSING: Any = object()  # a key absent from a body (None is a value there)
STORED_DEPTH = 127  # containers deep a stored document may be (measured against 0.14.0)


def optional_str(value: object, what: str) -> str | None:
    """``value`` when it is a string or None; else Unsupported naming ``what``."""
    if value is not None and type(value) is not str:
        raise Unsupported(f"{what} is not a string")
    return value


def check_value(value: object, max_depth: int | None = None) -> None:
    """Walk ``value`` (iteratively: orjson allows deeper nesting than Python's recursion);
    ``max_depth``: the containers deep it may be (``value`` itself counts)."""
    limit = max_depth if max_depth is not None else 1 << 30
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, int):  # bool too, harmlessly
            if not I64_MIN <= v <= I64_MAX:
                raise Unsupported("integer outside 64 bits")
        elif isinstance(v, float):
            if abs(v) >= _BIG_FLOAT and v.is_integer():
                raise Unsupported("float that may be a big integer literal")
        elif isinstance(v, list | dict):
            if depth > limit:
                raise Unsupported("nested deeper than RedisJSON stores")
            children = v.values() if isinstance(v, dict) else v
            stack.extend((child, depth + 1) for child in children)
