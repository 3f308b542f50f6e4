"""loadtests/store_latency.py, small: against a real ``livecast serve`` on
SQLite it prints p50/p99 for both REST mutations, and a start with stored
rooms reports them loaded.  The figures themselves are in docs/benchmarks.md."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = r"n=20 p50_ms=[\d.]+ p99_ms=[\d.]+ mean_ms=[\d.]+ max_ms=[\d.]+"


def test_prints_latency_and_startup_figures_on_sqlite() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtests.store_latency", "--engine", "sqlite", "--n", "20",
         "--warmup", "2", "--startup", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].startswith("engine=sqlite "), out
    assert re.fullmatch(rf"modify_group_base_info {FIGURES}", lines[1]), out
    assert re.fullmatch(rf"forbid_send_msg {FIGURES}", lines[2]), out
    assert re.fullmatch(r"startup rooms=3 populate_s=[\d.]+ ready_s=[\d.]+ "
                        r"log_loaded='3 rooms in [\d.]+ s'", lines[3]), out
