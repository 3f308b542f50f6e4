"""Close codes of spec/websocket.md ("Close codes"), each forced by a real client
over a real loopback socket: 4001 (see test_ws_protocol), 4002, 4003, 4004, 4009,
1009, 4029 and 1001.

``RawWs`` is a WebSocket client written by hand over a plain non-blocking
socket, for clients that must misbehave (send binary or oversized frames, never
read); the fan-out and fuzz tests use it too.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import time
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from livecast.client import Client, ClientClosed, text
from livecast.errors import Close
from tests.conftest import SDKAPPID, Live, LiveFactory, sig

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x1, 0x2, 0x8, 0x9


class RawWs:
    """A hand-written RFC 6455 client: masked frames out, plain frames in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, live: Live, rcvbuf: int | None = None,
                      path: str = "/v1/ws") -> RawWs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw = cls(sock)
        host, port = live.server.host, live.server.port
        assert port is not None
        await raw.loop.sock_connect(sock, (host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        await raw.loop.sock_sendall(sock, upgrade_head(live, key, path))
        head = await raw._read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return raw

    def close(self) -> None:
        self.sock.close()

    # -------------------------------------------------------------- writing
    async def send_frame(self, opcode: int, payload: bytes) -> None:
        await self.loop.sock_sendall(self.sock, encode_client_frame(opcode, payload))

    async def send_json(self, obj: Any) -> None:
        await self.send_frame(OP_TEXT, orjson.dumps(obj))

    async def request(self, op: str, rid: int | str, **fields: Any) -> dict[str, Any]:
        """Send one request and read frames up to its reply (pushes are skipped)."""
        await self.send_json({"op": op, "id": rid, **fields})
        while True:
            obj = await self.recv_json()
            if obj.get("op") == "reply" and obj.get("id") == rid:
                return obj

    # -------------------------------------------------------------- reading
    async def _fill(self) -> bool:
        chunk = await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), 10)
        self.buf += chunk
        return bool(chunk)

    async def _read_until(self, sep: bytes) -> bytes:
        while (end := self.buf.find(sep)) < 0:
            if not await self._fill():
                raise ConnectionError("eof during handshake")
        head = bytes(self.buf[:end + len(sep)])
        del self.buf[:end + len(sep)]
        return head

    async def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not await self._fill():
                raise EOFError
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def recv_frame(self) -> tuple[int, bytes]:
        """The next frame (opcode, payload); EOFError at end of stream."""
        b0, b1 = await self._take(2)
        assert b1 & 0x80 == 0, "server frames are never masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._take(8))
        return b0 & 0x0F, await self._take(n)

    async def recv_json(self) -> dict[str, Any]:
        """The next text frame as JSON; ``{"op": "_close", "code": ..}`` for a close frame."""
        while True:
            opcode, payload = await self.recv_frame()
            if opcode == OP_TEXT:
                obj: dict[str, Any] = orjson.loads(payload)
                return obj
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return {"op": "_close", "code": code}

    async def close_code(self) -> int:
        """Read (and discard) frames up to the close frame; return its code."""
        while True:
            obj = await self.recv_json()
            if obj["op"] == "_close":
                return int(obj["code"])


def upgrade_head(live: Live, key: str, path: str = "/v1/ws", extra: str = "") -> bytes:
    """An RFC 6455 opening handshake; ``extra``: more header lines, CRLF-ended."""
    return (f"GET {path} HTTP/1.1\r\nHost: {live.server.host}:{live.server.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def encode_client_frame(opcode: int, payload: bytes, fin: bool = True,
                        masked: bool = True) -> bytes:
    """A client frame (RFC 6455 section 5.2); ``masked=False`` breaks the rule."""
    mask = os.urandom(4) if masked else b""
    first, bit = (0x80 if fin else 0) | opcode, 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    return head + mask + body


