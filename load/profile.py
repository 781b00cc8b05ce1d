"""Part d) of the benchmark: where the proxy's time goes under load, sampled with py-spy.

py-spy attaches to the running proxy process from outside (no restart, no code change), while
a short Locust run drives it. The collapsed stacks are reduced to the functions that are most
often on the CPU (self) and most often on the stack (inclusive).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from load.locustrun import run_locust

_LINE = re.compile(r"^(.*) (\d+)$")
_LINENO = re.compile(r":\d+\)$")


@dataclass
class Profile:
    tool: str
    samples: int = 0
    self_counts: Counter[str] = field(default_factory=Counter)
    total_counts: Counter[str] = field(default_factory=Counter)
    note: str = ""

    def top(self, counts: Counter[str], n: int = 15) -> list[tuple[str, float]]:
        if not self.samples:
            return []
        return [(frame, 100.0 * c / self.samples) for frame, c in counts.most_common(n)]


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def _frame(raw: str) -> str:
    """``handler (/path/to/proxy/app.py:42)`` -> ``handler (proxy/app.py)``."""
    frame = _LINENO.sub(")", raw.strip())
    name, _, path = frame.partition(" (")
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path}" if path else name


def parse_collapsed(text: str, tool: str = "py-spy") -> Profile:
    prof = Profile(tool)
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        stack, count = m.group(1), int(m.group(2))
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        prof.samples += count
        prof.self_counts[frames[-1]] += count
        for frame in set(frames):
            prof.total_counts[frame] += count
    return prof


def profile_proxy(pid: int, host: str, seconds: int, out_dir: Path, seed: int,
                  users: int = 5) -> Profile:
    """Sample the proxy process ``pid`` for ``seconds`` while Locust loads it."""
    exe = py_spy()
    if exe is None:
        return Profile("none", note="py-spy is not installed (`pip install py-spy`); "
                       "no profile was taken.")
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "proxy-profile.txt"
    load = threading.Thread(target=run_locust, daemon=True, kwargs=dict(
        host=host, target="proxy-profile", user_class="FullPutUser", users=users,
        seconds=seconds + 2, out_dir=out_dir, seed=seed, max_messages=2 * seed or 2000))
    load.start()
    try:
        proc = subprocess.run(
            [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
             "--format", "raw", "--output", str(raw), "--nonblocking"],
            capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        load.join(timeout=seconds + 150)
    if proc.returncode != 0 or not raw.exists():
        return Profile("py-spy", note=f"py-spy failed ({proc.returncode}): "
                       f"{(proc.stderr or proc.stdout)[-500:]}")
    prof = parse_collapsed(raw.read_text(errors="replace"))
    prof.note = (f"py-spy record, {seconds} s at 250 Hz (non-blocking) on the proxy process "
                 f"while {users} Locust FullPutUser users ran against it (sessions seeded at "
                 f"{seed} messages); idle samples excluded.")
    return prof
