"""loadtests/idle_memory.py, small: both upgrade paths leave the members on
the lean path (no aiohttp request handler or WebSocketResponse alive) and
in the room.  The figures themselves are in docs/benchmarks.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("mode", ["first", "keepalive"])
def test_idle_members_hold_no_aiohttp_objects(mode: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.idle_memory", "--members", "50", "--mode", mode,
         "--settle", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    line = out.strip().splitlines()[-1]
    assert re.fullmatch(rf"mode={mode} members=50 online=50 rss_per_member_kb=-?[\d.]+ "
                        r"request_handlers=0 ws_responses=0", line), line
