"""Part e) of the benchmark: the upstream sync, on (the default) against off.

The proxy measured everywhere else runs with the sync on and hands its sessions to an
upstream of its own (``sync-upstream``), so that its hand-overs never land on the upstream
measured side by side with it; a second proxy (``proxy-nosync``) runs with
``upstream_sync = false``. This section sets their Locust rows side by side and reports
what the sync did: hand-overs by result, round times, the lag at the end, and the CPU the
sync's upstream spent taking the hand-overs.
"""

from __future__ import annotations

import os
import re
import urllib.request
from dataclasses import dataclass

from load.locustrun import LocustRow

SYNCED, UNSYNCED = "proxy", "proxy-nosync"
_SAMPLE = re.compile(r'^amp_sync_(\w+?)(?:\{result="(\w+)"\})? (\S+)$')


@dataclass(frozen=True)
class SyncFigures:
    results: dict[str, float]  # rounds by result (ok: handed over)
    rounds: float
    round_s: float  # seconds in rounds, all together
    lag_s: float  # at the end of the run
    backlog: float
    upstream_cpu_s: float  # the sync's upstream over the whole run
    wall_s: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_figures(proxy_url: str, upstream_pid: int, cpu_before: float,
                 wall_s: float) -> SyncFigures:
    with urllib.request.urlopen(proxy_url + "/-/metrics", timeout=10) as resp:
        text = resp.read().decode()
    results: dict[str, float] = {}
    single: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == "handovers_total" and m.group(2):
            results[m.group(2)] = float(m.group(3))
        elif m and not m.group(2):
            single[m.group(1)] = float(m.group(3))
    return SyncFigures(results, single.get("round_duration_seconds_count", 0.0),
                       single.get("round_duration_seconds_sum", 0.0),
                       single.get("lag_seconds", 0.0), single.get("backlog_sessions", 0.0),
                       cpu_seconds(upstream_pid) - cpu_before, wall_s)


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def sync_section(figures: SyncFigures | None, rows: list[LocustRow]) -> list[str]:
    out = ["## e) The upstream sync: on (the default) against off", "",
           f"`{SYNCED}` hands every session it changes to its own upstream behind the hot "
           f"path (`sync_quiet_ms` 1000, `sync_max_lag_ms` 10000, `sync_concurrency` 2, the "
           f"defaults); `{UNSYNCED}` runs with `upstream_sync = false`. Both share this "
           "machine's cores with the upstreams, so the sync's upstream work competes with the "
           "proxy it serves here, as it would not across machines.", ""]
    by = {(r.target, r.user_class, r.users, r.kind): r for r in rows if "seed" not in r.name}
    table = ["| users | request | sync on p50 | p95 | p99 | sync off p50 | p95 | p99 |",
             "|---|---|---|---|---|---|---|---|"]
    for (target, user_class, users, kind), on in sorted(by.items()):
        off = by.get((UNSYNCED, user_class, users, kind))
        if target != SYNCED or off is None:
            continue
        table.append(f"| {users} | {kind} | {_ms(on.p50)} | {_ms(on.p95)} | {_ms(on.p99)} | "
                     f"{_ms(off.p50)} | {_ms(off.p95)} | {_ms(off.p99)} |")
    out += table + [""]
    if figures is None:
        return out + ["The sync's figures could not be read.", ""]
    f = figures
    ok = f.results.get("ok", 0.0)
    mean = f.round_s / f.rounds * 1000 if f.rounds else 0.0
    out += [f"- hand-overs: {ok:.0f} ({ok / f.wall_s:.2f}/s over the {f.wall_s:.0f} s run); "
            "rounds by result: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(f.results.items())),
            f"- rounds: {f.rounds:.0f}, {mean:.0f} ms on average (a GET of the upstream's copy, "
            "a PUT when it differs)",
            f"- at the end: backlog {f.backlog:.0f} sessions, lag {f.lag_s:.1f} s",
            f"- the sync's upstream spent {f.upstream_cpu_s:.1f} s of CPU "
            f"({f.upstream_cpu_s / f.wall_s:.2f} cores on average) taking them", ""]
    return out