async def metric(live: Live, name: str, **labels: str) -> float:
    """One sample of the node's /metrics page (0 when absent)."""
    async with aiohttp.ClientSession() as http, http.get(live.url("/metrics")) as resp:
        body = await resp.text()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def login_raw(raw: RawWs, user: str) -> None:
    r = await raw.request("login", "login", sdkAppId=SDKAPPID, userId=user, userSig=sig(user))
    assert r["code"] == 0, r


# ------------------------------------------------------------------ 4002
async def test_no_login_in_time_closes_4002_but_guests_and_users_stay(
        live_factory: LiveFactory) -> None:
    live = await live_factory(login_timeout=0.5)
    gid = await live.room()
    guest = await live.client(None, join=gid)        # a guest join counts as identifying
    user = await live.client("alice")
    silent = await live.client()                      # connected last: its deadline is last
    assert await silent.wait_closed() == 4002
    assert (await guest.ping())["code"] == 0          # their deadlines passed before silent's
    assert (await user.ping())["code"] == 0
    assert await metric(live, "livecast_connections_closed_total", code="4002") == 1


async def test_a_guest_that_quits_every_room_must_log_in_or_join_again_in_time(
        live_factory: LiveFactory) -> None:
    live = await live_factory(login_timeout=2.0)
    a, b = await live.room("a"), await live.room("b")
    leaver = await live.client(None, join=a)
    back = await live.client(None, join=a)
    stays = await live.client(None, join=a)
    assert (await stays.join(b))["code"] == 0
    assert (await back.quit(a))["code"] == 0
    assert (await stays.quit(a))["code"] == 0   # still in b
    assert (await back.join(b))["code"] == 0    # joined again in time
    assert (await leaver.quit(a))["code"] == 0  # last: its deadline is the last one
    assert await leaver.wait_closed() == 4002   # a new deadline from its quit
    assert (await back.ping())["code"] == 0 and (await stays.ping())["code"] == 0
    assert await metric(live, "livecast_connections_closed_total", code="4002") == 1


async def test_quitting_a_room_it_is_not_in_does_not_put_off_the_login_deadline(
        live_factory: LiveFactory) -> None:
    live = await live_factory(login_timeout=0.5)
    gid = await live.room()
    lurker = await live.client()
    closed = asyncio.ensure_future(lurker.wait_closed())
    while not closed.done():  # quits until it is closed, as a socket dodging its deadline would
        try:
            await lurker.quit(gid)
        except ClientClosed:
            break
        await asyncio.sleep(0.1)  # pacing (under the request rate), not synchronisation
    assert await closed == 4002


# ------------------------------------------------------------------ 4003
async def test_newer_login_kicks_older_with_4003(live: Live) -> None:
    gid = await live.room()
    first = await live.client("alice", join=gid)
    second = await live.client("alice", join=gid)
    assert await first.next_push("kicked") == {"op": "kicked", "reason": "multiLogin"}
    assert await first.wait_closed() == 4003
    with pytest.raises(ClientClosed) as closed:
        await first.ping()
    assert closed.value.code == 4003
    r = await second.send(gid, text("still here"))
    assert r["code"] == 0 and r["msgSeq"] == 1
    assert (await second.get_online_member_num(gid))["onlineMemberNum"] == 1


async def test_every_newer_login_kicks_the_previous_one(live: Live) -> None:
    """The third login of a user kicks the second (the session table must follow)."""
    first = await live.client("alice")
    second = await live.client("alice")
    assert await first.wait_closed() == 4003
    third = await live.client("alice")
    assert await second.next_push("kicked") == {"op": "kicked", "reason": "multiLogin"}
    assert await second.wait_closed() == 4003
    assert (await third.ping())["code"] == 0


async def test_profile_reaches_the_connection_that_survived_a_multi_login(live: Live) -> None:
    gid = await live.room()
    first = await live.client("alice")
    second = await live.client("alice", join=gid)
    assert await first.wait_closed() == 4003
    assert (await second.set_my_profile(nick="Alice", avatar="a.png"))["code"] == 0
    got = await second.get_my_profile()
    assert (got["nick"], got["avatar"]) == ("Alice", "a.png")
    await second.send(gid, text("hi"))
    (msg,) = (await second.next_push("msgs"))["msgs"]
    assert (msg["nick"], msg["avatar"]) == ("Alice", "a.png")


