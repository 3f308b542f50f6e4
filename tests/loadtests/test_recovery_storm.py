"""loadtests/recovery_storm.py, small: every member that lost its socket is
recovered with no gap and no duplicate, on one process and on a two-process
cluster, where the storm reads each room's stream at most once per process.
The figures themselves are in docs/benchmarks.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("servers", [0, 2])
def test_a_small_storm_recovers_everyone(servers: int) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.recovery_storm", "--members", "200", "--rooms", "4",
         "--servers", str(servers), "--procs", "1", "--concurrency", "50", "--warm", "0.5",
         "--away", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(json.dumps(r))  # the whole report, shown when an assertion below fails
    assert r["joined"] == r["recovered"] == 200, r
    assert r["not_recovered"] == r["gaps"] == r["duplicates"] == r["failed"] == 0, r
    assert r["seq_events"] == [], r
    assert r["redis_xrange"] <= 4 * servers, r
