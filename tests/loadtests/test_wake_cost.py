"""loadtests/wake_cost.py, small: two real processes echo over a socketpair,
back to back and with pauses; every round trip is answered (the script
checks each echo) and each pause gets its line of figures."""

from __future__ import annotations

import re

from tests.loadtests.conftest import run_script

LINE = re.compile(r"^pause ([\d.]+) ms: ([\d.]+) µs CPU per echo .*?, ([\d.]+) µs per round trip",
                  re.M)


def test_echoes_with_and_without_pauses_are_measured() -> None:
    stdout = run_script("wake_cost", "--trips", "50", "--gaps", "0,0.002", timeout=120)
    rows = [(float(m.group(1)), float(m.group(3))) for m in LINE.finditer(stdout)]
    assert [gap for gap, _ in rows] == [0.0, 2.0], stdout
    assert all(asking > 0 for _, asking in rows), stdout
