"""A python-socketio room broadcast server on aiohttp, the way its documentation shows it.

One ``sio.emit(..., room=...)`` per message, no coalescing, no rate limit.  It
speaks what ``livecast bench --peers socketio-py`` needs
(livecast/bench/dialects.py): a ``join`` event joins the room, a ``send``
event takes the room's next seq and emits livecast's ``msgs`` object to the
room; both are acknowledged with livecast-shaped replies.  JSON is written
compactly (as Node and livecast do) so the bench's byte scanner reads it.

    .venv/bin/pip install python-socketio
    .venv/bin/python loadtests/peers/socketio_py.py PORT
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import socketio
from aiohttp import web


class CompactJson:
    """The json module python-socketio calls, with compact separators."""

    @staticmethod
    def dumps(obj: Any, **kw: Any) -> str:
        kw.pop("separators", None)
        return json.dumps(obj, separators=(",", ":"), **kw)

    @staticmethod
    def loads(text: str | bytes, **kw: Any) -> Any:
        return json.loads(text, **kw)


sio = socketio.AsyncServer(async_mode="aiohttp", json=CompactJson, transports=["websocket"],
                           cors_allowed_origins="*")
seqs: dict[str, int] = {}


@sio.on("join")
async def join(sid: str, req: dict[str, Any]) -> dict[str, Any]:
    await sio.enter_room(sid, str(req.get("groupId")))
    return {"code": 0, "info": ""}


@sio.on("send")
async def send(sid: str, req: dict[str, Any]) -> dict[str, Any]:
    room = str(req.get("groupId"))
    seq = seqs[room] = seqs.get(room, 0) + 1
    now = int(time.time() * 1000)
    msg = {"seq": seq, "time": now, "from": sid, "nick": "", "avatar": "",
           "priority": req.get("priority", "Normal"), "random": req.get("random", 0),
           "msgBody": req.get("msgBody"), "cloudCustomData": req.get("cloudCustomData", "")}
    await sio.emit("msgs", {"op": "msgs", "groupId": room, "msgs": [msg]}, room=room)
    return {"code": 0, "info": "", "msgSeq": seq, "msgTime": now, "dropReason": ""}


def main() -> None:
    import uvloop

    uvloop.install()
    app = web.Application()
    sio.attach(app)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
