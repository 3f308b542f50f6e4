"""``python -m livecast.bench.path``: the per-message path in one process,
with real connections whose transports count bytes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from livecast.bench.path import run, run_baseline


def test_every_message_is_delivered_once_in_a_frame_of_its_own() -> None:
    """One message per room in the measured window: one message per frame."""
    result = asyncio.run(run(members=4, rooms=300, messages=300))
    assert result["delivered"] == 300
    assert result["msgs_per_frame"] == 1.0
    assert result["us_per_message"] > 0
    assert abs(result["us_per_delivery"] * 4 - result["us_per_message"]) < 0.01


def test_the_command_prints_one_json_line() -> None:
    out = subprocess.run([sys.executable, "-m", "livecast.bench.path", "--members", "3",
                          "--rooms", "30", "--messages", "90"],
                         capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert result["messages"] == 90 and result["delivered"] == 90
    assert sum(result["gc_runs"]) >= 0 and result["gc_s"] >= 0


@pytest.mark.parametrize("server", ["baseline", "floor"])
def test_the_raw_writer_and_the_floor_run_through_the_same_harness(server: str) -> None:
    """``--server baseline``: the same rooms and frames through the raw writer;
    ``--server floor``: the raw writer with the contract's steps, every message
    through its scheduler. Every message delivered once, in a frame of its own."""
    result = asyncio.run(run_baseline(members=4, rooms=300, messages=300,
                                      steps=server == "floor"))
    assert result["delivered"] == 300
    assert result["msgs_per_frame"] == 1.0
    out = subprocess.run([sys.executable, "-m", "livecast.bench.path", "--server", server,
                          "--members", "3", "--rooms", "30", "--messages", "90"],
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout)["delivered"] == 90
