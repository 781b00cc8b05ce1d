"""A TCP fault proxy for tests: forwards 127.0.0.1:<port> to a target and, switched at run
time, delays the traffic, holds it, or cuts it.

- ``set_latency(s)``: every chunk reaches the other side ``s`` seconds after it arrived
  (towards the target; ``to_client`` for replies). Chunks keep their order and are not
  serialized behind each other's delay, so a pipeline split over several reads costs
  one delay, as on a slow link; a request/response client pays it once per command.
- ``pause()`` / ``resume()``: hold every byte (connections stay open, new ones are
  accepted and held too), then deliver what was held, in order.
- ``cut()``: drop every connection and stop listening, so connecting is refused at once
  ("down"); ``restore()`` listens again on the same port and undoes every fault.

It runs its own event loop in its own thread. Every method is thread-safe and returns
once the change is in effect (a thread hop of well under a millisecond), so it can be
called from async tests, whose loop it blocks for no longer than that, and from threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")
CHUNK = 65536


class FaultProxy:
    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self.accepted = 0  # connections accepted since start
        self._delay = {"up": 0.0, "down": 0.0}
        self._cut = False
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy",
                                        daemon=True)

    @classmethod
    def to_url(cls, url: str) -> FaultProxy:
        """A proxy in front of ``redis://host:port`` (or any scheme://host:port)."""
        parts = urlsplit(url)
        assert parts.hostname and parts.port, url
        return cls(parts.hostname, parts.port)

    def url(self, scheme: str = "redis") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._thread.start()
        self._run(self._set_flowing(True))
        self._run(self._listen())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- faults -------------------------------------------------------------------------

    def set_latency(self, to_target: float, to_client: float = 0.0) -> None:
        self._run(self._set_delay(to_target, to_client))

    def pause(self) -> None:
        self._run(self._set_flowing(False))

    def resume(self) -> None:
        self._run(self._set_flowing(True))

    def cut(self) -> None:
        self._run(self._drop_all())

    def restore(self) -> None:
        """Undo every fault: no latency, traffic flowing, listening again."""
        self._run(self._set_delay(0.0, 0.0))
        self._run(self._set_flowing(True))
        self._run(self._listen())

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- inside the proxy's loop ----------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("FaultProxy methods are for other threads than its own")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _set_delay(self, up: float, down: float) -> None:
        self._delay = {"up": up, "down": down}

    async def _set_flowing(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _listen(self) -> None:
        self._cut = False
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                      reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _drop_all(self) -> None:
        self._cut = True
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, target in list(self._links):
            client.transport.abort()
            target.transport.abort()

    async def _shutdown(self) -> None:
        await self._drop_all()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.accepted += 1
        try:
            if self._cut:
                return
            try:
                target_reader, target_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            link = (client_writer, target_writer)
            self._links.add(link)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pipe(client_reader, target_writer, "up", link))
                    group.create_task(self._pipe(target_reader, client_writer, "down", link))
            finally:
                self._links.discard(link)
                target_writer.close()
        finally:
            client_writer.close()
            self._handlers.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str,
                    link: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        """Forward one direction: a reader stamps each chunk with its due time, a writer
        delivers it then (and only while flowing); EOF is passed on, an error ends both."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                while data := await reader.read(CHUNK):
                    queue.put_nowait((loop.time() + self._delay[direction], data))
            except (ConnectionError, OSError):
                pass
            queue.put_nowait(None)

        async def write() -> None:
            try:
                while (item := await queue.get()) is not None:
                    due, data = item
                    if (wait := due - loop.time()) > 0:
                        await asyncio.sleep(wait)
                    await self._flowing.wait()
                    writer.write(data)
                    await writer.drain()
                await self._flowing.wait()
                if writer.can_write_eof() and not writer.is_closing():
                    writer.write_eof()
            except (ConnectionError, OSError):
                for w in link:
                    w.transport.abort()

        async with asyncio.TaskGroup() as group:
            group.create_task(read())
            group.create_task(write())


@contextlib.contextmanager
def fault_proxy(url: str) -> Iterator[FaultProxy]:
    """``with fault_proxy(redis_url) as fp:`` connect to ``fp.url()`` instead."""
    proxy = FaultProxy.to_url(url).start()
    try:
        yield proxy
    finally:
        proxy.stop()
