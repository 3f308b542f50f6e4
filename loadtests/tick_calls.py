"""The work of a tick on one process, counted exactly: the Python function
calls (``cProfile``) of dispatching rooms whose members sit on in-process
transports (no socket, no kernel), so two commits compare on a busy machine.

    python -m loadtests.tick_calls big     # 400 ticks of 1 room of 2,000, 4 messages each
    python -m loadtests.tick_calls small   # 200 ticks of 200 rooms of 10, 1 message each

Prints the calls and the CPU seconds of the measured loop (the seconds are
as noisy as the machine; the calls are not)."""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time
from dataclasses import replace
from typing import Any

from livecast.core.fate import Address
from livecast.core.scheduler import Priority
from livecast.node.connection import Connection
from livecast.node.node import Node
from livecast.node.room import Outgoing
from livecast.settings import Settings

BODY = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * 64}}]
CONFIGS = {"big": (1, 2000, 4, 400), "small": (200, 2000, 1, 200)}


class Sink:
    """A transport that takes every write at once."""

    def write(self, data: bytes) -> None:
        return None

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


async def measure(rooms: int, members: int, per_tick: int, ticks: int) -> tuple[int, float]:
    node = Node(replace(Settings(), room_rate=10_000, room_burst=10_000))
    await node.start()
    gids = [f"r{r}" for r in range(rooms)]
    for gid in gids:
        await node.create_group("administrator", {"Name": gid}, gid)
    for i in range(members):
        conn = Connection(Sink())
        node.attach(conn)
        node.login(conn, f"u{i}")
        node.join(conn, gids[i % rooms])
    for _ in range(10):  # subscriptions and announcements settle
        await asyncio.sleep(0)
    owners = [node.rooms[g] for g in gids]
    profile = cProfile.Profile()
    started = time.process_time()
    profile.enable()
    for _ in range(ticks):
        for gid, owner in zip(gids, owners, strict=True):
            for k in range(per_tick):
                node.submit(gid, Outgoing("s", "", "", Priority.NORMAL, k, BODY, "",
                                          Address(conn=1, request=k)))
            owner.last_dispatch = -1e9
            owner.dispatch()
    profile.disable()
    spent = time.process_time() - started
    await node.close_collaborators()
    return pstats.Stats(profile).total_calls, spent  # type: ignore[attr-defined]


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "big"
    calls, spent = asyncio.run(measure(*CONFIGS[name]))
    print(f"{name}: {calls} function calls, {spent:.2f} s CPU")


if __name__ == "__main__":
    main()
