"""A live room on this node: its group state, scheduler, members and tips.

Invariants (docs/design.md, "The room scheduler", "Tips"): the scheduler
alone decides what is delivered and in which order; a dispatch writes at
most one ``msgs`` frame per room; join/quit tips are aggregated and flushed
at most once per tip interval.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from livecast.core.group import Group
from livecast.core.scheduler import PRIORITY_NAMES, Priority, RoomScheduler
from livecast.node.connection import Connection
from livecast.node.fanout import FanJob

# (seq, msgTime ms, dropReason, code); seq 0 means not delivered; a non-zero code
# means the message ended in an error (10010: its room was destroyed; 10002: the
# server shut down before its turn) rather than a drop
Fate = Callable[[int, int, str, int], None]
FATE_INFO = {10010: "the group was destroyed before the message's turn",
             10002: "the server shut down before the message's turn"}


@dataclass(slots=True)
class Outgoing:
    """One message on its way through a room's scheduler (the Pending payload)."""

    sender: str
    nick: str
    avatar: str
    priority: Priority
    random: int
    body: list[dict[str, Any]]
    cloud_custom_data: str
    fate: Fate | None = None
    # for webhooks (livecast/node/hooks.py)
    operator: str = ""             # who issued the send (Operator_Account)
    client_ip: str = ""
    platform: str = "Web"          # OptPlatform: Web (WebSocket) or RESTAPI
    before_callback: bool = True   # False under ForbidBeforeSendMsgCallback
    after_callback: bool = True    # False under ForbidAfterSendMsgCallback

    def wire(self, seq: int, time_ms: int) -> dict[str, Any]:
        return {"seq": seq, "time": time_ms, "from": self.sender, "nick": self.nick,
                "avatar": self.avatar, "priority": PRIORITY_NAMES[self.priority],
                "random": self.random, "msgBody": self.body,
                "cloudCustomData": self.cloud_custom_data}


@dataclass(slots=True)
class TipBuffer:
    """Aggregated member join/quit tips for one interval (capped id lists)."""

    cap: int
    ids: list[str] = field(default_factory=list)
    total: int = 0

    def add(self, user: str) -> None:
        self.total += 1
        if user and len(self.ids) < self.cap:
            self.ids.append(user)

    def take(self, kind: str) -> dict[str, Any] | None:
        if not self.total:
            return None
        tip = {"type": kind, "members": self.ids, "total": self.total}
        self.ids = []
        self.total = 0
        return tip


class LiveRoom:
    __slots__ = ("fanq", "group", "handle", "joins", "last_dispatch", "members", "online_sent",
                 "quits", "sched")

    def __init__(self, group: Group, sched: RoomScheduler, tip_cap: int) -> None:
        self.group = group
        self.sched = sched
        self.members: dict[Connection, None] = {}
        self.joins = TipBuffer(tip_cap)
        self.quits = TipBuffer(tip_cap)
        self.handle: asyncio.Handle | None = None
        self.last_dispatch = -1e9
        self.fanq: deque[FanJob] = deque()  # chunked fan-out in progress (big rooms)
        self.online_sent = 0  # the online count last pushed in an ``online`` tip

    @property
    def group_id(self) -> str:
        return self.group.group_id

    def encode(self, op: str, key: str, items: list[Any]) -> bytes:
        """``{"op":op,"groupId":..,key:items}`` as JSON bytes, encoded once."""
        return orjson.dumps({"op": op, "groupId": self.group.group_id, key: items})

    def online(self) -> int:
        return len(self.members)

    def take_member_tips(self) -> list[dict[str, Any]]:
        return [t for t in (self.joins.take("memberJoin"), self.quits.take("memberQuit")) if t]
