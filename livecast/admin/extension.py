"""livecast's own REST commands (service ``livecast_ext``): Tencent has no equivalent.

``set_room_rate`` / ``get_room_rate`` read and change one room's token bucket
(docs/design.md, "The room scheduler": rate R and burst B are per-room
settings with server-wide defaults, and a room may be given its own through
the admin API). The change applies at once and keeps the room's queues, seq
and tokens (RoomScheduler.configure); rate 0 pauses the room (messages wait,
then drop with MsgFreqCtrl). Same envelope, auth and codes as the Tencent
commands: 10004 bad parameter, 10015 bad GroupId, 10010 no such group.

``get_room_history`` reads a room's recent messages (docs/design.md,
"History and recovery") for the business backend, and ``set_room_history``
turns the room's join history (``join`` with ``history: N``) on or off;
Tencent's own ``group_msg_get_simple`` stays 10044 for AVChatRoom.
"""

from __future__ import annotations

import orjson

from livecast.admin.table import Body, Call, command, integer, one_of, room_of
from livecast.core.group_fields import bad

EXT = "livecast_ext"
MAX_RATE = 100000  # as LIVECAST_ROOM_RATE / LIVECAST_ROOM_BURST (settings.py)


@command(EXT, "set_room_rate")
async def set_room_rate(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    rate = integer(body, "Rate", 0, MAX_RATE)
    burst = integer(body, "Burst", 1, MAX_RATE, default=max(1, rate))
    await call.node.set_rate(room.group_id, rate, burst)
    return {"Rate": rate, "Burst": burst}


@command(EXT, "get_room_rate")
async def get_room_rate(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    s = call.node.settings
    custom = room.group.rate is not None
    return {"Rate": room.sched.rate, "Burst": room.sched.burst, "Custom": custom,
            "DefaultRate": s.room_rate, "DefaultBurst": s.room_burst}


@command(EXT, "set_room_history")
async def set_room_history(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    value = one_of(body, "JoinHistory", ("On", "Off"))
    if value is None:
        raise bad("JoinHistory (On or Off) is required")
    await call.node.set_join_history(room.group_id, value == "On")
    return {"JoinHistory": value}


@command(EXT, "get_room_history")
async def get_room_history(call: Call, body: Body) -> Body:
    room = room_of(call.node, body)
    node = call.node
    count = integer(body, "Count", 1, max(1, node.settings.history_size),
                    default=max(1, node.settings.history_size))
    epoch, last_seq, msgs = await node.read_history(room.group_id, count)
    return {"MsgList": [orjson.Fragment(m) for m in msgs], "LastSeq": last_seq,
            "HistoryEpoch": epoch, "JoinHistory": "On" if room.group.join_history else "Off"}
