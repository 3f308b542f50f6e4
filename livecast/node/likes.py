"""The in-process like counter of ``livecast serve`` (docs/counter.md, "In-process").

With no callback URL (and ``LIVECAST_LIKE_COUNTER`` on), the server counts
likes itself with the code of ``livecast counter``: ``core.likes`` decides
what a like is, ``counter.app.Counter`` keeps the exact totals and writes them
back on the same 3-5 s schedule.  Only the store differs: ``NodeTotals``
reads and writes the room through the node's own methods, the ones the REST
commands call, with no HTTP hop.

Invariants:
1. Same messages as the external counter: ``admit`` is called by
   ``Node.submit`` for each message offered to a room's scheduler (before rate
   limiting, so a like the room drops is still counted), unless the message
   carries no before-send callback (``ForbidBeforeSendMsgCallback``,
   ``send_broadcast_msg``): exactly the messages whose before-send callback
   ``livecast counter`` would count.
2. ``admit`` never awaits; a message at a priority no like has costs one set
   lookup, so the fan-out path is unchanged.
3. Writes are of totals, through ``Node.modify_group`` (AppDefinedData) or
   ``Node.update_counters`` (group counter), so members get the ``groupInfo``
   or ``counters`` tip exactly as for the REST write of ``livecast counter``.
4. A room dropped on this process (destroyed) is forgotten at once
   (``on_drop``): a room made again with its id counts from its own value.
5. Lifecycle: ``start`` hooks ``admit`` into the node and starts the
   write-back loop; ``stop`` unhooks, stops the loop and writes what is
   pending once more.  The app owns both calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from livecast.core.group import Group
from livecast.core.likes import recognise_message
from livecast.core.scheduler import PRIORITY_NAMES
from livecast.counter.app import Counter
from livecast.counter.rest import Body, Read, stored_total
from livecast.counter.settings import CounterSettings
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.node.room import Outgoing

log = logging.getLogger("livecast.likes")

OK: Body = {"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""}


def _app_read(group: Group, key: str) -> int:
    return stored_total(group.app_defined.get(key))


def _counter_read(group: Group, key: str) -> int:
    return group.counters.get(key, 0)


async def _app_write(node: Node, group_id: str, key: str, total: int, operator: str) -> None:
    await node.modify_group(group_id, {"AppDefinedData": [{"Key": key, "Value": str(total)}]},
                      operator)


async def _counter_write(node: Node, group_id: str, key: str, total: int,
                         operator: str) -> None:
    await node.update_counters(group_id, [{"Key": key, "Value": total}], "Set")


READS: dict[str, Callable[[Group, str], int]] = {
    "app_defined_data": _app_read, "group_counter": _counter_read}
WRITES: dict[str, Callable[[Node, str, str, int, str], Awaitable[None]]] = {
    "app_defined_data": _app_write, "group_counter": _counter_write}


def _failure(err: LivecastError) -> Body:
    return {"ActionStatus": "FAIL", "ErrorCode": err.code, "ErrorInfo": err.info}


class NodeTotals:
    """Rooms' like totals read and written on the node (``counter.rest.Totals``)."""

    def __init__(self, node: Node, target: str, key: str, operator: str) -> None:
        self.node = node
        self.key = key
        self.operator = operator
        self._read = READS[target]
        self._write = WRITES[target]

    async def read(self, group_id: str) -> Read:
        room = self.node.rooms.get(group_id)
        if room is None:
            return Read(Code.GROUP_NOT_FOUND, f"group {group_id!r} does not exist")
        return Read(0, "", self._read(room.group, self.key))

    async def write(self, group_id: str, total: int) -> Body:
        try:
            await self._write(self.node, group_id, self.key, total, self.operator)
        except LivecastError as err:  # the room is gone, or its data is full
            return _failure(err)
        return OK


class InProcessLikes:
    """One server's like counter: ``admit`` counts, ``Counter`` writes back."""

    def __init__(self, node: Node, settings: CounterSettings | None = None,
                 rand: Callable[[], float] | None = None) -> None:
        """``settings``: where and what to count (default: the counter's defaults)."""
        settings = settings or CounterSettings()
        self.node = node
        self.rule = settings.rule
        self.counter = Counter(settings, node.clock, rand)
        self.counter.store = NodeTotals(node, settings.target, settings.key, settings.admin)
        self._loop: asyncio.Task[Any] | None = None

    def admit(self, group_id: str, msg: Outgoing) -> None:
        """A message offered to ``group_id``'s scheduler (invariant 1)."""
        like = recognise_message(group_id, PRIORITY_NAMES[msg.priority], msg.body, self.rule)
        if like is not None:
            self.counter.count(like)

    def start(self, run_loop: bool = True) -> None:
        """Hook into the node; ``run_loop=False`` leaves flushing to the caller (tests)."""
        self.node.on_admit = self.admit
        self.node.on_drop = self.counter.destroyed  # a room made again starts anew
        if run_loop:
            self._loop = asyncio.create_task(self.counter.run())
        s = self.counter.settings
        where = "AppDefinedData" if s.target == "app_defined_data" else "group counter"
        log.info("likes counted in-process: %s %r every %g-%g s", where, s.key, s.min_s, s.max_s)

    async def stop(self) -> None:
        if self.node.on_admit == self.admit:
            self.node.on_admit = None
        if self.node.on_drop == self.counter.destroyed:
            self.node.on_drop = None
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        await self.counter.final_flush()
