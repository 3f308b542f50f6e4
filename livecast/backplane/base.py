"""The Backplane protocol: how a room's tick batches reach every node.

The embedded default (``memory.MemoryBackplane``) is a real in-process twin:
one node, so publishing is a no-op beyond counting.  A Redis backplane
implements the same protocol for clusters.
"""

from __future__ import annotations

from typing import Protocol


class Backplane(Protocol):
    def publish(self, group_id: str, full: bytes, lite: bytes | None) -> None:
        """Hand a room's encoded batch to the other nodes (once per room per tick)."""

    async def ready(self) -> bool:
        """True when the backplane is reachable and flowing."""

    async def close(self) -> None:
        """Release connections."""
