"""The listener's front (livecast/gateway/front.py) over real loopback sockets:
which connections become WebSocket members and which go to the aiohttp app,
the handshake bytes, framing details aiohttp used to handle (pings,
fragments, protocol errors) and the heartbeat."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
import time

import aiohttp
import orjson
import pytest

from livecast.core.handshake import MAX_HEAD_BYTES, accept_key
from livecast.core.protocol import MAX_FRAME_BYTES
from livecast.core.session import CLOSE_WAIT_BYTES
from livecast.core.wsframe import OP_PONG
from livecast.gateway.app import make_app
from livecast.gateway.front import MAX_FIRST_HEAD, Front
from livecast.gateway.ws import HEARTBEAT, WsConnection, heartbeat
from livecast.runner import KEEPALIVE_TIMEOUT, Listener
from tests.conftest import SDKAPPID, Live, LiveFactory, base_settings, sig
from tests.gateway.test_ws_closes import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    RawWs,
    encode_client_frame,
    login_raw,
    metric,
    upgrade_head,
)

OP_CONT = 0x0


async def exchange(live: Live, data: bytes,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a connection, send ``data``, return the response head."""
    reader, writer = await asyncio.open_connection(live.server.host, live.server.port)
    writer.write(data)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


def content_length(head: bytes) -> int:
    return int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                     if line.lower().startswith(b"content-length:")), b"0"))


async def http_status(live: Live, data: bytes) -> tuple[int, bytes]:
    """Status and whole response (head and body) of one plain HTTP request."""
    reader, writer, head = await exchange(live, data)
    body = await asyncio.wait_for(reader.readexactly(content_length(head)), 10)
    writer.close()
    return int(head.split(b" ", 2)[1]), head + body


# ------------------------------------------------------------------ the handshake
async def test_the_101_carries_the_rfc_accept_key_and_nothing_negotiated(live: Live) -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    extra = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    _reader, writer, head = await exchange(live, upgrade_head(live, key, extra=extra))
    writer.close()
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    assert "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in lines
    assert accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert not any(line.lower().startswith("sec-websocket-extensions") for line in lines)


async def test_frames_in_the_same_packet_as_the_head_are_read(live: Live) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    ping = encode_client_frame(OP_TEXT, orjson.dumps({"op": "ping", "id": 7}))
    reader, writer, head = await exchange(live, upgrade_head(live, key) + ping)
    assert head.startswith(b"HTTP/1.1 101")
    first = await asyncio.wait_for(reader.readexactly(2), 10)
    body = await asyncio.wait_for(reader.readexactly(first[1]), 10)
    assert orjson.loads(body) == {"op": "reply", "id": 7, "code": 0, "info": ""}
    writer.close()


async def test_a_head_arriving_byte_by_byte_is_upgraded(live: Live) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer = await asyncio.open_connection(live.server.host, live.server.port)
    for byte in upgrade_head(live, key):
        writer.write(bytes([byte]))
        await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101")
    assert f"Sec-WebSocket-Accept: {accept_key(key)}\r\n".encode() in head
    writer.close()


