"""The WebSocket opening handshake (RFC 6455 section 4.2), as pure functions.

livecast's listener reads the head of a connection's first request itself:
a valid upgrade to ``/v1/ws`` is answered here (101) and the socket goes to
the lean WebSocket protocol; anything else, including a malformed head or a
refused upgrade, goes to the aiohttp app, which answers it (docs/protocol.md
for the protocol; docs/design.md, "Connections").

Invariants:
* ``parse_head`` never raises: bytes that are not a well-formed HTTP/1.x
  request head give None.
* ``upgrade_error`` returns None exactly when RFC 6455 requires the server to
  accept: GET over HTTP/1.1 with one ``Host`` (RFC 9112 section 3.2: 400
  without it or with two), ``Upgrade: websocket``, ``Connection`` with the
  ``upgrade`` token, ``Sec-WebSocket-Version: 13`` and one key that is the
  base64 of 16 bytes. Header names are matched without regard to case, and
  the ``Upgrade``/``Connection`` tokens likewise.  Repeated headers are seen
  joined by ", " (as ``parse_head`` and ``joined`` give them); no valid Host
  or key contains a comma, so a comma there means the header came twice.
* No extension and no subprotocol is ever negotiated: the 101 carries neither
  header, so clients speak plain RFC 6455 frames.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD_BYTES = 32 * 1024  # a longer head goes to aiohttp, which applies its own limits
HEAD_END = b"\r\n\r\n"
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_TARGET = re.compile(r"[\x21-\x7e]+")  # visible ASCII, no spaces
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no control characters


@dataclass(frozen=True, slots=True)
class Head:
    """A request line and its headers (names lower-cased; repeats joined by ", ")."""

    method: str
    target: str
    version: str
    headers: Mapping[str, str]

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


def parse_head(raw: bytes) -> Head | None:
    """``raw``: the bytes up to and including the blank line ending the head."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if (len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _TARGET.fullmatch(parts[1])
            or parts[2] not in ("HTTP/1.0", "HTTP/1.1")):
        return None
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        value = value.strip(" \t")
        if not sep or not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(value):
            return None
        items.append((name, value))
    return Head(parts[0], parts[1], parts[2], joined(items))


def joined(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as ``parse_head`` sees them: names lower-cased, repeats joined
    by ", " (for a multi-dict such as aiohttp's, pass its ``items()``)."""
    headers: dict[str, str] = {}
    for name, value in items:
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",")}


def upgrade_error(method: str, version: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
    """Why a request is not an acceptable WebSocket upgrade (HTTP status and
    reason), or None when it is.  ``headers`` is looked up by lower-case name
    (a case-insensitive mapping, such as aiohttp's, works as well)."""
    if method != "GET":
        return 405, "a WebSocket upgrade is a GET"
    if version != "HTTP/1.1":
        return 400, "a WebSocket upgrade needs HTTP/1.1"
    if "host" not in headers:
        return 400, "an HTTP/1.1 request needs a Host header"
    if "," in headers["host"]:
        return 400, "the Host header must appear once"
    if "websocket" not in _tokens(headers.get("upgrade")):
        return 426, "this endpoint speaks WebSocket: send Upgrade: websocket"
    if "upgrade" not in _tokens(headers.get("connection")):
        return 400, "a WebSocket upgrade needs Connection: Upgrade"
    if (headers.get("sec-websocket-version") or "").strip() != "13":
        return 426, "Sec-WebSocket-Version must be 13"
    if "," in (headers.get("sec-websocket-key") or ""):
        return 400, "Sec-WebSocket-Key must appear once, with one key"
    if accept_key(headers.get("sec-websocket-key") or "") is None:
        return 400, "Sec-WebSocket-Key must be the base64 of 16 bytes"
    return None


def accept_key(key: str) -> str | None:
    """The ``Sec-WebSocket-Accept`` for ``key``, or None when the key is invalid."""
    key = key.strip(" \t")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def switching_protocols(key: str) -> bytes:
    """The 101 response accepting the (valid) ``key``."""
    accept = accept_key(key)
    if accept is None:
        raise ValueError("invalid Sec-WebSocket-Key")  # a caller's bug: check first
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept.encode() + b"\r\n\r\n")
