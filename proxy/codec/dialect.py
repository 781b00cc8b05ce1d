"""The rules of the agent-memory-server version the proxy fronts, in one frozen object.

Everything that differs between supported upstream versions is a field of ``Dialect``;
the engine and the codec take it as a parameter and never ask which version runs.
Verified against the installed releases (0.15.2 with agent-memory-client 0.14.0, the
only client release the registry has):

=====================  =================================  ==================================
rule                   0.14.0                             0.15.2
=====================  =================================  ==================================
lookup_by_id           exact key only: else 404, DELETE   exact key first; else the search
                       a no-op                            index by id (+ the namespace and
                                                          user_id given): exactly one match
                                                          is used, none or several give 404
                                                          (DELETE: a no-op). GET, DELETE and
                                                          the prompt route alike
scope_from_store       GET: namespace = query,            GET: namespace and user_id =
                       user_id = stored                   ``stored or query``
comma_tags_unreadable  -                                  a memory with ``,`` in an item of
                                                          topics/entities/extracted_from is
                                                          client-shaped on PUT, and its
                                                          session reads as 404
summarization_switch   always summarizes                  ENABLE_WORKING_MEMORY_SUMMARIZATION
threshold_bounded      any SUMMARIZATION_THRESHOLD        0 < threshold <= 1 (else it does
                                                          not start)
=====================  =================================  ==================================

Unchanged between the two, so not rules: routes, status codes, bodies and their key order,
422 texts, the stored document, the list route (both list from the search index; 0.15.2
only stops writing the unread ``sessions:<ns>`` sorted sets, which the proxy never writes).
0.15.2 counts tokens as ``max(1, (len + 3) // 4)`` when tiktoken cannot load; the proxy
always has tiktoken, so it follows the normal path, as any upstream with its encoding does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from proxy.codec.querystring import Query
from proxy.codec.window import summarization_threshold

DEFAULT_THRESHOLD = 0.7  # the upstream's summarization_threshold default


@dataclass(frozen=True, slots=True)
class Dialect:
    """How the fronted upstream answers. ``summarization`` and ``threshold`` mirror the
    upstream's own ENABLE_WORKING_MEMORY_SUMMARIZATION and SUMMARIZATION_THRESHOLD."""

    version: str
    lookup_by_id: bool = False
    scope_from_store: bool = False
    comma_tags_unreadable: bool = False
    summarization_switch: bool = False
    threshold_bounded: bool = False
    summarization: bool = True
    threshold: float = DEFAULT_THRESHOLD
    confirmed: bool = True  # False: assumed until the upstream tells its version

    @property
    def summarizes(self) -> bool:
        """Whether a PUT over the threshold is summarized (so handed to the upstream)."""
        return self.summarization or not self.summarization_switch

    def would_summarize(self, tokens: int, query: Query) -> bool:
        """Whether a PUT of messages counting ``tokens`` in all is summarized (§6.4)."""
        return self.summarizes and tokens > summarization_threshold(query, self.threshold)

    def response_scope(self, stored_namespace: str | None, stored_user_id: str | None,
                       query_namespace: str | None, query_user_id: str | None
                       ) -> tuple[str | None, str | None]:
        """(namespace, user_id) of a GET answer."""
        if self.scope_from_store:
            return stored_namespace or query_namespace, stored_user_id or query_user_id
        return query_namespace, stored_user_id

    def readable(self, doc: bytes) -> bool:
        """Whether the upstream can read back a session whose stored document is ``doc``."""
        if not self.comma_tags_unreadable or not _LIST_FIELD.search(doc):
            return True  # the usual case costs one byte search, no parse
        memories = orjson.loads(doc).get("memories") or []
        return not any(has_comma_tag(m) for m in memories)

    def configured(self, summarization: bool, threshold: float) -> tuple[Dialect, list[str]]:
        """These rules with the upstream's summarization settings as the proxy was told
        them, and a warning for each one this version would not run with."""
        warnings = []
        if not summarization and not self.summarization_switch:
            warnings.append(f"agent-memory-server {self.version} always summarizes: "
                            "upstream_summarization=false is ignored")
            summarization = True
        if self.threshold_bounded and not 0 < threshold <= 1:
            warnings.append(f"agent-memory-server {self.version} does not start with "
                            f"SUMMARIZATION_THRESHOLD={threshold!r} (it must be in (0, 1]): "
                            f"assuming {DEFAULT_THRESHOLD}")
            threshold = DEFAULT_THRESHOLD
        return replace(self, summarization=summarization, threshold=threshold), warnings


V0_14 = Dialect("0.14.0")
V0_15 = Dialect("0.15.2", lookup_by_id=True, scope_from_store=True, comma_tags_unreadable=True,
                summarization_switch=True, threshold_bounded=True)
KNOWN: dict[str, Dialect] = {d.version: d for d in (V0_14, V0_15)}
NEWEST = V0_15

_LIST_FIELD = re.compile(rb'"(?:topics|entities|extracted_from)":\[')
_NUMBERS = re.compile(r"\d+")


def has_comma_tag(memory: object) -> bool:
    """0.15.2's MemoryRecord rejects a comma inside an item of these three lists."""
    if type(memory) is not dict:
        return False
    for key in ("topics", "entities", "extracted_from"):
        values = memory.get(key)
        if type(values) is list and any(type(v) is str and "," in v for v in values):
            return True
    return False


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in _NUMBERS.findall(version)[:3])


def for_version(version: str) -> tuple[Dialect, str | None]:
    """The rules for ``version``, and a warning naming what is assumed when it is not one
    this proxy knows: the known release of the nearest major.minor at or below it (0.15.0
    and 0.16.1 answer as 0.15.2; anything older or unreadable as the oldest)."""
    if version in KNOWN:
        return KNOWN[version], None
    series = _release(version)[:2]
    below = [d for d in KNOWN.values() if _release(d.version)[:2] <= series] if series else []
    assumed = max(below, key=lambda d: _release(d.version)) if below else V0_14
    return assumed, (f"agent-memory-server {version!r} is not a version this proxy knows "
                     f"(supported: {', '.join(KNOWN)}); answering as {assumed.version}")


def imported_scope(logical: Callable[[str, str | None, str | None], str], session_id: str,
                   query: tuple[str | None, str | None], answer: tuple[str | None, str | None]
                   ) -> tuple[str | None, str | None] | None:
    """The stored (namespace, user_id) of the document a ``stored or query`` GET
    answered with ``answer`` for ``query``, when it lies at the queried key; None when
    the answer must have come from the lookup by id (another key).

    A value equal to the query's may be the query's own (the document holding none), so
    both are tried, the stored value first."""
    want = logical(session_id, *query)
    options = [[a] if a != q else [a, None] for a, q in zip(answer, query, strict=True)]
    for namespace in options[0]:
        for user_id in options[1]:
            if logical(session_id, namespace, user_id) == want:
                return namespace, user_id
    return None


__all__ = ["DEFAULT_THRESHOLD", "Dialect", "KNOWN", "NEWEST", "V0_14", "V0_15",
           "for_version", "has_comma_tag", "imported_scope"]
