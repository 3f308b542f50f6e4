"""loadtests/forward_procs.py, small: two real ``livecast serve`` processes on a
real redis-server, a sender on the room's owner then on the other process,
every message delivered to a member on each with no gap (the script checks
and fails otherwise).  The figures themselves are in docs/benchmarks.md."""

from __future__ import annotations

import re

from tests.loadtests.conftest import run_script

LINE = re.compile(r"sends on (A|B): .*A \(owner\) (\d+) \(([\d.]+) runs\), B (\d+)")


def test_sends_on_the_owner_and_forwarded_are_all_delivered_and_measured() -> None:
    stdout = run_script("forward_procs", "--sends", "20", "--gap", "0.01", "--rounds", "1")
    phases = [m.group(1) for m in LINE.finditer(stdout)]
    assert phases == ["A", "B"], stdout
    assert "forwarded from B, beyond a send on A" in stdout
