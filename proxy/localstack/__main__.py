"""``python -m proxy.localstack``: install the reference stack now (tests and benchmarks
then start in seconds). Exits non-zero with one clear sentence when it cannot."""

from __future__ import annotations

import logging
import os
import sys

from proxy.localstack.install import StackUnavailable, cache_root, ensure_stack


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        stack = ensure_stack(cache_root(os.environ))
    except StackUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"reference stack ready in {stack.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
