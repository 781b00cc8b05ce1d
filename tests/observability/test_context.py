"""Request ids: a forked worker does not repeat its parent's."""

from __future__ import annotations

import os

from proxy.observability.context import new_request_id


def test_forked_child_generates_other_ids() -> None:
    read, write = os.pipe()
    parent = {new_request_id() for _ in range(3)}
    pid = os.fork()
    if pid == 0:  # the child: three ids, back through the pipe
        os.write(write, ",".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    child = set(os.read(read, 4096).decode().split(","))
    os.waitpid(pid, 0)
    os.close(read)
    assert child and not child & parent
    assert {i.split("-")[0] for i in child} != {i.split("-")[0] for i in parent}
