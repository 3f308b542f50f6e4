"""livecast's own REST commands (service ``livecast_ext``): Tencent has no equivalent.

``set_room_rate`` / ``get_room_rate`` read and change one room's token bucket
(docs/design.md, "The room scheduler": rate R and burst B are per-room
settings with server-wide defaults, and a room may be given its own through
the admin API). The change applies at once and keeps the room's queues, seq
and tokens (RoomScheduler.configure); rate 0 pauses the room (messages wait,
then drop with MsgFreqCtrl). Same envelope, auth and codes as the Tencent
commands: 10004 bad parameter, 10015 bad GroupId, 10010 no such group.
"""

from __future__ import annotations

from livecast.admin.table import Body, Call, command, integer, room_of

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
