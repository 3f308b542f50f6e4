"""The embedded default backplane: a single node, nothing to cross."""

from __future__ import annotations


class MemoryBackplane:
    """One process is the whole cluster: batches are already fanned out locally."""

    def __init__(self) -> None:
        self.published = 0

    def publish(self, group_id: str, full: bytes, lite: bytes | None) -> None:
        self.published += 1

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
