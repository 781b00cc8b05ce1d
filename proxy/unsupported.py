"""The one signal of the codec layer: "let the upstream answer this request"."""

from __future__ import annotations


class Unsupported(Exception):
    """The request is not one the fast path can answer exactly as the upstream would
    (invalid, or valid but unusual). The caller hands it to the upstream instead."""
