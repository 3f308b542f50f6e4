"""schemathesis against a real ``livecast serve`` (loadtests/fuzz_rest.py) at a
small count: bodies generated from the served OpenAPI document for every
command, positive and negative, each answered HTTP 200 with a Tencent
envelope and never 10002, the server alive with a clean log.  The long run
(10,000 bodies) is the command in docs/reliability.md."""

from __future__ import annotations

import pytest

from livecast.admin.rest import COMMANDS
from loadtests.fuzz_rest import fuzz_rest


@pytest.mark.timeout(300)
def test_generated_bodies_all_get_an_envelope() -> None:
    report = fuzz_rest(examples=4 * 2 * len(COMMANDS))
    t = report.tally
    assert t.problems == []
    assert not report.crashed and report.log_errors == []
    assert t.statuses.keys() == {200}
    assert t.bodies >= 2 * len(COMMANDS)             # every command, both modes
    assert t.modes["positive"] > 0 and t.modes["negative"] > 0
    assert 0 in t.codes and len(t.codes) > 3        # successes and refusals both reached