async def test_multi_login_enabled_keeps_both(live_factory: LiveFactory) -> None:
    live = await live_factory(multi_login=True)
    gid = await live.room()
    first = await live.client("alice", join=gid)
    second = await live.client("alice", join=gid)
    r = await second.send(gid, text("to both"))
    assert r["code"] == 0
    for c in (first, second):
        (msg,) = (await c.next_push("msgs"))["msgs"]
        assert msg["seq"] == r["msgSeq"]
    assert (await first.get_online_member_num(gid))["onlineMemberNum"] == 2
    await first.set_my_profile(nick="Al")
    assert (await second.get_my_profile())["nick"] == "Al"


# ------------------------------------------------------------------ 4004
async def test_ban_kicks_with_4004_and_refuses_rejoin_until_it_ends(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice", join=gid)
    bob = await live.client("bob", join=gid)
    await live.node.ban(gid, ["bob"], 60)
    assert await bob.next_push("kicked") == {"op": "kicked", "reason": "banned"}
    assert await bob.wait_closed() == 4004
    assert (await alice.get_online_member_num(gid))["onlineMemberNum"] == 1
    again = await live.client("bob")
    assert (await again.join(gid))["code"] == 10007
    assert (await again.send(gid, text("x")))["code"] == 10007
    assert (await alice.send(gid, text("alice unaffected")))["msgSeq"] == 1
    live.node.clock = lambda: time.time() + 61          # the ban has ended
    assert (await again.join(gid))["code"] == 0
    assert (await again.send(gid, text("back")))["code"] == 0


# ------------------------------------------------------------------ 4009
async def test_violations_close_4009_at_the_limit(live: Live) -> None:
    raw = await RawWs.connect(live)
    try:
        limit = live.settings.violation_limit
        bad = [(OP_BINARY, b"\x00\x01"), (OP_TEXT, b"not json"), (OP_TEXT, b"[1,2]"),
               (OP_TEXT, b'{"op":"nope"}'), (OP_TEXT, b'{"id":true,"op":"ping"}')]
        for i in range(limit - 1):
            await raw.send_frame(*bad[i % len(bad)])
        assert (await raw.request("ping", 1))["code"] == 0    # still open below the limit
        await raw.send_json({"op": "teleport", "id": 2})
        assert await raw.recv_json() == {"op": "reply", "id": 2, "code": 10003,
                                         "info": "unknown op"}
        assert await raw.close_code() == 4009
    finally:
        raw.close()
    assert await metric(live, "livecast_protocol_violations_total") == limit


async def test_value_errors_are_answered_but_are_not_violations(live: Live) -> None:
    c = await live.client("alice")
    for _ in range(3 * live.settings.violation_limit):
        assert (await c.join("x" * 49))["code"] == 10015
    assert (await c.ping())["code"] == 0
    assert await metric(live, "livecast_protocol_violations_total") == 0


# ------------------------------------------------------------------ 1009
async def test_frame_over_64k_closes_1009_and_64k_exactly_is_read(live: Live) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(live.ws_url) as ws:
        head = b'{"op":"ping","id":1,"pad":"'
        fits = head + b"x" * (65536 - len(head) - 2) + b'"}'
        assert len(fits) == 65536
        await ws.send_str(fits.decode())
        assert orjson.loads((await ws.receive()).data) == {"op": "reply", "id": 1, "code": 0,
                                                           "info": ""}
        await ws.send_str('{"op":"ping","id":2,"pad":"' + "x" * 65536 + '"}')
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE and msg.data == 1009
    assert await metric(live, "livecast_connections_closed_total", code="1009") == 1
    assert await metric(live, "livecast_connections_closed_total", code="4009") == 0


# ------------------------------------------------------------------ protocol errors: TCP ends
# RFC 6455 section 7.1.7: once the server has failed the connection and the peer
# answers its Close, the server closes the TCP connection at once.  The grace is
# long, so only that can end the stream inside the reads' 10 s bound.
@pytest.mark.parametrize(("bad", "code"), [
    (encode_client_frame(OP_TEXT, b'{"op":"ping"}', masked=False), 1002),
    (encode_client_frame(OP_TEXT, b"\xff not utf-8"), 1007),
    (encode_client_frame(OP_BINARY, b"x" * 70000), 1009),
])
async def test_after_a_protocol_error_the_peers_close_ends_the_tcp_connection(
        live_factory: LiveFactory, bad: bytes, code: int) -> None:
    live = await live_factory(shutdown_grace=30.0)
    raw = await RawWs.connect(live)
    try:
        await raw.loop.sock_sendall(raw.sock, bad)
        assert await raw.close_code() == code
        await raw.send_frame(OP_CLOSE, struct.pack("!H", code))
        with pytest.raises(EOFError):
            await raw.recv_frame()
    finally:
        raw.close()
    assert await metric(live, "livecast_connections_closed_total", code=str(code)) == 1


@pytest.mark.parametrize("code", [1005, 2999])
async def test_a_close_with_a_code_a_peer_may_not_send_ends_the_tcp_connection_at_once(
        live_factory: LiveFactory, code: int) -> None:
    live = await live_factory(shutdown_grace=30.0)
    raw = await RawWs.connect(live)
    try:
        await raw.send_frame(OP_CLOSE, struct.pack("!H", code))
        assert await raw.close_code() == 1002
        with pytest.raises(EOFError):  # its close came: nothing more is awaited
            await asyncio.wait_for(raw.recv_frame(), 10)
    finally:
        raw.close()


async def test_when_the_framing_is_lost_the_tcp_connection_ends_at_once(
        live_factory: LiveFactory) -> None:
    live = await live_factory(shutdown_grace=30.0)
    raw = await RawWs.connect(live)
    ping = encode_client_frame(OP_TEXT, orjson.dumps({"op": "ping", "id": 1}))
    lost = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**63) + os.urandom(4) + b"garbage"
    try:
        await raw.loop.sock_sendall(raw.sock, ping + lost)  # one packet
        assert await raw.recv_json() == {"op": "reply", "id": 1, "code": 0, "info": ""}
        assert await raw.close_code() == 1002
        with pytest.raises(EOFError):  # no Close of ours needed: nothing can be read any more
            await raw.recv_frame()
    finally:
        raw.close()


