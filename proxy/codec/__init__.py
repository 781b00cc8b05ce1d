"""The fast path's codec: validate a PUT, encode messages once, render responses as bytes.

Pure functions, no I/O. A request is either answered byte-for-byte as the upstream would
answer it, or refused with ``Unsupported`` so the upstream answers it. This package's
namespace is the facade the engine uses; the pieces live in ``messages``, ``putbody``,
``appendbody``, ``memories``, ``querystring``, ``window``, ``timestamps``, ``tokens`` and
``render``.
"""

from proxy.codec.appendbody import AppendBody, parse_append, render_append
from proxy.codec.messages import EncodedMessage, encode_message, encode_messages
from proxy.codec.putbody import PutBody, parse_put
from proxy.codec.querystring import MODEL_WINDOWS, Query, Route, lax_int, parse_query
from proxy.codec.render import (
    import_upstream_document,
    ingest_upstream_put_response,
    join_messages,
    render_get,
    render_put,
)
from proxy.codec.window import (
    percentages,
    summarization_limit,
    summarization_threshold,
    truncate_count,
    truncation_limit,
)
from proxy.errors import Unsupported

__all__ = [
    "AppendBody",
    "parse_append",
    "render_append",
    "MODEL_WINDOWS",
    "EncodedMessage",
    "PutBody",
    "Query",
    "Route",
    "Unsupported",
    "encode_message",
    "encode_messages",
    "import_upstream_document",
    "ingest_upstream_put_response",
    "join_messages",
    "lax_int",
    "parse_put",
    "parse_query",
    "percentages",
    "render_get",
    "render_put",
    "summarization_limit",
    "summarization_threshold",
    "truncate_count",
    "truncation_limit",
]