@pytest.mark.parametrize(("request_bytes", "status", "needle"), [
    (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 426, b"Upgrade: websocket"),
    (b"POST /v1/ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
     405, b"a GET"),
    (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
     426, b"Sec-WebSocket-Version: 13"),
    (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", 400, b"Sec-WebSocket-Key"),
    (b"GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     400, b"Host"),  # aiohttp answers it: "Missing 'Host' header in request."
    (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
     b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n\r\n",
     400, b"Sec-WebSocket-Key must appear once, with one key"),
    (b"GET /v2/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
     404, b""),
])
async def test_requests_that_are_not_upgrades_get_aiohttps_answer_with_the_reason(
        live: Live, request_bytes: bytes, status: int, needle: bytes) -> None:
    got, response = await http_status(live, request_bytes)
    assert got == status
    assert needle in response


def only_member(live: Live) -> WsConnection:
    """The node's one connection, checked to be served by the lean path alone:
    a ``WsConnection`` that is its transport's protocol, with no aiohttp
    request handler left for the socket."""
    (conn,) = live.node.connections
    assert isinstance(conn, WsConnection)
    assert conn.transport.get_protocol() is conn
    assert live.server.runner.server is not None
    assert not live.server.runner.server.connections
    return conn


async def test_an_upgrade_after_a_kept_alive_request_is_upgraded(live: Live) -> None:
    reader, writer, head = await exchange(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert orjson.loads(await reader.readexactly(content_length(head))) == {"status": "ok"}
    # the connection's second request is an upgrade, with a frame in the same packet
    key = base64.b64encode(os.urandom(16)).decode()
    ping = encode_client_frame(OP_TEXT, orjson.dumps({"op": "ping", "id": 9}))
    writer.write(upgrade_head(live, key) + ping)
    second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert second.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {accept_key(key)}\r\n".encode() in second
    first = await asyncio.wait_for(reader.readexactly(2), 10)
    body = await asyncio.wait_for(reader.readexactly(first[1]), 10)
    assert orjson.loads(body) == {"op": "reply", "id": 9, "code": 0, "info": ""}
    only_member(live)
    writer.close()


async def test_aiohttp_session_upgrades_on_its_pooled_connection(live: Live) -> None:
    """aiohttp's ClientSession reuses the keep-alive connection of an earlier
    request for ``ws_connect``: the upgrade is that connection's 2nd request."""
    gid = await live.room()
    events: list[str] = []
    trace = aiohttp.TraceConfig()

    async def created(*_: object) -> None:
        events.append("new")

    async def reused(*_: object) -> None:
        events.append("reused")

    trace.on_connection_create_end.append(created)
    trace.on_connection_reuseconn.append(reused)
    async with aiohttp.ClientSession(trace_configs=[trace]) as http:
        async with http.get(live.url("/healthz")) as resp:
            assert resp.status == 200
        async with http.ws_connect(live.ws_url) as ws:
            assert events == ["new", "reused"]  # the healthz connection carried the upgrade
            conn = only_member(live)
            await ws.send_json({"op": "login", "id": 1, "sdkAppId": SDKAPPID, "userId": "alice",
                                "userSig": sig("alice")})
            assert (await ws.receive_json(timeout=10))["code"] == 0
            await ws.send_json({"op": "join", "id": 2, "groupId": gid})
            assert (await ws.receive_json(timeout=10))["code"] == 0
            await ws.send_json({"op": "send", "id": 3, "groupId": gid, "priority": "Normal",
                                "random": 1, "msgBody": [{"MsgType": "TIMTextElem",
                                                          "MsgContent": {"Text": "hi"}}]})
            got = [await ws.receive_json(timeout=10) for _ in range(2)]
            reply = next(m for m in got if m["op"] == "reply")
            pushed = next(m for m in got if m["op"] == "msgs")
            assert reply["code"] == 0 and reply["msgSeq"] == 1
            assert pushed["msgs"][0]["seq"] == 1 and pushed["msgs"][0]["from"] == "alice"
            assert conn.user == "alice" and live.node.online(gid) == 1
        assert ws.close_code == 1000


async def test_a_refused_upgrade_on_a_kept_alive_connection_gets_the_reason(live: Live) -> None:
    reader, writer, head = await exchange(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readexactly(content_length(head))
    writer.write(b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert second.startswith(b"HTTP/1.1 400")
    body = await asyncio.wait_for(reader.readexactly(content_length(second)), 10)
    assert body == b"Sec-WebSocket-Key must appear once, with one key"
    writer.close()


async def test_an_overlong_head_goes_to_aiohttp_and_is_refused(live: Live) -> None:
    padding = "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(40))
    key = base64.b64encode(os.urandom(16)).decode()
    got, response = await http_status(live, upgrade_head(live, key, extra=padding))
    assert got == 400 and b"head under 32 KiB" in response


async def test_a_silent_new_connection_is_closed_after_the_handshake_timeout(
        live_factory: LiveFactory) -> None:
    live = await live_factory(handshake_timeout=0.05)
    reader, writer = await asyncio.open_connection(live.server.host, live.server.port)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    writer.close()


def padded_head(path: str, size: int) -> bytes:
    """The start of a request head of at least ``size`` bytes that never ends,
    in lines aiohttp accepts (fewer than 128, each under 8190 bytes)."""
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
    line = 0
    while len(head) < size:
        head += b"X-Pad-%d: %s\r\n" % (line, b"a" * 1000)
        line += 1
    return head


@pytest.mark.parametrize("path", ["/healthz", "/v1/ws"])
async def test_a_head_not_ended_within_the_front_limit_is_answered_431_and_closed(
        live: Live, path: str) -> None:
    """It is not handed to aiohttp (which would wait for its end for an hour):
    431, then the server's end of stream, long before the handshake timeout."""
    reader, writer = await asyncio.open_connection(live.server.host, live.server.port)
    writer.write(padded_head(path, MAX_FIRST_HEAD + 1000))
    answer = await asyncio.wait_for(reader.read(), 10)  # to the server's end of stream
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert b"Connection: close\r\n" in answer and answer.endswith(b"64 KiB")
    assert live.server.runner.server is not None and live.server.runner.server.connections == []
    writer.close()


@pytest.mark.parametrize("size", [0, MAX_HEAD_BYTES + 1000])
async def test_a_partial_plain_http_head_is_closed_at_the_handshake_timeout(
        live_factory: LiveFactory, size: int) -> None:
    """The handshake timeout covers the first head, whole: a head past 32 KiB
    (once handed to aiohttp unfinished) is held by the front and closed too."""
    live = await live_factory(handshake_timeout=0.2)
    reader, writer = await asyncio.open_connection(live.server.host, live.server.port)
    writer.write(padded_head("/healthz", size))
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
    writer.close()


async def test_a_connection_handed_to_aiohttp_has_the_keepalive_timeout(live: Live) -> None:
    reader, writer, head = await exchange(live, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.readexactly(content_length(head)), 10)
    http = live.server.runner.server
    assert http is not None and len(http.connections) == 1
    assert http.connections[0].keepalive_timeout == KEEPALIVE_TIMEOUT == 75.0
    writer.close()


@pytest.mark.parametrize("then", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
async def test_an_idle_or_slow_kept_alive_connection_is_closed_at_the_keepalive_timeout(
        then: bytes) -> None:
    """After its first request a connection is aiohttp's: idle, or with a later
    head arriving slowly, it is closed after ``keepalive_timeout`` (0.2 s here)."""
    app = make_app(base_settings())
    server = Listener(app, Front, shutdown_timeout=1.0, keepalive_timeout=0.2)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + then)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" not in head
        await asyncio.wait_for(reader.readexactly(content_length(head)), 10)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        writer.close()
    finally:
        await server.close()


async def test_upgrades_during_drain_are_answered_503(live: Live) -> None:
    live.node.going_away()
    key = base64.b64encode(os.urandom(16)).decode()
    got, response = await http_status(live, upgrade_head(live, key))
    assert got == 503 and b"draining" in response


# ------------------------------------------------------------------ framing
async def test_a_ping_is_answered_with_a_pong_carrying_its_payload(live: Live) -> None:
    raw = await RawWs.connect(live)
    await raw.send_frame(OP_PING, b"are you there")
    assert await raw.recv_frame() == (OP_PONG, b"are you there")
    raw.close()


async def test_a_fragmented_request_with_a_ping_between_is_one_request(live: Live) -> None:
    raw = await RawWs.connect(live)
    body = orjson.dumps({"op": "ping", "id": "frag"})
    data = b"".join([encode_client_frame(OP_TEXT, body[:5], fin=False),
                     encode_client_frame(OP_PING, b"p"),
                     encode_client_frame(OP_CONT, body[5:9], fin=False),
                     encode_client_frame(OP_CONT, body[9:])])
    await raw.loop.sock_sendall(raw.sock, data)
    assert await raw.recv_frame() == (OP_PONG, b"p")
    assert await raw.recv_json() == {"op": "reply", "id": "frag", "code": 0, "info": ""}
    raw.close()


@pytest.mark.parametrize(("data", "code"), [
    (encode_client_frame(OP_TEXT, b'{"op":"ping"}', masked=False), 1002),
    (encode_client_frame(OP_TEXT, b"\xff\xfe not utf-8"), 1007),
    (encode_client_frame(0x3, b"reserved opcode"), 1002),
    (encode_client_frame(OP_CONT, b"nothing to continue"), 1002),
    (bytes([0xC1]) + encode_client_frame(OP_TEXT, b"x")[1:], 1002),  # RSV1 without an extension
])
async def test_broken_framing_closes_with_the_rfc_code(live: Live, data: bytes,
                                                       code: int) -> None:
    raw = await RawWs.connect(live)
    await raw.loop.sock_sendall(raw.sock, data)
    assert await raw.close_code() == code
    raw.close()


async def test_after_a_framing_error_the_input_is_drained_not_reset(live: Live) -> None:
    raw = await RawWs.connect(live)
    await login_raw(raw, "alice")
    oversized = encode_client_frame(OP_TEXT, b"x" * (MAX_FRAME_BYTES + 10))
    await raw.loop.sock_sendall(raw.sock, oversized)  # refused at its header, then discarded
    assert await raw.close_code() == 1009
    await raw.send_frame(OP_CLOSE, struct.pack("!H", 1009))
    with pytest.raises(EOFError):  # a clean end of stream, not a reset
        await raw.recv_frame()
    raw.close()


async def test_a_peer_that_pings_and_never_reads_costs_a_bounded_outbox(
        live_factory: LiveFactory) -> None:
    soft = 16 * 1024
    live = await live_factory(outbox_soft_bytes=soft, outbox_hard_bytes=64 * 1024,
                              req_rate=1_000_000, req_burst=1_000_000)
    raw = await RawWs.connect(live, rcvbuf=4096)
    await login_raw(raw, "pinger")
    conn = next(iter(live.node.connections))
    batch = encode_client_frame(OP_PING, b"p" * 125) * 500
    sent = 0
    while conn.buffered() < soft:  # from here on the pinger reads nothing
        assert sent < 64 * 1024 * 1024, "the outbox never filled"
        await raw.loop.sock_sendall(raw.sock, batch)
        sent += len(batch)
        await asyncio.sleep(0)  # let the server read the batch
    for _ in range(20):  # well past the soft limit: pings go unanswered
        await raw.loop.sock_sendall(raw.sock, batch)
        await asyncio.sleep(0)
    assert soft < conn.buffered() <= soft + 2 + 125 and not conn.closing
    raw.close()


async def test_a_ping_flood_is_a_request_flood(live_factory: LiveFactory) -> None:
    live = await live_factory(req_rate=1, req_burst=5)
    raw = await RawWs.connect(live)
    await login_raw(raw, "pinger")
    await raw.loop.sock_sendall(raw.sock, encode_client_frame(OP_PING, b"x") * 40)
    pongs = 0
    while (frame := await raw.recv_frame())[0] == OP_PONG:
        pongs += 1
    assert frame[0] == OP_CLOSE and struct.unpack("!H", frame[1][:2])[0] == 4029
    assert pongs <= 5  # the burst, less the login's token
    raw.close()


async def test_a_fragment_flood_is_a_request_flood(live_factory: LiveFactory) -> None:
    """Every fragment costs a token: a ping cut into 40 frames overruns a
    burst of 5 and is closed 4029, never carried out (it used to cost one)."""
    live = await live_factory(req_rate=1, req_burst=5)
    raw = await RawWs.connect(live)
    await login_raw(raw, "cutter")
    body = orjson.dumps({"op": "ping", "id": "cut"})
    data = b"".join(encode_client_frame(OP_CONT if i else OP_TEXT, b"" if i else body,
                                        fin=i == 39) for i in range(40))
    await raw.loop.sock_sendall(raw.sock, data)
    frame = await raw.recv_frame()
    assert frame[0] == OP_CLOSE and struct.unpack("!H", frame[1][:2])[0] == 4029
    raw.close()


async def test_a_flooder_that_goes_on_after_its_4029_is_hung_up_on(
        live_factory: LiveFactory) -> None:
    """Past CLOSE_WAIT_BYTES sent after the close frame it is not read any
    more: the socket is closed long before the 60 s abort timer."""
    live = await live_factory(req_rate=1, req_burst=5, shutdown_grace=60)
    raw = await RawWs.connect(live)
    await raw.loop.sock_sendall(raw.sock, encode_client_frame(OP_PING, b"x") * 40)
    assert await raw.close_code() == 4029
    sent, ended = 0, False
    while not ended and sent <= 64 * CLOSE_WAIT_BYTES:
        try:
            await raw.loop.sock_sendall(raw.sock, encode_client_frame(OP_PING, b"") * 4096)
        except (BrokenPipeError, ConnectionResetError):
            ended = True
        sent += 6 * 4096
    assert ended
    raw.close()


async def test_a_binary_frame_is_a_violation_not_a_close(live: Live) -> None:
    raw = await RawWs.connect(live)
    await raw.send_frame(OP_BINARY, b"\x00\x01")
    assert (await raw.request("ping", 1))["code"] == 0
    assert await metric(live, "livecast_protocol_violations_total") == 1
    await raw.send_frame(OP_BINARY, b'{"op":"ping","id":5}')  # its id read: answered
    assert await raw.recv_json() == {"op": "reply", "id": 5, "code": 10004,
                                     "info": "binary frames are refused"}
    assert await metric(live, "livecast_protocol_violations_total") == 2
    raw.close()


async def test_close_with_a_reason_is_echoed_and_the_member_leaves(live: Live) -> None:
    gid = await live.room()
    raw = await RawWs.connect(live)
    assert (await raw.request("login", 1, sdkAppId=SDKAPPID, userId="u1",
                              userSig=sig("u1")))["code"] == 0
    assert (await raw.request("join", 2, groupId=gid))["code"] == 0
    assert live.node.online(gid) == 1
    await raw.send_frame(OP_CLOSE, struct.pack("!H", 4000) + "bye ✓".encode())
    assert await raw.close_code() == 4000
    with pytest.raises(EOFError):
        await raw.recv_frame()  # the server closes the socket after its echo
    assert live.node.online(gid) == 0 and not live.node.connections
    raw.close()


# ------------------------------------------------------------------ heartbeat
async def test_a_silent_member_is_pinged_then_dropped_and_a_pong_keeps_it(live: Live) -> None:
    quiet, answering = await RawWs.connect(live), await RawWs.connect(live)
    q, a = sorted((c for c in live.node.connections if isinstance(c, WsConnection)),
                  key=lambda c: c.id)
    heartbeat(live.node, time.monotonic())  # nobody silent yet: nothing sent
    for conn in (q, a):
        conn.seen -= HEARTBEAT + 1
    stale = a.seen
    heartbeat(live.node, time.monotonic())
    assert await quiet.recv_frame() == (OP_PING, b"")
    assert await answering.recv_frame() == (OP_PING, b"")
    await answering.send_frame(OP_PONG, b"")
    assert (await answering.request("ping", 1))["code"] == 0  # the pong has been read
    assert a.seen > stale
    q.seen -= HEARTBEAT  # now silent for twice the heartbeat
    heartbeat(live.node, time.monotonic())
    with pytest.raises((EOFError, ConnectionError)):
        while True:
            await quiet.recv_frame()  # aborted: the stream ends without a close frame
    assert (await answering.request("ping", 2))["code"] == 0
    assert list(live.node.connections) == [a]
    assert await metric(live, "livecast_heartbeat_pings_total") == 2
    assert await metric(live, "livecast_heartbeat_dropped_total") == 1
    quiet.close()
    answering.close()


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-N: a\x00b\r\n\r\n",  # a NUL in a value
    b"GET /?\xff HTTP/1.1\r\nHost: x\r\n\r\n",  # a target that is not ASCII
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX Y: a\r\n\r\n",  # a space in a name
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
])
async def test_a_malformed_head_is_answered_400_and_not_logged_as_an_error(
        live: Live, request_bytes: bytes, caplog: pytest.LogCaptureFixture) -> None:
    """The client's fault: its 400, and nothing at ERROR (which any client
    could otherwise fill the log with)."""
    got, _response = await http_status(live, request_bytes)
    assert got == 400
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_head_ended_by_bare_line_feeds_is_answered_at_once(
        live_factory: LiveFactory) -> None:
    """A head whose lines end in bare LFs is handed to aiohttp as it is, which
    refuses it (400) at once, rather than waiting until the handshake timeout
    for a CRLF blank line that never comes."""
    live = await live_factory(handshake_timeout=600.0)
    reader, writer = await asyncio.open_connection(live.server.host, live.server.port)
    writer.write(b"GET /healthz HTTP/1.1\nHost: x\n\n")
    status_line = await asyncio.wait_for(reader.readline(), 60)  # a hang guard, not a timing
    writer.close()
    assert status_line.split(b" ", 2)[1] == b"400"
