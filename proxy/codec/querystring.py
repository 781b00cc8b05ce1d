"""Query parameters of the working-memory routes, read as FastAPI reads them (contract §1, §3).

The last repeated value wins; parameters a route does not declare are ignored. Anything
the upstream would answer with 422 raises ``Unsupported`` so that the upstream writes the
error body itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from proxy.errors import Unsupported

Route = Literal["get", "put", "delete", "list"]

# ModelNameLiteral of 0.14.0, with the window MODEL_CONFIGS gives each (§3.2).
MODEL_WINDOWS: dict[str, int] = {
    "gpt-4.1": 128000,
    "gpt-4.1-mini": 128000,
    "gpt-3.5-turbo": 4096,
    "gpt-3.5-turbo-16k": 16384,
    "gpt-4": 8192,
    "gpt-4-32k": 32768,
    "gpt-4o": 128000,
    "gpt-4o-mini": 128000,
    "o1": 200000,
    "o1-mini": 128000,
    "o3-mini": 200000,
    "gpt-5-mini": 400000,
    "gpt-5-nano": 400000,
    "gpt-5.1-chat-latest": 128000,
    "gpt-5.2-chat-latest": 128000,
    "text-embedding-ada-002": 8191,
    "text-embedding-3-small": 8191,
    "text-embedding-3-large": 8191,
    "claude-3-opus-20240229": 200000,
    "claude-3-sonnet-20240229": 200000,
    "claude-3-haiku-20240307": 200000,
    "claude-3-5-sonnet-20240620": 200000,
    "claude-3-7-sonnet-20250219": 200000,
    "claude-3-5-sonnet-20241022": 200000,
    "claude-3-5-haiku-20241022": 200000,
    "claude-3-7-sonnet-latest": 200000,
    "claude-3-5-sonnet-latest": 200000,
    "claude-3-5-haiku-latest": 200000,
    "claude-3-opus-latest": 200000,
    "claude-sonnet-4-5-20250929": 200000,
    "claude-haiku-4-5-20251001": 200000,
    "claude-opus-4-5-20251101": 200000,
    "claude-sonnet-4-5": 200000,
    "claude-haiku-4-5": 200000,
    "claude-opus-4-5": 200000,
}

# Pydantic's lax int from a string: surrounding Unicode whitespace (Rust's
# ``char::is_whitespace``) is ignored, single "_" may separate digits, and a fraction of
# zeros is allowed. Big values are fine: window.py repeats the upstream's own int and
# float expressions. Bounded below float overflow (1e308), where the upstream fails.
_LAX_INT = re.compile(r"[+-]?[0-9](?:_?[0-9])*(?:\.0+)?")
MAX_DIGITS = 4300  # pydantic's int_parsing_size (and Python's int(str) limit)
_WHITESPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005" \
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

_DECLARED: dict[Route, tuple[str, ...]] = {
    "get": (
        "user_id",
        "namespace",
        "model_name",
        "context_window_max",
        "recent_messages_limit",
    ),
    "put": ("model_name", "context_window_max"),
    "delete": ("user_id", "namespace"),
    "list": ("limit", "offset", "namespace", "user_id"),
}


class MultiMapping(Protocol):
    def getall(self, key: str) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class Query:
    model_name: str | None = None
    context_window_max: int | None = None
    recent_messages_limit: int | None = None
    namespace: str | None = None
    user_id: str | None = None
    limit: int = 20
    offset: int = 0

    @property
    def model_window(self) -> int | None:
        return None if self.model_name is None else MODEL_WINDOWS[self.model_name]


def lax_int(text: str) -> int:
    """Pydantic's lax int from a query string: "03", "+3", " 2.0", "1_0" pass; "2.5", ""
    do not."""
    text = text.strip(_WHITESPACE)
    if _LAX_INT.fullmatch(text) is None:
        raise Unsupported(f"not a plain integer: {text!r}")
    whole = text.split(".", 1)[0]
    if len(whole) - whole.count("_") - (whole[0] in "+-") > MAX_DIGITS:
        raise Unsupported("more digits than pydantic parses")
    return int(whole)


def _last(query: Mapping[str, str] | MultiMapping, name: str) -> str | None:
    getall = getattr(query, "getall", None)
    if getall is not None:
        values: list[str] = getall(name, [])
        return values[-1] if values else None
    assert isinstance(query, Mapping)
    return query.get(name)


def parse_query(query: Mapping[str, str] | MultiMapping, route: Route) -> Query:
    """The declared parameters of ``route``; raises Unsupported where the upstream gives 422."""
    raw = {name: _last(query, name) for name in _DECLARED[route]}
    model_name = raw.get("model_name")
    if model_name is not None and model_name not in MODEL_WINDOWS:
        raise Unsupported("model_name not in the literal list")
    ints: dict[str, int | None] = {}
    for name in ("context_window_max", "recent_messages_limit", "limit", "offset"):
        text = raw.get(name)
        ints[name] = None if text is None else lax_int(text)
    limit = ints["limit"]
    offset = ints["offset"]
    if limit is not None and not 1 <= limit <= 100:
        raise Unsupported("limit out of range")
    if offset is not None and offset < 0:
        raise Unsupported("offset out of range")
    return Query(
        model_name=model_name,
        context_window_max=ints["context_window_max"],
        recent_messages_limit=ints["recent_messages_limit"],
        namespace=raw.get("namespace"),
        user_id=raw.get("user_id"),
        limit=20 if limit is None else limit,
        offset=0 if offset is None else offset,
    )
