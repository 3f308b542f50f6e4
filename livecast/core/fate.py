"""What becomes of a message, as a value addressed to its sender.

A send ends exactly once (the room scheduler's accounting invariant): it is
delivered with its seq and time, dropped by the room's frequency control, or
fails with an error code (its room destroyed, the server shutting down).
The fate travels to an ``Address``, not into a closure: the process that
holds the sender (a WebSocket connection, or a REST call waiting for its
answer) looks the address up and answers; in a cluster the address also
names that process.

``send_refusal`` is the one rule deciding whether a sender may send now; the
WebSocket gateway and the REST API both ask it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from livecast.core.group import Group
from livecast.errors import Code

__all__ = ["Address", "Delivered", "Dropped", "Failed", "Fate", "fate_reply", "rest_answer",
           "send_refusal"]

FREQ_CTRL = "MsgFreqCtrl"  # MsgDropReason of a message dropped under overload
FAILED_INFO = {int(Code.GROUP_NOT_FOUND): "the group was destroyed before the message's turn",
               int(Code.INTERNAL): "the server shut down before the message's turn"}


# Address and Delivered are made once per message: plain slotted classes with
# value equality and a hash (an Address keys the forwarded sends of a
# cluster), not frozen ones, whose __init__ sets each field through
# object.__setattr__ (about 0.4 us more per value).  Nothing changes them.
@dataclass(slots=True, unsafe_hash=True)
class Address:
    """Where a message's fate is answered: a WebSocket connection (``conn``, with
    the request id echoed in the reply) or a waiting REST call (``rest``).  ``node``
    names the process holding it ("" for this one)."""

    conn: int = 0
    request: Any = None
    rest: int = 0
    node: str = ""


@dataclass(slots=True, unsafe_hash=True)
class Delivered:
    seq: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class Dropped:
    time_ms: int
    reason: str = FREQ_CTRL


# A forwarded send's fate that never came: it may have been delivered all the
# same (its owner delivered it, then its answer was lost), so a retry may
# repeat it; every other failure is certain that nothing was delivered.
UNSURE_INFO = "no answer from the room's owner: it may have been delivered; retry"
AWAY_UNSURE_INFO = "the cluster's Redis is unavailable: it may have been delivered; retry"
UNSURE_INFOS = frozenset({UNSURE_INFO, AWAY_UNSURE_INFO})


@dataclass(frozen=True, slots=True)
class Failed:
    code: int
    reason: str = ""  # overrides the code's usual info

    @property
    def info(self) -> str:
        return self.reason or FAILED_INFO.get(self.code, "")


Fate = Delivered | Dropped | Failed


def fate_reply(fate: Fate) -> tuple[int, str, dict[str, Any]]:
    """``(code, info, result fields)`` of a WebSocket ``send``'s reply."""
    if isinstance(fate, Failed):
        return fate.code, fate.info, {}
    if isinstance(fate, Delivered):
        return 0, "", {"msgSeq": fate.seq, "msgTime": fate.time_ms, "dropReason": ""}
    return 0, "", {"msgSeq": 0, "msgTime": fate.time_ms, "dropReason": fate.reason}


# the reply to a delivered send, as ``orjson.dumps(reply(id, 0, "", **fate_reply(fate)[2]))``
# makes it: the hot path fills in the numbers (``delivered_reply``)
_DELIVERED_TAIL = b',"code":0,"info":"","msgSeq":%d,"msgTime":%d,"dropReason":""}'
_DELIVERED = b'{"op":"reply","id":%d' + _DELIVERED_TAIL
_DELIVERED_STR = b'{"op":"reply","id":%s' + _DELIVERED_TAIL


def delivered_reply(rid: int | str, seq: int, time_ms: int) -> bytes:
    """The JSON of a WebSocket ``send``'s reply for a message delivered with
    ``seq`` at ``time_ms``: byte for byte the ``reply`` dict of its fate
    encoded, without the dict (the one reply every delivered message gets)."""
    if rid.__class__ is int:
        return _DELIVERED % (rid, seq, time_ms)
    return _DELIVERED_STR % (orjson.dumps(rid), seq, time_ms)


def rest_answer(fate: Delivered | Dropped) -> dict[str, Any]:
    """The answer fields of send_group_msg (``MsgTime`` in seconds)."""
    if isinstance(fate, Delivered):
        return {"MsgSeq": fate.seq, "MsgTime": fate.time_ms // 1000, "MsgDropReason": ""}
    return {"MsgSeq": 0, "MsgTime": fate.time_ms // 1000, "MsgDropReason": fate.reason}


def send_refusal(group: Group, user: str, now: float, *, member: bool = True,
                 is_admin: bool = False) -> tuple[int, str] | None:
    """Why ``user`` may not send to ``group`` now, as ``(code, info)``; None when it may.

    Not a member (a guest, or not joined): 10007.  Banned: 10007.  Muted, or
    mute-all is on and ``user`` is neither an app admin nor the owner: 10017.
    REST sends are made by the app admin on a sender's behalf: ``member`` and
    ``is_admin`` are true there, so only a personal mute refuses them."""
    if not member:
        return int(Code.NO_PERMISSION), "not a member of this group"
    if not (group.bans or group.mutes or group.mute_all):  # nobody banned or muted
        return None
    if group.is_banned(user, now):
        return int(Code.NO_PERMISSION), "banned from this group"
    if group.is_muted(user, now):
        return int(Code.MUTED), f"{user} is muted in this group"
    if group.mute_all and not is_admin and not (group.owner and user == group.owner):
        return int(Code.MUTED), f"{user} is muted in this group (all members are muted)"
    return None
