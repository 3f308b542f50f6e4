"""RFC 6455 server frames, built once and written as bytes to many transports.

Server-to-client frames are never masked (RFC 6455 section 5.1), so a frame's
bytes do not depend on the receiver: fan-out builds one frame per tick and
writes the same bytes to every member (spec/rooms.md, Fan-out).
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
    """A close frame; the reason is cut to fit the 125-byte control limit."""
    body = struct.pack("!H", code) + reason.encode()[:123]
    return frame(body, OP_CLOSE)
