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
# what ``Reader(marks=True)`` gives for each frame of a fragmented message
# but its last, where the frame was read (one shared tuple: nothing allocated)
FRAGMENT: tuple[int, bytes] = (OP_CONT, b"")
_U16 = struct.Struct("!H").unpack_from
_U64 = struct.Struct("!Q").unpack_from


class WsError(Exception):
    """The peer broke RFC 6455: the connection fails with ``code``.

    Raised by ``Reader.feed``, it also carries ``messages``, the whole
    messages the same input completed before the violation (they are still
    the peer's), and ``rest``, the input from the offending frame on (or from
    the frame after it, when the frame was read whole), for a ``Drain``;
    ``peer_closed``: the offending frame was a close (a bad code, say), so the
    peer has closed already and waits for nothing more."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.messages: list[tuple[int, bytes]] = []
        self.rest = b""
        self.peer_closed = False  # the offending frame was the peer's close


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
    payloads unmasked, text checked to be UTF-8 (fragment by fragment, so an
    invalid message fails before its last fragment), a close frame's payload
    checked.  A violation raises ``WsError`` with the close code to fail the
    connection with: 1002 protocol error (a 64-bit length with its most
    significant bit set among them, section 5.2), 1007 invalid UTF-8, 1009 a
    message over ``max_size`` bytes, 1008 a message in more than
    ``MAX_FRAGMENTS`` frames.  After a ``WsError`` the reader is not fed
    again: the rest of the input goes to a ``Drain``.

    With ``marks``, each frame of a fragmented message but its last (whose
    place the whole message takes) also gives ``FRAGMENT``, ``(OP_CONT,
    b"")``, in the order the frames came: one item per frame read, so that a
    caller can make every frame cost something (``core.session``, invariant
    2).  An unfragmented message gives nothing more.

    Cost is linear in the input however it is cut: a partial frame waits in a
    bytearray that grows by appending, and a fragmented message keeps a
    running size.  Idle, a reader holds an empty buffer and no fragments.
    """

    __slots__ = ("buf", "marks", "max_size", "parts", "size")

    def __init__(self, max_size: int, marks: bool = False) -> None:
        self.buf: bytes | bytearray = b""  # the start of a frame still arriving
        self.marks = marks  # FRAGMENT for each frame of a fragmented message but the last
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
        try:
            pos = self._frames(buf, pos, end, out)
        except WsError as err:
            err.messages = out
            self.buf = b""
            raise
        if pos == end:
            self.buf = b""
        elif isinstance(buf, bytearray):
            del buf[:pos]
        else:
            self.buf = bytearray(buf[pos:])
        return out

    def _frames(self, buf: bytes | bytearray, pos: int, end: int,
                out: list[tuple[int, bytes]]) -> int:
        """Read whole frames from ``buf[pos:end]`` into ``out``; the position
        of the first frame not complete yet.  On a violation ``WsError.rest``
        is the input from the offending frame, or from the one after it when
        the frame was read whole (the framing is intact)."""
        resume = pos
        try:
            while (head := self._head(buf, pos, end)) is not None:
                first, at, n = head
                if end - at < 4 + n:
                    break
                payload = unmask(bytes(buf[at:at + 4]), bytes(buf[at + 4:at + 4 + n]))
                pos = resume = at + 4 + n
                msg = self._message(first & 0x80, first & 0x0F, payload)
                if msg is not None:
                    out.append(msg)
        except WsError as err:
            err.rest = bytes(buf[resume:])
            raise
        return pos

    def _head(self, buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int, int] | None:
        """The checked head of the frame at ``pos``: (first byte, position of
        the mask key, payload length); None while it is incomplete."""
        if end - pos < 2:
            return None
        first, second = buf[pos], buf[pos + 1]
        opcode, n, at = first & 0x0F, second & 0x7F, pos + 2
        self._check(first, second, opcode, n)
        if n == 126:
            if end - at < 2:
                return None
            n, at = _U16(buf, at)[0], at + 2
        elif n == 127:
            if end - at < 8:
                return None
            n, at = _U64(buf, at)[0], at + 8
            if n >> 63:
                raise WsError(1002, "a 64-bit length with its most significant bit set")
        if n > self.max_size:
            raise WsError(1009, "frame too large")
        return first, at, int(n)

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
                try:
                    close_code(payload)  # validates
                except WsError as err:
                    err.peer_closed = True  # its close came all the same
                    raise
            return opcode, payload
        if self.parts is not None:
            self.parts.append(payload)
            self.size += len(payload)
            if self.size > self.max_size:
                raise WsError(1009, "message too large")
            if len(self.parts) - 1 > MAX_FRAGMENTS:  # [0] is the opcode
                raise WsError(1008, f"a message in more than {MAX_FRAGMENTS} frames")
            first = self.parts[0]
            if first[0] == OP_TEXT:  # checked fragment by fragment: fails fast
                self.parts[0] = first[:1] + _utf8_head(first[1:] + payload, fin)
            if not fin:
                return FRAGMENT if self.marks else None
            opcode, payload = first[0], b"".join(self.parts[1:])
            self.parts, self.size = None, 0
            return opcode, payload
        carry = _utf8_head(payload, fin) if opcode == OP_TEXT else b""
        if not fin:
            self.parts, self.size = [bytes([opcode]) + carry, payload], len(payload)
            return FRAGMENT if self.marks else None
        return opcode, payload


