"""WebSocket bytes for the bench's clients: handshake, frames, batch scanning.

The bench's clients must cost less than the server they measure, so they do
not decode JSON per message.  A ``msgs`` push (docs/protocol.md, Pushes from the server) is
scanned as bytes: messages are counted by their ``"seq":`` keys, the first
and last seq read with one ``find`` and one ``rfind``, and the senders'
timestamps (carried in ``cloudCustomData``) are read only on sampled frames.

Invariants:
- Client frames are masked (RFC 6455 section 5.3) with the zero key, so the
  payload bytes are sent unchanged; server frames are read unmasked.
- ``read_frame`` never consumes a partial frame: it returns None until the
  whole frame is in the buffer.
- The scanners rely on the server's encoding of a ``msgs`` frame: keys in the
  order ``op``, ``groupId``, ``msgs``, each message's ``seq`` first, and
  ``cloudCustomData`` a JSON string (so a ``"seq":`` inside it is escaped and
  never counted).
"""

from __future__ import annotations

import contextlib
import struct

from livecast.core.wsframe import OP_TEXT

MSGS_PREFIX = b'{"op":"msgs"'
SEQ_KEY = b'"seq":'
STAMP_KEY = b'"cloudCustomData":"'
CLIENT_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
_ZERO_MASK = b"\0\0\0\0"
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


def handshake_request(host: str, port: int, path: str) -> bytes:
    """The HTTP/1.1 upgrade request (a fixed key: the bench need not check it)."""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {CLIENT_KEY.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final frame, masked with the zero key (payload unchanged)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + _U16.pack(n)
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + _U64.pack(n)
    return head + _ZERO_MASK + payload


def read_frame(data: bytes, pos: int) -> tuple[int, int, int, bytes] | None:
    """(opcode, payload start, payload end, mask key or b"") of the frame at
    ``pos``, or None when the frame is not complete yet."""
    avail = len(data) - pos
    if avail < 2:
        return None
    b1 = data[pos + 1]
    n = b1 & 0x7F
    head = 2
    if n == 126:
        if avail < 4:
            return None
        n = _U16.unpack_from(data, pos + 2)[0]
        head = 4
    elif n == 127:
        if avail < 10:
            return None
        n = _U64.unpack_from(data, pos + 2)[0]
        head = 10
    mask = b""
    if b1 & 0x80:
        mask = data[pos + head:pos + head + 4]
        head += 4
    start = pos + head
    if start + n > len(data):
        return None
    return data[pos] & 0x0F, start, start + n, mask


def seq_span(data: bytes, start: int, end: int) -> tuple[int, int, int]:
    """(messages, first seq, last seq) of the ``msgs`` frame in data[start:end]."""
    count = data.count(SEQ_KEY, start, end)
    if not count:
        return 0, 0, 0
    i = data.find(SEQ_KEY, start, end) + len(SEQ_KEY)
    first = int(data[i:data.find(b",", i, end)])
    if count == 1:
        return 1, first, first
    j = data.rfind(SEQ_KEY, start, end) + len(SEQ_KEY)
    return count, first, int(data[j:data.find(b",", j, end)])


def stamps(data: bytes, start: int, end: int) -> list[float]:
    """The senders' timestamps (unix seconds) of the messages in data[start:end]."""
    out: list[float] = []
    i = data.find(STAMP_KEY, start, end)
    while i >= 0:
        i += len(STAMP_KEY)
        j = data.find(b'"', i, end)
        with contextlib.suppress(ValueError):
            out.append(float(data[i:j]))
        i = data.find(STAMP_KEY, j, end)
    return out


def close_code(payload: bytes) -> int:
    """The status code of a close frame's payload (1005: none given)."""
    return _U16.unpack_from(payload)[0] if len(payload) >= 2 else 1005
