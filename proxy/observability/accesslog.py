"""The access log: one line per request, formatted here and written in batches.

Through ``logging`` an access line costs ~50 us of CPU (a LogRecord, a formatter, a lock
and a write with flush per line), as much as half a warm GET. Here a line is one f-string
(or one orjson call) appended to a list, and the list is written with one ``write`` at
most ``FLUSH_AFTER`` seconds later (or at ``FLUSH_LINES`` lines, or at shutdown), like
nginx's ``access_log ... buffer=``. Lines look exactly like the other log lines of the
chosen format (logs.py); they may trail the lines logged meanwhile by up to
``FLUSH_AFTER``.

``setup_logging`` installs the sink when the ``proxy.access`` logger is enabled for INFO;
without it (an application embedded elsewhere, tests) access lines go through ``logging``.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TextIO

import orjson

FLUSH_AFTER = 0.2  # seconds
FLUSH_LINES = 512
LOGGER = "proxy.access"


class AccessSink:
    def __init__(self, stream: TextIO, json: bool) -> None:
        self.stream = stream
        self.json = json
        self.pid = os.getpid()
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._timer: asyncio.TimerHandle | None = None

    def _time(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # formatting a date is the slow part: once a second
            self._second = second
            self._stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)) if self.json
                           else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))
        millis = int((now - second) * 1000)
        return f"{self._stamp}.{millis:03d}Z" if self.json else f"{self._stamp},{millis:03d}"

    def line(self, method: str, path: str, status: int, seconds: float, request_id: str,
             route: str) -> None:
        message = f"{method} {path} {status} {seconds * 1000:.1f}ms id={request_id}"
        if self.json:
            self._lines.append(orjson.dumps({
                "time": self._time(), "level": "INFO", "logger": LOGGER, "message": message,
                "pid": self.pid, "request_id": request_id, "route": route, "status": status,
                "duration_ms": round(seconds * 1000, 3)}).decode() + "\n")
        else:
            self._lines.append(f"{self._time()} INFO {LOGGER}: {message}\n")
        if len(self._lines) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_AFTER, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            self.stream.write("".join(lines))
            self.stream.flush()

    def forked(self) -> None:
        """In a forked worker: its own pid, none of the parent's pending lines."""
        self.pid = os.getpid()
        self._lines = []
        self._timer = None


_sink: AccessSink | None = None


def install(sink: AccessSink | None) -> None:
    global _sink
    _sink = sink


def sink() -> AccessSink | None:
    return _sink


def flush() -> None:
    if _sink is not None:
        _sink.flush()


def _after_fork() -> None:
    if _sink is not None:
        _sink.forked()


os.register_at_fork(after_in_child=_after_fork)
