"""Logging set-up: the text format (default) or JSON, one object per line.

A JSON line holds time (UTC, ISO 8601), level, logger, message, pid, the request id when
the line was logged while serving a request, and, on access lines, route, status and
duration_ms; an exception's traceback goes under "exception".
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy.observability import accesslog, context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_FIELDS = ("route", "status", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker, under serve --workers
        }
        rid = getattr(record, "request_id", None) or context.current.get()
        if rid is not None:
            line["request_id"] = rid
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger once, for the whole process (replacing any handler)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Access lines skip logging's per-record cost when they are on (accesslog.py).
    on = logging.getLogger(accesslog.LOGGER).isEnabledFor(logging.INFO)
    accesslog.install(accesslog.AccessSink(sys.stderr, fmt == "json") if on else None)
