"""RFC 6455 frames: server frames built once and written as bytes to many
transports, and the reader of client frames.

Server-to-client frames are never masked (RFC 6455 section 5.1), so a frame's
bytes do not depend on the receiver: fan-out builds one frame per tick and
writes the same bytes to every member (docs/design.md, "The path of one message").
"""

from __future__ import annotations

import struct

OP_TEXT = 0x1
OP_CLOSE = 0x8

_LEN1 = struct.Struct("!BB").pack
_LEN2 = struct.Struct("!BBH").pack
_LEN3 = struct.Struct("!BBQ").pack


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final, unmasked frame carrying ``payload``."""
    first = 0x80 | opcode
    n = len(payload)
    if n < 126:
        return _LEN1(first, n) + payload
    if n < 65536:
        return _LEN2(first, 126, n) + payload
    return _LEN3(first, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut (on a character boundary) to fit the
    125-byte control limit."""
    cut = reason.encode()[:123].decode("utf-8", "ignore").encode()
    body = struct.pack("!H", code) + cut
    return frame(body, OP_CLOSE)


# ------------------------------------------------------------------ client frames
OP_CONT = 0x0
OP_BINARY = 0x2
OP_PING = 0x9
OP_PONG = 0xA
_DATA = frozenset({OP_CONT, OP_TEXT, OP_BINARY})
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})
# close codes a peer may send: RFC 6455 section 7.4 and the IANA registry
# (1012-1014 came later), and 3000-4999
_PEER_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})
MAX_FRAGMENTS = 1024  # frames of one fragmented message
_U16 = struct.Struct("!H").unpack_from
_U64 = struct.Struct("!Q").unpack_from


class WsError(Exception):
    """The peer broke RFC 6455: the connection fails with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def unmask(key: bytes, payload: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (one big-int operation)."""
    n = len(payload)
    if not n:
        return payload
    pad = (key * ((n >> 2) + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


class Reader:
    """Client frames in, whole messages out (RFC 6455 section 5).

    ``feed`` takes bytes as they arrive and returns the complete messages and
    control frames they finish, as ``(opcode, payload)``: fragments are joined,
    payloads unmasked, text checked to be UTF-8, a close frame's payload
    checked.  A violation raises ``WsError`` with the close code to fail the
    connection with: 1002 protocol error, 1007 invalid UTF-8, 1009 a message
    over ``max_size`` bytes, 1008 a message in more than ``MAX_FRAGMENTS``
    frames.  After a ``WsError`` the reader is not fed again.

    Cost is linear in the input however it is cut: a partial frame waits in a
    bytearray that grows by appending, and a fragmented message keeps a
    running size.  Idle, a reader holds an empty buffer and no fragments.
    """

    __slots__ = ("buf", "max_size", "parts", "size")

    def __init__(self, max_size: int) -> None:
        self.buf: bytes | bytearray = b""  # the start of a frame still arriving
        self.max_size = max_size
        self.parts: list[bytes] | None = None  # fragments so far; [0] holds the opcode
        self.size = 0  # payload bytes in ``parts``

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf: bytes | bytearray = data
        if isinstance(self.buf, bytearray):  # a frame was waiting for more bytes
            self.buf += data
            buf = self.buf
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            opcode, n, at = first & 0x0F, second & 0x7F, pos + 2
            self._check(first, second, opcode, n)
            if n == 126:
                if end - at < 2:
                    break
                n, at = _U16(buf, at)[0], at + 2
            elif n == 127:
                if end - at < 8:
                    break
                n, at = _U64(buf, at)[0], at + 8
            if n > self.max_size:
                raise WsError(1009, "frame too large")
            if end - at < 4 + n:
                break
            payload = unmask(bytes(buf[at:at + 4]), bytes(buf[at + 4:at + 4 + n]))
            pos = at + 4 + n
            msg = self._message(first & 0x80, opcode, payload)
            if msg is not None:
                out.append(msg)
        if pos == end:
            self.buf = b""
        elif isinstance(buf, bytearray):
            del buf[:pos]
        else:
            self.buf = bytearray(buf[pos:])
        return out

    def _check(self, first: int, second: int, opcode: int, n: int) -> None:
        if first & 0x70:
            raise WsError(1002, "reserved bits set (no extension was negotiated)")
        if not second & 0x80:
            raise WsError(1002, "client frames must be masked")
        if opcode in _CONTROL:
            if not first & 0x80 or n > 125:
                raise WsError(1002, "control frames must be final and at most 125 bytes")
        elif opcode not in _DATA:
            raise WsError(1002, f"unknown opcode {opcode}")
        elif (opcode == OP_CONT) is (self.parts is None):
            raise WsError(1002, "unexpected continuation" if opcode == OP_CONT
                          else "a new message inside a fragmented one")

    def _message(self, fin: int, opcode: int, payload: bytes) -> tuple[int, bytes] | None:
        if opcode in _CONTROL:
            if opcode == OP_CLOSE:
                close_code(payload)  # validates
            return opcode, payload
        if self.parts is not None:
            self.parts.append(payload)
            self.size += len(payload)
            if self.size > self.max_size:
                raise WsError(1009, "message too large")
            if len(self.parts) - 1 > MAX_FRAGMENTS:  # [0] is the opcode
                raise WsError(1008, f"a message in more than {MAX_FRAGMENTS} frames")
            if not fin:
                return None
            opcode, payload = self.parts[0][0], b"".join(self.parts[1:])
            self.parts, self.size = None, 0
        elif not fin:
            self.parts, self.size = [bytes([opcode]), payload], len(payload)
            return None
        if opcode == OP_TEXT:
            _utf8(payload)
        return opcode, payload


def _utf8(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise WsError(1007, "text is not valid UTF-8") from None


def close_code(payload: bytes) -> int | None:
    """The code of a close frame's payload (None: no code); ``WsError`` when
    the payload is malformed or the code is not one a peer may send."""
    if not payload:
        return None
    if len(payload) == 1:
        raise WsError(1002, "a close payload of one byte")
    code = _U16(payload)[0]
    if code not in _PEER_CLOSE_CODES and not 3000 <= code < 5000:
        raise WsError(1002, f"close code {code} may not be sent")
    _utf8(payload[2:])
    return int(code)
