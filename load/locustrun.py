"""Part b) of the benchmark: headless Locust runs of ``load/locustfile.py`` as subprocesses."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from load.stats import percentile

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")


@dataclass(frozen=True)
class LocustRow:
    target: str
    user_class: str
    users: int
    name: str  # request name, e.g. "PUT full [1k-2k]"
    count: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    rps: float

    @property
    def kind(self) -> str:
        """The request name without its bucket: "PUT full"."""
        return self.name.split(" [")[0]

    @property
    def bucket(self) -> str:
        return self.name.split(" [")[1].rstrip("]") if " [" in self.name else ""


def locust_exe() -> list[str]:
    exe = Path(sys.executable).with_name("locust")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "locust"]


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def read_timings(path: Path) -> dict[str, list[float]]:
    """Exact response times (ms) by request name, as ``AMP_LOAD_TIMINGS`` wrote them."""
    found: dict[str, list[float]] = {}
    if path.exists():
        with open(path, newline="") as f:
            for name, ms in csv.reader(f):
                found.setdefault(name, []).append(float(ms))
    return found


def parse_stats(path: Path, target: str, user_class: str, users: int,
                timings: dict[str, list[float]] | None = None) -> list[LocustRow]:
    """Locust's per-name statistics; counts and percentiles from ``timings`` where it has
    the name (Locust's own percentiles are rounded to whole milliseconds, and its CSV can
    miss the requests of a run's last second)."""
    rows: list[LocustRow] = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            if rec["Name"] == "Aggregated":
                continue
            exact = (timings or {}).get(rec["Name"])
            p50, p95, p99 = ([percentile(exact, q) for q in (50, 95, 99)] if exact else
                             [_num(rec["50%"]), _num(rec["95%"]), _num(rec["99%"])])
            count = len(exact) if exact else int(rec["Request Count"])
            rows.append(LocustRow(
                target, user_class, users, rec["Name"], count,
                int(rec["Failure Count"]), p50, p95, p99, float(rec["Requests/s"] or 0.0),
            ))
    return rows


def run_locust(host: str, target: str, user_class: str, users: int, seconds: int,
               out_dir: Path, seed: int, max_messages: int, think_s: float = 0.0
               ) -> list[LocustRow]:
    """One headless run; returns its per-request-name statistics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / f"{target}-{user_class}-{users}u"
    cmd = [*locust_exe(), "-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r",
           str(users), "-t", f"{seconds}s", "--host", host, "--csv", str(prefix),
           "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING",
           "--exit-code-on-error", "0", user_class]
    timings = prefix.with_suffix(".timings.csv")
    env = {**os.environ, "AMP_LOAD_SEED": str(seed), "AMP_LOAD_MAX": str(max_messages),
           "AMP_LOAD_WAIT": str(think_s), "AMP_LOAD_TIMINGS": str(timings)}
    env.pop("AMP_LOAD_SHAPE", None)
    with open(prefix.with_suffix(".log"), "wb") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                              stdin=subprocess.DEVNULL, timeout=seconds + 120, check=False)
    stats = Path(f"{prefix}_stats.csv")
    if proc.returncode != 0 or not stats.exists():
        tail = prefix.with_suffix(".log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"locust exited {proc.returncode} for {target} {user_class} "
                           f"{users}u:\n{tail}")
    return parse_stats(stats, target, user_class, users, read_timings(timings))
