"""Background task helpers."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from proxy.tasks import OffLoop, cancel_and_wait, spawn


async def test_cancel_and_wait_outlasts_a_task_that_swallows_a_cancellation() -> None:
    rounds: list[str] = []

    async def stubborn() -> None:
        # Like a reconnect loop whose client library turned the cancellation into its own
        # error: it handles that as a failure and carries on.
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if rounds:
                    raise
                rounds.append("swallowed")
                continue

    task = spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    stopping = spawn(cancel_and_wait(task), name="stopping")
    done, _ = await asyncio.wait({stopping}, timeout=5)  # (wait_for would cancel again)
    try:
        assert stopping in done, "cancel_and_wait hung on a task that swallowed a cancel"
        assert task.cancelled() and rounds == ["swallowed"]
    finally:
        task.cancel()
        stopping.cancel()


async def test_cancel_and_wait_accepts_none_and_finished_tasks() -> None:
    await cancel_and_wait(None)
    task = spawn(asyncio.sleep(0), name="quick")
    await task
    await cancel_and_wait(task)
    assert task.done() and not task.cancelled()


async def test_off_loop_runs_small_inputs_inline_and_big_ones_in_its_executor() -> None:
    with ThreadPoolExecutor(1, thread_name_prefix="off-loop-test") as pool:
        off_loop = OffLoop(100, pool)

        def where(tag: str, *, suffix: str) -> str:
            return f"{tag}{suffix}:{threading.current_thread().name}"

        assert await off_loop(100, where, "small", suffix="!") == "small!:MainThread"
        big = await off_loop(101, where, "big", suffix="?")
        assert big.startswith("big?:off-loop-test")
    assert (await OffLoop(0)(1, where, "x", suffix="")) != "x:MainThread"  # default executor
