"""The local reference stack: Redis Stack and agent-memory-server (0.14.0 or 0.15.2),
installed and run by the project itself so that a fresh machine needs only Python and the
package registries."""

from proxy.localstack.install import (
    DEFAULT_VERSION,
    RUN_VERSION,
    SUPPORTED_VERSIONS,
    Stack,
    StackUnavailable,
    cache_root,
    ensure_stack,
    run_version,
    upstream_version,
)
from proxy.localstack.processes import (
    ProcessGroup,
    Service,
    add_token,
    free_port,
    reported_version,
    run_upstream_cli,
    start_redis,
    start_upstream,
)

__all__ = [
    "DEFAULT_VERSION", "RUN_VERSION", "SUPPORTED_VERSIONS", "ProcessGroup", "Service", "Stack",
    "StackUnavailable", "add_token", "cache_root", "ensure_stack", "free_port",
    "reported_version", "run_upstream_cli", "run_version", "start_redis", "start_upstream",
    "upstream_version",
]
