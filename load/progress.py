"""A progress bar for the benchmark: tqdm when it is installed, else a plain one on stderr."""

from __future__ import annotations

import importlib
import sys
from typing import Any


class Progress:
    """tqdm when it is installed, else a plain bar on stderr."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.label = total, 0, ""
        self._bar: Any = None
        try:
            tqdm = importlib.import_module("tqdm").tqdm
            self._bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    def describe(self, label: str) -> None:
        self.label = label
        if self._bar is not None:
            self._bar.set_description(label)
        else:
            self._draw()

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + n)
        if self._bar is not None:
            self._bar.update(n)
        else:
            self._draw()

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / max(1, self.total))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] "
                         f"{100 * self.done / max(1, self.total):5.1f}% {self.label:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
