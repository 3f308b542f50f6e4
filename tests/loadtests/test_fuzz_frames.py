"""The frame fuzz (loadtests/fuzz_frames.py) at a small count, against a real
``livecast serve`` process: 2,000 random and mutated frames over raw sockets,
every answer checked against docs/protocol.md, the server alive afterwards
with no traceback in its log.  The long run (100,000 frames) is the command
in docs/reliability.md.
"""

from __future__ import annotations

import pytest

from loadtests.fuzz_frames import fuzz


@pytest.mark.timeout(300)
async def test_two_thousand_frames_are_answered_as_documented() -> None:
    report = await fuzz(frames=2000, connections=4, seed=20261206)
    t = report.tally
    assert t.problems == []
    assert not report.crashed and report.log_errors == [] and report.alive is None
    assert t.frames == 2000
    # the run reached each kind of outcome: not a vacuous pass
    assert {1002, 1007, 1009} <= set(t.closes), t.closes
    assert {0, 10003, 10004} <= set(t.replies), t.replies
    assert report.ok
