"""The protocols the bench speaks: livecast's protocol v1, and Socket.IO 4 for the peers.

A dialect says how a member gets from the HTTP 101 to "joined", how a
request is framed, how a frame that is not a ``msgs`` push is turned into
livecast's shape (``{"op": "reply", "id", "code", ...}``), and which bytes
open a ``msgs`` push, so that the same byte-scanning hot path
(``Member._msgs``) counts deliveries for every server.

The Socket.IO peers (loadtests/peers/) emit a ``msgs`` event whose argument
is livecast's ``msgs`` object, one message per event, and answer ``join``
and ``send`` events through acks shaped like livecast's replies.  On the
wire (Engine.IO 4 over WebSocket): ``0{..}`` open, ``40`` connect, ``2``/``3``
ping/pong, ``42<id>["event",arg]`` an event, ``43<id>[arg]`` its ack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from livecast.bench.wire import MSGS_PREFIX, client_frame

if TYPE_CHECKING:
    from livecast.bench.member import Member

LOGIN_ID = 1
JOIN_ID = 2


class Livecast:
    """livecast's protocol v1 (docs/protocol.md): login and join, pipelined."""

    name = "livecast"
    path = "/v1/ws"
    msgs_prefix = MSGS_PREFIX

    def setup(self, sdkappid: int, user: str, sig: str, group_id: str) -> bytes:
        """login (id 1, left out for a guest: ``sig`` empty) and join (id 2)."""
        out = self.request(LOGIN_ID, "login", {"sdkAppId": sdkappid, "userId": user,
                                               "userSig": sig}) if sig else b""
        return out + self.request(JOIN_ID, "join", {"groupId": group_id})

    def request(self, rid: int, op: str, fields: dict[str, Any]) -> bytes:
        return client_frame(orjson.dumps({"op": op, "id": rid, **fields}))

    def opened(self, member: Member) -> None:
        member.write(member.setup)

    def on_text(self, member: Member, payload: bytes) -> None:
        member.on_other(orjson.loads(payload))


class SocketIO(Livecast):
    """Socket.IO 4 on the default namespace, WebSocket transport only."""

    name = "socketio"
    path = "/socket.io/?EIO=4&transport=websocket"
    msgs_prefix = b'42["msgs",' + MSGS_PREFIX

    def setup(self, sdkappid: int, user: str, sig: str, group_id: str) -> bytes:
        return self.request(JOIN_ID, "join", {"groupId": group_id})

    def request(self, rid: int, op: str, fields: dict[str, Any]) -> bytes:
        return client_frame(b"42%d" % rid + orjson.dumps([op, fields]))

    def opened(self, member: Member) -> None:
        """Nothing yet: the Engine.IO open packet comes first."""

    def on_text(self, member: Member, payload: bytes) -> None:
        if payload == b"2":
            member.write(client_frame(b"3"))
        elif payload[:1] == b"0":
            member.write(client_frame(b"40"))
        elif payload[:2] == b"40":
            member.write(member.setup)
        elif payload[:2] == b"43":
            i = payload.index(b"[")
            answer = orjson.loads(payload[i:])
            body = answer[0] if answer and isinstance(answer[0], dict) else {}
            member.on_other({"op": "reply", "id": int(payload[2:i]), **body})
        elif payload[:2] in (b"44", b"41"):
            member.on_other({"op": "reply", "id": JOIN_ID, "code": -int(payload[:2])})


DIALECTS: dict[str, Livecast] = {"livecast": Livecast(), "socketio": SocketIO()}
