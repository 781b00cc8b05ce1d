"""Write the benchmark's results: the markdown report and the latency-against-size plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from load.locustrun import LocustRow
from load.profile import Profile
from load.stats import Stat, lookup
from load.verdicts import Verdict, concurrency_ratios

OP_LABELS = {"get_recent": "GET recent (limit 20)", "get_full": "GET full",
             "put_full": "PUT full session (+2 messages)", "append": "POST append (+2 messages)"}
FLOORED = ("get_recent", "put_full")  # also timed against the floor (load/floor.py)


@dataclass
class Meta:
    date: str
    mode: str
    commit: str
    machine: str
    wall_s: float
    gap_s: float  # the idle pause before every part a) sample
    notes: list[str] = field(default_factory=list)


def _ms(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _x(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}x"


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def size_section(table: list[Stat], gap_s: float) -> list[str]:
    t = lookup(table)
    sizes = sorted({r.size for r in table})
    out = ["## a) One session growing: latency by size (ms)", "",
           "Sequential requests, one client, targets interleaved sample by sample, each "
           f"sample after an idle pause of {gap_s * 1000:.0f} ms (so every target at every size "
           "starts from the same machine state; see `load/sampling.py`). "
           "Speedup = upstream p50 / proxy p50.", ""]
    for op in OP_LABELS:
        if not any(r.op == op for r in table):
            continue
        rows = []
        for size in sizes:
            up, px = t.get((op, size, "upstream")), t.get((op, size, "proxy"))
            fl = t.get((op, size, "floor"))
            row = [f"{size:,}"]
            for r in (up, px):
                row += [_ms(r.p50_ms), _ms(r.p95_ms), _ms(r.p99_ms)] if r and r.n \
                    else ["-", "-", "-"]
            speed = up.p50_ms / px.p50_ms if up and px and up.n and px.n else math.nan
            row += [_x(speed), str((up.n if up else 0) + (px.n if px else 0))]
            errs = (up.errors if up else 0) + (px.errors if px else 0)
            row.append(str(errs))
            if op in FLOORED:
                row += [_ms(fl.p50_ms) if fl else "-",
                        _x(px.p50_ms / fl.p50_ms) if px and fl and px.n and fl.n else "-"]
            rows.append(row)
        header = ["messages", "upstream p50", "p95", "p99", "proxy p50", "p95", "p99",
                  "speedup", "samples", "errors"]
        if op in FLOORED:
            header += ["floor p50", "proxy / floor"]
        out += [f"### {OP_LABELS[op]}", ""] + _table(header, rows)
    out += ["### Growth: p50 at each size / p50 at the smallest size", ""]
    rows = []
    for op in OP_LABELS:
        for target in ("upstream", "proxy"):
            base = t.get((op, sizes[0], target)) if sizes else None
            if not base or not base.n:
                continue
            cells = []
            for size in sizes:
                r = t.get((op, size, target))
                cells.append(_x(r.p50_ms / base.p50_ms) if r and r.n else "-")
            rows.append([OP_LABELS[op], target, *cells])
    return out + _table(["operation", "target", *[f"{s:,}" for s in sizes]], rows)


def locust_section(rows: list[LocustRow], seconds: int, seed: int, limit: int,
                   think: float) -> list[str]:
    out = ["## b) Locust: concurrent users (ms)", "",
           f"Headless runs of `load/locustfile.py`, {seconds} s each, all users started at once, "
           f"each pausing {think:g} s between turns (`--think`); sessions seeded at {seed:,} "
           f"messages and restarted at {limit:,}, so requests sit in the 1k-2k bucket. "
           "`PUT seed` rows are the seeding PUTs, not part of the loop. Percentiles come from "
           "each request's exact time (`AMP_LOAD_TIMINGS`), not Locust's whole-millisecond "
           "statistics.", ""]
    body = [[r.target, r.user_class, str(r.users), r.name, str(r.count), str(r.failures),
             _ms(r.p50), _ms(r.p95), _ms(r.p99), f"{r.rps:.1f}"]
            for r in sorted(rows, key=lambda r: (r.target, r.user_class, r.name, r.users))]
    out += _table(["target", "user class", "users", "request", "count", "failures", "p50",
                   "p95", "p99", "req/s"], body)
    out += ["### Degradation: p95 at N users / p95 at 1 user (bucket 1k-2k)", ""]
    deg = []
    for target in ("upstream", "proxy", "proxy-nosync"):
        levels = sorted({r.users for r in rows if r.target == target and r.users > 1})
        for many in levels:
            for kind, (one, at_many, ratio) in concurrency_ratios(rows, target,
                                                                  many=many).items():
                deg.append([target, kind, str(many), _ms(one), _ms(at_many), _x(ratio)])
    return out + _table(["target", "request", "users", "p95 1 user", "p95 N users", "ratio"],
                        deg)


def verdict_section(verdicts: list[Verdict], title: str = "Verdicts (issue 15 targets)"
                    ) -> list[str]:
    out = [f"## {title}", ""]
    rows = [[v.mark, v.target, v.measured, v.detail] for v in verdicts]
    return out + _table(["", "target", "measured", "result"], rows)


def chat_section(chat: list[Stat], gap_s: float) -> list[str]:
    """The whole-session PUT with short chat turns (part a, second pass)."""
    if not chat:
        return []
    t = lookup(chat)
    out = ["### PUT full session (+2 messages), short chat turns", "",
           "The same sampling as above (one session per target, interleaved, each sample after "
           f"{gap_s * 1000:.0f} ms idle) with messages of a few words (~120 bytes each, most "
           "of it id and timestamp); the upstream up to the size it bears.", ""]
    rows = []
    for size in sorted({r.size for r in chat}):
        up, px, fl = (t.get(("put_full", size, k)) for k in ("upstream", "proxy", "floor"))
        row = [f"{size:,}"]
        for r in (up, px, fl):
            row += [_ms(r.p50_ms), _ms(r.p95_ms)] if r and r.n else ["-", "-"]
        row += [_x(up.p50_ms / px.p50_ms) if up and px and up.n and px.n else "-",
                _x(px.p50_ms / fl.p50_ms) if px and fl and px.n and fl.n else "-"]
        rows.append(row)
    return out + _table(["messages", "upstream p50", "p95", "proxy p50", "p95", "floor p50",
                         "p95", "speedup", "proxy / floor"], rows)


def profile_section(prof: Profile | None) -> list[str]:
    out = ["## d) Where the proxy's time goes", ""]
    if prof is None:
        return out + ["Every target was met, so no profile was taken.", ""]
    out += [prof.note, ""]
    if not prof.samples:
        return out
    out += [f"{prof.samples} samples.", "", "Most time on the CPU (self):", ""]
    out += _table(["% samples", "function (file)"],
                  [[f"{p:.1f}", f"`{f}`"] for f, p in prof.top(prof.self_counts)])
    out += ["Most time on the stack (inclusive):", ""]
    out += _table(["% samples", "function (file)"],
                  [[f"{p:.1f}", f"`{f}`"] for f, p in prof.top(prof.total_counts, 20)])
    return out


def write_markdown(path: Path, meta: Meta, table: list[Stat], locust: list[LocustRow],
                   locust_args: tuple[int, int, int, float], verdicts: list[Verdict],
                   prof: Profile | None, plot_name: str,
                   alone: Sequence[str] = (), earlier: Sequence[Verdict] = (),
                   chat: Sequence[Stat] = ()) -> None:
    lines = [f"# Benchmark: upstream vs proxy ({meta.date}, {meta.mode})", "",
             f"- commit `{meta.commit}`; machine: {meta.machine}",
             f"- wall time of the whole run: {meta.wall_s:.0f} s",
             "- upstream: agent-memory-server 0.14.0 (asyncio task backend, long-term memory "
             "off) on Redis Stack 7.4; proxy: `agent-memory-proxy serve` with its own Redis; "
             "floor: bare aiohttp handlers (`load/floor.py`) answering with the bytes the proxy "
             "answered (a GET), after receiving the body the proxy received (a PUT); all on "
             "127.0.0.1, clients on the same machine",
             "- messages are ~230 bytes with `id` and ISO `created_at`; PUTs carry "
             "`context_window_max=100000000` so the upstream never summarizes",
             *[f"- {n}" for n in meta.notes], "", f"![latency against session size]({plot_name})",
             ""]
    lines += verdict_section(verdicts)
    if earlier:
        lines += verdict_section(list(earlier), "Earlier targets (issue 5)")
    lines += size_section(table, meta.gap_s) + chat_section(list(chat), meta.gap_s)
    lines += locust_section(locust, *locust_args) + list(alone) + profile_section(prof)
    path.write_text("\n".join(lines))


def plot(path: Path, table: list[Stat]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in OP_LABELS if any(r.op == op and r.n for r in table)]
    fig, axes = plt.subplots(1, len(ops), figsize=(4.2 * len(ops), 4), squeeze=False)
    style = {"upstream": ("tab:red", "o"), "proxy": ("tab:blue", "s"),
             "floor": ("tab:gray", "^")}
    for ax, op in zip(axes[0], ops, strict=True):
        for target, (color, marker) in style.items():
            rows = sorted((r for r in table if r.op == op and r.target == target and r.n),
                          key=lambda r: r.size)
            if not rows:
                continue
            xs = [r.size for r in rows]
            ax.plot(xs, [r.p50_ms for r in rows], color=color, marker=marker,
                    label=f"{target} p50")
            ax.plot(xs, [r.p95_ms for r in rows], color=color, linestyle=":", alpha=0.7,
                    label=f"{target} p95")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(OP_LABELS[op], fontsize=10)
        ax.set_xlabel("messages in session")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("latency (ms)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
