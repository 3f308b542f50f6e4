"""Paced publishing from a few sender connections, and the senders' ledger.

Senders are members too (they log in and join their room, so they also
receive every delivered message and are counted as such).  Each ``send``
carries the sender's clock in ``cloudCustomData`` (unix seconds, text), from
which receivers compute latency.

Pacing: over all rooms, message ``j`` is due at ``t0 + j / (rate * rooms)``
and goes to room ``j % rooms`` from that room's sender ``(j // rooms) %
senders``, so each room gets ``rate`` messages per second, rooms staggered.
Priorities are drawn from the mix with a seeded generator (repeatable).

Ledger invariant (docs/protocol.md, Sending messages): every send gets exactly one
reply, so ``sent == delivered + sum(drops) + sum(errors) + outstanding``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from livecast.bench.dialects import Livecast
from livecast.bench.member import Member, Tally

PRIORITIES = ("High", "Normal", "Low", "Lowest")
FIRST_SEND_ID = 100


class Ledger:
    """What the senders sent and what the server answered, per room."""

    def __init__(self, rooms: int) -> None:
        self.sent = [0] * rooms
        self.delivered = [0] * rooms
        self.max_seq = [0] * rooms
        self.drops: Counter[str] = Counter()       # by priority: dropReason MsgFreqCtrl
        self.other_drops: Counter[str] = Counter()  # any other dropReason
        self.errors: Counter[str] = Counter()      # by reply code
        self.pending: dict[int, tuple[int, str]] = {}
        self.answered = asyncio.Event()             # set while nothing is pending
        self.answered.set()
        self._ids = FIRST_SEND_ID

    def issue(self, room: int, priority: str) -> int:
        rid = self._ids
        self._ids += 1
        self.pending[rid] = (room, priority)
        self.answered.clear()
        self.sent[room] += 1
        return rid

    def answer(self, reply: dict[str, Any]) -> None:
        room, priority = self.pending.pop(reply["id"])
        if not self.pending:
            self.answered.set()
        code = int(reply.get("code", -1))
        if code:
            self.errors[str(code)] += 1
        elif int(reply.get("msgSeq", 0)) > 0:
            self.delivered[room] += 1
            self.max_seq[room] = max(self.max_seq[room], int(reply["msgSeq"]))
        elif reply.get("dropReason") == "MsgFreqCtrl":
            self.drops[priority] += 1
        else:
            self.other_drops[str(reply.get("dropReason"))] += 1


class Sender(Member):
    __slots__ = ("ledger",)

    def __init__(self, ledger: Ledger, tally: Tally, dialect: Livecast, hello: bytes,
                 setup: bytes, room: int, ready: asyncio.Future[int]) -> None:
        super().__init__(tally, dialect, hello, setup, room, True, ready)
        self.ledger = ledger

    def on_other(self, obj: Any) -> None:
        if obj.get("op") == "reply" and obj.get("id") in self.ledger.pending:
            self.ledger.answer(obj)
        else:
            super().on_other(obj)


class Publisher:
    """Sends ``rate`` messages per second into every room for ``duration`` seconds."""

    def __init__(self, senders: list[list[Sender]], rooms: tuple[str, ...], rate: float,
                 mix: tuple[int, int, int, int], size: int, seed: int = 1) -> None:
        self.senders = senders
        self.rooms = rooms
        self.rate = rate
        self.weights = mix
        self.body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "x" * size}}]
        self.rng = random.Random(seed)

    async def run(self, ledger: Ledger, duration: float) -> None:
        loop = asyncio.get_running_loop()
        per_s = self.rate * len(self.rooms)
        total = int(duration * per_s)
        t0 = loop.time()
        j = 0
        while j < total:
            due = min(total, int((loop.time() - t0) * per_s) + 1)
            while j < due:
                self._send(ledger, j)
                j += 1
            await asyncio.sleep(max(0.0, t0 + j / per_s - loop.time()))

    def _send(self, ledger: Ledger, j: int) -> None:
        room = j % len(self.rooms)
        k = j // len(self.rooms)
        group = self.senders[room]
        priority = self.rng.choices(PRIORITIES, self.weights)[0]
        rid = ledger.issue(room, priority)
        req = {"groupId": self.rooms[room], "msgBody": self.body, "priority": priority,
               "random": k & 0xFFFFFFFF, "cloudCustomData": f"{time.time():.6f}"}
        sender = group[k % len(group)]
        sender.write(sender.dialect.request(rid, "send", req))