# ------------------------------------------------------------------ 4029
async def _read_until_close(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[Any], int | None]:
    """Reply codes up to the server's close, and its close code."""
    codes = []
    while (msg := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
        codes.append(orjson.loads(msg.data)["code"])
    assert msg.type is aiohttp.WSMsgType.CLOSE
    return codes, msg.data


async def test_request_flood_gets_10023_then_4029(live_factory: LiveFactory) -> None:
    live = await live_factory(req_rate=0.01, req_burst=3)
    async with aiohttp.ClientSession() as http, http.ws_connect(live.ws_url) as ws:
        for i in range(14):
            await ws.send_str(orjson.dumps({"op": "ping", "id": i}).decode())
        codes, close = await _read_until_close(ws)
    assert codes == [0, 0, 0] + [10023] * 5  # closed past max(4, burst / 4) refusals
    assert close == 4029


async def test_flood_of_refused_values_is_limited_too(live_factory: LiveFactory) -> None:
    """Frames answered with a value error still cost a request token."""
    live = await live_factory(req_rate=0.01, req_burst=3)
    async with aiohttp.ClientSession() as http, http.ws_connect(live.ws_url) as ws:
        for i in range(14):
            await ws.send_str(orjson.dumps({"op": "join", "id": i, "groupId": ""}).decode())
        codes, close = await _read_until_close(ws)
    assert codes == [10015, 10015, 10015] + [10023] * 5
    assert close == 4029


# ------------------------------------------------------------------ 1001
async def test_shutdown_closes_every_client_with_1001(live: Live) -> None:
    gid = await live.room()
    member = await live.client("alice", join=gid)
    guest = await live.client(None, join=gid)
    idle = await live.client()
    await live.server.close()
    for c in (member, guest, idle):
        assert await c.wait_closed() == 1001


async def test_shutdown_waits_for_members_to_answer_the_close(
        live_factory: LiveFactory) -> None:
    live = await live_factory(shutdown_grace=60.0)
    raw = await RawWs.connect(live)
    await login_raw(raw, "alice")
    closing = asyncio.create_task(live.server.close())
    assert await raw.close_code() == 1001
    assert not closing.done()  # the member has not answered yet
    await raw.send_frame(OP_CLOSE, struct.pack("!H", 1001))
    await asyncio.wait_for(closing, 10)
    with pytest.raises(EOFError):
        await raw.recv_frame()  # the server closed the socket after the answer
    assert not live.node.sockets
    raw.close()


async def test_shutdown_logs_how_many_never_answered_the_close(
        live_factory: LiveFactory, caplog: pytest.LogCaptureFixture) -> None:
    live = await live_factory(shutdown_grace=0.5)
    gid = await live.room()
    silent = [await RawWs.connect(live) for _ in range(4)]
    for n, raw in enumerate(silent):
        await login_raw(raw, f"silent{n}")
    assert (await silent[3].request("join", 2, groupId=gid))["code"] == 0
    answering = await live.client("alice")
    ban = {"GroupId": gid, "Members_Account": ["silent3"], "Duration": 60}
    assert (await live.rest("group_open_http_svc", "ban_group_member", ban))["ErrorCode"] == 0
    assert await silent[3].close_code() == Close.BANNED  # its abort comes during the shutdown
    with caplog.at_level(logging.WARNING, logger="livecast.gateway"):
        await live.server.close()  # three never answer the 1001; alice's client does
    assert await answering.wait_closed() == 1001
    warned = [r.getMessage() for r in caplog.records if "did not close" in r.getMessage()]
    assert warned == ["shutdown: 3 connections did not close in time; aborted"]
    for raw in silent:
        raw.close()


async def test_drain_closes_1001_and_refuses_new_connections(live: Live) -> None:
    gid = await live.room()
    member = await live.client("alice", join=gid)
    live.node.going_away()
    assert await member.wait_closed() == 1001
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(live.ws_url)
        assert err.value.status == 503
        async with http.get(live.url("/readyz")) as resp:
            assert resp.status == 503


async def test_client_close_is_echoed(live: Live) -> None:
    c = Client(live.ws_url)
    await c.connect()
    r = await c.login(SDKAPPID, "alice", sig("alice"))
    assert r["code"] == 0
    await c.close()
    assert c.close_code == 1000


async def test_peer_chosen_close_codes_share_one_metric_label(live: Live) -> None:
    """A close is echoed with the peer's own 3000-4999 code, but metric label
    values are not the client's to choose: unknown codes count as "other"."""
    for code in (3123, 4777, 4001):
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(live.ws_url)
            await ws.close(code=code)
            assert ws.close_code == code  # echoed as RFC 6455 asks
    assert await metric(live, "livecast_connections_closed_total", code="other") == 2
    assert await metric(live, "livecast_connections_closed_total", code="4001") == 1
    assert await metric(live, "livecast_connections_closed_total", code="3123") == 0


async def test_unsolicited_pongs_cost_the_request_budget(live_factory: LiveFactory) -> None:
    """Every frame costs the connection's budget, control frames included: a
    socket that never logs in and floods pongs is closed 4029."""
    live = await live_factory(req_rate=1, req_burst=5)
    raw = await RawWs.connect(live)
    try:
        for _ in range(20):
            await raw.send_frame(0xA, b"x")  # pong
        assert await raw.close_code() == 4029
    finally:
        raw.close()
    assert await metric(live, "livecast_connections_closed_total", code="4029") == 1
