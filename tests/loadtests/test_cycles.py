"""loadtests/cycles.py, small: every cycle against a real ``livecast serve``
succeeds and the server ends idle (no connection, no membership).  The
figures themselves are in docs/benchmarks.md."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cycles_all_succeed_and_leave_the_server_idle() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.cycles", "--cycles", "200", "--rounds", "2",
         "--procs", "2", "--conc", "8", "--port", str(free_port())],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.strip().splitlines()
    assert re.fullmatch(r"start +rss_mb= *[\d.]+ connections=0 members=0", lines[0]), out
    for r, line in enumerate(lines[1:], 1):
        assert re.fullmatch(rf"after round {r} +rss_mb= *[\d.]+ connections=0 members=0 "
                            r"cycles=200 failed=0 cycles_per_s=\d+", line), out
    assert len(lines) == 3
