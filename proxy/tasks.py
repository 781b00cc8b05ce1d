"""Background tasks with a name and a strong reference, so none is garbage-collected
mid-run; and work on big inputs moved off the event loop (``OffLoop``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from functools import partial
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("proxy.tasks")
_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("task %s failed: %r", task.get_name(), exc, exc_info=exc)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has stopped.

    Cancels again while it runs on: a cancellation that lands inside a client library can
    come out as that library's own error (redis-py turns some into connection or timeout
    errors), which a task's loop then handles like any failure and carries on."""
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)


class OffLoop:
    """Runs a function inline for small inputs and in a thread for big ones.

    Parsing, hashing and token counting of a body of megabytes takes the event loop for
    seconds (every other request waits); in a thread it does not, as those release the
    GIL or share it. Small inputs stay inline: a thread hop costs more than their work."""

    def __init__(self, threshold_bytes: int, executor: Executor | None = None) -> None:
        self.threshold_bytes = threshold_bytes
        self.executor = executor  # None: the event loop's default executor

    async def __call__(self, size: int, fn: Callable[P, T], *args: P.args,
                       **kwargs: P.kwargs) -> T:
        if size > self.threshold_bytes:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)
