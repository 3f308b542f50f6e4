"""loadtests/idle_cost.py, small: an idle ``livecast serve --workers 2`` on a
real redis-server, each process measured; the supervisor, which sleeps until
a signal comes, is never woken while nothing happens."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^2: (supervisor|worker \d|redis-server): ([\d.]+) ms CPU, (\d+) wake-ups",
                  re.M)


def test_an_idle_cluster_is_measured_and_its_supervisor_never_wakes() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.idle_cost", "--configs", "2", "--window", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {m.group(1): int(m.group(3)) for m in LINE.finditer(out.stdout)}
    assert set(rows) == {"supervisor", "worker 1", "worker 2", "redis-server"}, out.stdout
    assert rows["supervisor"] == 0, out.stdout
    assert "2: total" in out.stdout