def _utf8_head(data: bytes, fin: int) -> bytes:
    """Check that ``data`` is valid UTF-8, or (``fin`` false) the start of
    valid UTF-8; the incomplete character it ends with (at most 3 bytes),
    carried to the next fragment in ``Reader.parts[0]`` after the opcode."""
    try:
        data.decode()
        return b""
    except UnicodeDecodeError as err:
        if fin or err.reason != "unexpected end of data" or err.end != len(data):
            raise WsError(1007, "text is not valid UTF-8") from None
        return data[err.start:]


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


class Drain(Reader):
    """The reader of a failed connection (RFC 6455 section 7.1.7): no data is
    processed any more, but the frames are still walked, whatever rule they
    break (unmasked, oversized, reserved bits, unknown opcodes), their payloads
    skipped without being kept, so that the peer's answering Close is seen.

    ``feed`` returns ``[(OP_CLOSE, b"")]`` when the TCP connection should be
    closed at once: the peer's Close frame has arrived whole, or the framing
    itself is lost (a 64-bit length with its top bit set, a Close frame too
    long to be one), and nothing more can be recognised; otherwise ``[]``.
    At most one frame head (14 bytes) is kept between calls."""

    __slots__ = ("skip",)

    def __init__(self) -> None:
        super().__init__(0)
        self.skip = 0  # payload bytes of the current frame still to come

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        if self.skip >= len(data):
            self.skip -= len(data)
            return []
        buf = bytes(self.buf) + data[self.skip:] if self.buf else data[self.skip:]
        self.skip, self.buf = 0, b""
        pos, end = 0, len(buf)
        while pos < end:
            size = _head_size(buf, pos, end)
            if size is None:
                self.buf = buf[pos:]  # a head cut in two
                return []
            head, n = size
            if n >> 63 or (buf[pos] & 0x0F == OP_CLOSE and n > 125):
                return [(OP_CLOSE, b"")]  # framing lost
            if buf[pos] & 0x0F == OP_CLOSE:
                if end - pos >= head + n:
                    return [(OP_CLOSE, b"")]
                self.buf = buf[pos:]  # a Close frame still arriving (at most 139 bytes)
                return []
            pos += head + n
        self.skip = pos - end
        return []


def _head_size(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(head length, payload length) of the frame at ``pos``, masked or not;
    None while the head is incomplete."""
    if end - pos < 2:
        return None
    second = buf[pos + 1]
    n, head = second & 0x7F, 2 + (4 if second & 0x80 else 0)
    if n == 126:
        if end - pos < 4:
            return None
        return head + 2, int(_U16(buf, pos + 2)[0])
    if n == 127:
        if end - pos < 10:
            return None
        return head + 8, int(_U64(buf, pos + 2)[0])
    return head, n
