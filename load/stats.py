"""Percentiles and the size table computed from the raw samples."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from load.sampling import Sample

SIZE_COLUMNS = ("op", "size", "target", "n", "errors", "p50_ms", "p95_ms", "p99_ms",
                "mean_messages")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Stat:
    op: str
    size: int
    target: str
    n: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_messages: float


def size_table(samples: Iterable[Sample]) -> list[Stat]:
    """One row per (operation, nominal size, target): percentiles of the successful samples."""
    ok: dict[tuple[str, int, str], list[Sample]] = defaultdict(list)
    errors: dict[tuple[str, int, str], int] = defaultdict(int)
    for s in samples:
        key = (s.op, s.size, s.target)
        if s.status == 200:
            ok[key].append(s)
        else:
            errors[key] += 1
    rows = []
    for key in sorted(set(ok) | set(errors), key=lambda k: (k[0], k[1], k[2])):
        group = ok.get(key, [])
        ms = [s.ms for s in group]
        mean_messages = sum(s.messages for s in group) / len(group) if group else math.nan
        rows.append(Stat(key[0], key[1], key[2], len(group), errors.get(key, 0),
                         percentile(ms, 50), percentile(ms, 95), percentile(ms, 99),
                         mean_messages))
    return rows


def lookup(table: Iterable[Stat]) -> dict[tuple[str, int, str], Stat]:
    return {(r.op, r.size, r.target): r for r in table}


def write_samples_csv(samples: Iterable[Sample], path: Path) -> None:
    names = [f.name for f in fields(Sample)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
        w.writeheader()
        for s in samples:
            row = asdict(s)
            row["ms"] = f"{s.ms:.3f}"
            w.writerow(row)


def read_samples_csv(path: Path) -> list[Sample]:
    with open(path, newline="") as f:
        return [Sample(r["target"], r["op"], int(r["size"]), int(r["messages"]),
                       int(r["seq"]), float(r["ms"]), int(r["status"]), int(r["nbytes"]))
                for r in csv.DictReader(f)]
