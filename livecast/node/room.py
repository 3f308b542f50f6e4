"""A message on its way through a room, and the aggregated member tips.

``Outgoing`` is the payload a room's scheduler carries (node/owner.py); its
fate is answered at ``reply_to`` (core/fate.py), never through a closure.
``TipBuffer`` aggregates one interval's joins or quits (node/hub.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from livecast.core.fate import Address
from livecast.core.scheduler import PRIORITY_NAMES, Priority


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
    reply_to: Address | None = None  # where its fate is answered (core/fate.py)
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
class BroadcastOutgoing(Outgoing):
    """A message of send_broadcast_msg: marked ``broadcast`` on the wire."""

    def wire(self, seq: int, time_ms: int) -> dict[str, Any]:
        item = Outgoing.wire(self, seq, time_ms)
        item["broadcast"] = True
        return item


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
