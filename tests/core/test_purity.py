"""``livecast/core`` is pure: no I/O, no event loop, no clock, no randomness.

Every time-dependent decision takes ``now``; every random choice takes its
salt or value from the caller.  This test reads the source of every core
module and fails on an import that would let it do otherwise."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "livecast" / "core"

# Modules a pure decision never needs: I/O, event loops, clocks, randomness,
# and the project's own edges.
FORBIDDEN = {
    "asyncio", "socket", "selectors", "ssl", "subprocess", "threading", "multiprocessing",
    "os", "sys", "io", "pathlib", "shutil", "tempfile", "signal", "logging",
    "time", "datetime", "random", "secrets", "uuid",
    "sqlite3", "aiosqlite", "aiohttp", "redis", "uvloop", "prometheus_client",
    "livecast.node", "livecast.gateway", "livecast.admin", "livecast.webhooks",
    "livecast.backplane", "livecast.store", "livecast.counter", "livecast.bench",
    "livecast.runner", "livecast.cli", "livecast.client", "livecast.settings",
}


def impure_imports(source: str) -> list[str]:
    """The forbidden modules ``source`` imports (``import x``, ``from x import y``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if any(".".join(parts[:i]) in FORBIDDEN for i in range(1, len(parts) + 1)):
                found.append(name)
    return found


@pytest.mark.parametrize("source, expected", [
    ("import asyncio", ["asyncio"]),
    ("from time import monotonic", ["time"]),
    ("import os.path", ["os.path"]),
    ("from livecast.node.hub import Node", ["livecast.node.hub"]),
    ("from redis.asyncio import Redis", ["redis.asyncio"]),
    ("import hashlib\nfrom livecast.core.bucket import TokenBucket", []),
    ("def f():\n    import socket\n", ["socket"]),
])
def test_the_check_finds_impure_imports(source: str, expected: list[str]) -> None:
    assert impure_imports(source) == expected


@pytest.mark.parametrize("module", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_is_pure(module: Path) -> None:
    assert impure_imports(module.read_text()) == []


def test_every_core_module_is_checked() -> None:
    assert len(list(CORE.glob("*.py"))) >= 10  # the glob sees the package
