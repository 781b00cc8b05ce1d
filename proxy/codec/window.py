"""Context-window arithmetic of the upstream: truncation, percentages, summarization (§6).

Each function repeats the upstream's expression order, because the percentages are
IEEE doubles rendered to the last digit (``7 / 100 * 100.0 == 7.000000000000001``).
"""

from __future__ import annotations

from proxy.codec.querystring import Query

SUMMARIZATION_THRESHOLD = 0.7  # upstream setting summarization_threshold
DEFAULT_PUT_LIMIT = 16000  # _get_effective_token_limit without model information


def truncation_limit(query: Query) -> int | None:
    """GET truncation limit L (§6.2), or None when GET does not truncate.

    ``context_window_max=0`` alone counts as not given; with a model name it is L=0.
    """
    if not (query.model_name or query.context_window_max):
        return None
    if query.context_window_max is not None:
        return query.context_window_max
    return query.model_window


def summarization_limit(query: Query) -> int:
    """The PUT limit of §6.4: context_window_max, else the model's window, else 16000."""
    if query.context_window_max is not None:
        return query.context_window_max
    window = query.model_window
    return DEFAULT_PUT_LIMIT if window is None else window


def summarization_threshold(query: Query, ratio: float = SUMMARIZATION_THRESHOLD) -> int:
    """Summarization triggers on a PUT whose message tokens exceed this value
    (``ratio``: the upstream's summarization_threshold setting)."""
    return int(summarization_limit(query) * ratio)


def percentages(tokens: int, has_messages: bool, query: Query,
                ratio: float = SUMMARIZATION_THRESHOLD,
                ) -> tuple[float | None, float | None]:
    """(context_percentage_total_used, context_percentage_until_summarization), §6.3.
    Computed with the upstream's summarization_threshold even where it never summarizes."""
    if not query.model_name and not query.context_window_max:
        return None, None
    if not has_messages:
        return 0.0, 0.0
    max_tokens = summarization_limit(query)
    if max_tokens <= 0:
        return None, None
    total = (tokens / max_tokens) * 100.0
    threshold = int(max_tokens * ratio)
    until = 100.0 if threshold <= 0 else (tokens / threshold) * 100.0
    return min(total, 100.0), min(until, 100.0)


def truncate_count(token_counts: list[int], limit: int) -> int:
    """How many of the oldest messages GET drops: until the rest fit ``limit`` or one is left."""
    total = sum(token_counts)
    dropped = 0
    while total > limit and len(token_counts) - dropped > 1:
        total -= token_counts[dropped]
        dropped += 1
    return dropped
