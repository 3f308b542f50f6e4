"""loadtests/split_writes.py, small: every byte each writer wrote reaches the
reader, for one writer and for the same connections split over two.  The
figures themselves are in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_writer_and_two_deliver_every_byte_they_write() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.split_writes", "--conns", "30", "--writers", "1,2",
         "--rate", "20", "--size", "100", "--duration", "1", "--reader-work", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["writers"] for r in rows] == [1, 2]
    for row in rows:
        # at least the window's ticks to every connection, and all of it read
        assert row["written_bytes"] >= row["conns"] * row["size"] * 20 * 1
        assert row["read_bytes"] == row["written_bytes"], row
    assert "writers=2:" in out.stderr
