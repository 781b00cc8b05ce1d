"""``python -m proxy.localstack [VERSION ... | all]``: install the reference stack now
(tests and benchmarks then start in seconds). Without arguments it installs
``$AMP_UPSTREAM_VERSION`` (default ``DEFAULT_VERSION``); ``all`` installs every supported
version (``make stack`` does, since the tests run against each). Exits non-zero with one
clear sentence when it cannot."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from proxy.localstack.install import (
    SUPPORTED_VERSIONS,
    StackUnavailable,
    cache_root,
    ensure_stack,
    upstream_version,
)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if any(a.startswith("-") for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    versions = SUPPORTED_VERSIONS if args == ["all"] else (args or [upstream_version(os.environ)])
    for version in versions:
        try:
            stack = ensure_stack(cache_root(os.environ), version=version)
        except StackUnavailable as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"reference stack with agent-memory-server {version} ready in {stack.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
