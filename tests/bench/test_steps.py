"""``python -m livecast.bench.steps``: the contract's steps of a message, each
timed alone."""

from __future__ import annotations

import json
import subprocess
import sys

from livecast.bench.steps import measure


def test_every_step_is_timed_and_the_sum_is_theirs() -> None:
    result = measure(members=5, number=200)
    steps = result["steps_us"]
    assert len(steps) == 6
    assert all(isinstance(v, float) for v in steps.values())
    assert abs(result["sum_us"] - sum(steps.values())) < 0.05
    assert result["members"] == 5
    assert "the outbox checks of 5 members (fanout less bare writes)" in steps


def test_the_command_prints_one_json_line() -> None:
    out = subprocess.run([sys.executable, "-m", "livecast.bench.steps", "--members", "3",
                          "--number", "300"],
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["members"] == 3 and len(result["steps_us"]) == 6
