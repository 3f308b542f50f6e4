"""loadtests/idle_cost.py, small: an idle ``livecast serve --workers 2`` on a
real redis-server, each process measured; the supervisor, which sleeps until
a signal comes, is never woken while nothing happens."""

from __future__ import annotations

import re

from tests.loadtests.conftest import run_script

LINE = re.compile(r"^2: (supervisor|worker \d|redis-server): ([\d.]+) ms CPU, (\d+) wake-ups",
                  re.M)


def test_an_idle_cluster_is_measured_and_its_supervisor_never_wakes() -> None:
    stdout = run_script("idle_cost", "--configs", "2", "--window", "2", timeout=180)
    rows = {m.group(1): int(m.group(3)) for m in LINE.finditer(stdout)}
    assert set(rows) == {"supervisor", "worker 1", "worker 2", "redis-server"}, stdout
    assert rows["supervisor"] == 0, stdout
    assert "2: total" in stdout
