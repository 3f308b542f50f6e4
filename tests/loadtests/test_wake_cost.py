"""loadtests/wake_cost.py, small: two real processes echo over a socketpair,
back to back and with pauses; every round trip is answered (the script
checks each echo) and each pause gets its line of figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^pause ([\d.]+) ms: ([\d.]+) µs CPU per echo .*?, ([\d.]+) µs per round trip",
                  re.M)


def test_echoes_with_and_without_pauses_are_measured() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.wake_cost", "--trips", "50", "--gaps", "0,0.002"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [(float(m.group(1)), float(m.group(3))) for m in LINE.finditer(out.stdout)]
    assert [gap for gap, _ in rows] == [0.0, 2.0], out.stdout
    assert all(asking > 0 for _, asking in rows), out.stdout
