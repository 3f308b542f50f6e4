"""Chromium for the web UI test: the same fixture the page tests use; and
``run_script``, a load-test script run as its users run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.pages.conftest import browser as browser

ROOT = Path(__file__).resolve().parents[2]


def run_script(module: str, *args: str, timeout: float = 180) -> str:
    """``python -m loadtests.<module> ARGS`` from the repository's root; its
    stdout, once it exited 0 (else the test fails with its stderr)."""
    out = subprocess.run([sys.executable, "-m", f"loadtests.{module}", *args], cwd=ROOT,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout
