"""The cases of the frame fuzz (loadtests/fuzz_frames.py): each one the bytes
a client writes and what docs/protocol.md says must come back.

A ``Case`` is terminal when it breaks RFC 6455 (``closes``: the close codes
that may answer it, from "Close codes"), or else a sequence of frames after
which the connection still works: ``replies`` maps each request id it carries
to the reply codes allowed for it, ``pongs`` the ping payloads that must come
back.  Ids the fuzz checks start with ``t:``; mutated or corrupted ids are not
tracked (their replies are only checked to carry a documented code).
"""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livecast.client import custom, text
from livecast.core.wsframe import unmask

SDKAPPID = 1400000000
# docs/protocol.md, "Error codes" (10100-10200 come only from a business backend)
DOCUMENTED_CODES = frozenset({0, 10003, 10004, 10006, 10007, 10010, 10015, 10016, 10017, 10023,
                              10045, 10046, 10047, 10048, 10049, 10050, 10056, 70001, 70002,
                              70003, 70009, 70013, 70014, 70399, 80002})
# docs/protocol.md, "Close codes"
DOCUMENTED_CLOSES = frozenset({1000, 1001, 1002, 1007, 1008, 1009, 4001, 4002, 4003, 4004,
                               4008, 4009, 4013, 4029})
# what a client may earn by sending frames that keep the framing: a refused
# login, no login in 10 s, another worker logging in as the same user, 10
# protocol violations, a flood
MISBEHAVING_CLOSES = frozenset({4001, 4002, 4003, 4009, 4029})
ALWAYS = frozenset({4002, 4003})
BUSY = frozenset({10006, 10023})   # any request may be refused for the connection's budget
USERS = tuple(f"fz{i}" for i in range(16))


@dataclass
class Case:
    kind: str
    chunks: list[bytes]                                   # one write each
    replies: dict[str, frozenset[int]] = field(default_factory=dict)
    pongs: list[bytes] = field(default_factory=list)
    closes: frozenset[int] = frozenset()                  # non-empty: terminal
    frames: int = 1                                       # WebSocket frames in ``chunks``

    def __post_init__(self) -> None:
        if self.closes:
            self.closes |= ALWAYS


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = True,
           key: bytes | None = None, wide: int = 0) -> bytes:
    """A client frame; ``wide`` forces the 16-bit (1) or 64-bit (2) length form."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    bit, n = (0x80 if mask else 0), len(payload)
    if wide == 2 or n >= 65536:
        head = struct.pack("!BBQ", first, bit | 127, n)
    elif wide == 1 or n >= 126:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BB", first, bit | n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + unmask(key, payload)


def _dumps(obj: Any) -> bytes:
    """JSON as a client might write it (``ensure_ascii`` keeps lone surrogates as escapes)."""
    return json.dumps(obj, ensure_ascii=True).encode()


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode()
        return True
    except UnicodeDecodeError:
        return False


# ------------------------------------------------------------------ values
def _value(rng: random.Random) -> Any:
    """A field value: plausible, a wrong type, huge or negative, odd text."""
    return rng.choice([
        lambda: rng.choice([0, 1, -1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63,
                            -(2**63), 2**64 - 1, -(2**63) - 1, 10**30, -(10**30)]),
        lambda: rng.choice([0.0, -0.0, 1.5, 1e308, -1e308, 5e-324, 3.0]),
        lambda: rng.choice([None, True, False, [], {}, [None], {"a": 1}]),
        lambda: rng.choice(["", "fuzz", "nope", "x" * 49, "x" * 65, "x" * 501, "High", "Lowest",
                            "\u0000", "\ud800", "\udfff", "a\ud83d", "\U0001F600" * 20,
                            "é" * 40, "<script>", "fz0", "administrator"]),
        lambda: "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(0, 30))),
        lambda: "y" * rng.choice([1000, 13000, 60000]),
        lambda: _nested(rng.randrange(1, 300)),
        lambda: rng.choice([text("hi"), custom("d", "like"), [], "hi",
                            [{"MsgType": "TIMTextElem"}],
                            [{"MsgType": "TIMFaceElem", "MsgContent": {"Index": 1.5}}],
                            [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "\ud800"}}],
                            [text("a")[0]] * 33, custom("d") + custom("e")]),
        lambda: {"k": "v", "pinned": "x" * rng.choice([1, 5000])},
    ])()


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def _template(rng: random.Random, worker: int, sig: Callable[[str], str], room: str
              ) -> dict[str, Any]:
    user = USERS[worker] if rng.random() < 0.8 else rng.choice(USERS)
    return rng.choice([
        {"op": "login", "sdkAppId": SDKAPPID, "userId": user, "userSig": sig(user)},
        {"op": "join", "groupId": room},
        {"op": "quit", "groupId": room},
        {"op": "send", "groupId": room, "msgBody": text("hi"), "priority": "Normal",
         "random": rng.randrange(2**32), "cloudCustomData": ""},
        {"op": "send", "groupId": room, "msgBody": custom('{"type":"like","count":1}', "like"),
         "priority": "Low"},
        {"op": "getGroupInfo", "groupId": room},
        {"op": "getOnlineMemberNum", "groupId": room},
        {"op": "setMyProfile", "nick": "N", "avatar": "https://example.com/a.png"},
        {"op": "getMyProfile"},
        {"op": "getGroupAttributes", "groupId": room, "keyList": ["k"]},
        {"op": "setGroupAttributes", "groupId": room, "groupAttributes": {"k": "v"}},
        {"op": "initGroupAttributes", "groupId": room, "groupAttributes": {"k": "v"}},
        {"op": "deleteGroupAttributes", "groupId": room, "keyList": ["k"]},
        {"op": "ping"},
    ])


def _mutate(rng: random.Random, req: dict[str, Any]) -> dict[str, Any]:
    req = dict(req)
    for _ in range(rng.randrange(0, 4)):
        action = rng.choice(["set", "set", "drop", "add", "op"])
        keys = [k for k in req if k not in ("op", "id")]
        if action == "set" and keys:
            req[rng.choice(keys)] = _value(rng)
        elif action == "drop" and keys:
            del req[rng.choice(keys)]
        elif action == "op":
            req["op"] = rng.choice([_value(rng), "Login", "send ", "", "getGroupInfo"])
        else:
            req[rng.choice(["groupId", "msgBody", "nick", "random", "zz", "attrSeq",
                            "keyList", "priority"])] = _value(rng)
    return req


# ------------------------------------------------------------------ cases
class Draw:
    """Draws one case; ``n`` numbers the ids of one worker."""

    def __init__(self, rng: random.Random, worker: int, sig: Callable[[str], str],
                 room: str) -> None:
        self.rng, self.worker, self.sig, self.room = rng, worker, sig, room
        self.n = 0

    def tid(self) -> str:
        self.n += 1
        return f"t:{self.worker}.{self.n}"

    def request(self, codes: frozenset[int] = DOCUMENTED_CODES
                ) -> tuple[bytes, dict[str, frozenset[int]]]:
        """A tracked, valid-shaped or mutated request frame's payload."""
        req = _template(self.rng, self.worker, self.sig, self.room)
        rid = self.tid()
        return _dumps({**req, "id": rid}), {rid: codes}

    # -- frames that keep the connection
    def mutated(self) -> Case:
        req = _mutate(self.rng, _template(self.rng, self.worker, self.sig, self.room))
        if self.rng.random() < 0.2:
            req["id"] = _value(self.rng)
            return self._text("mutated-id", _dumps(req), {})
        rid = self.tid()
        return self._text("mutated", _dumps({**req, "id": rid}),
                          {rid: DOCUMENTED_CODES})

    def valid(self) -> Case:
        payload, replies = self.request()
        return self._text("valid", payload, replies)

    def surrogate(self) -> Case:
        rid = self.tid()
        req = self.rng.choice([{"op": "setMyProfile", "nick": "\ud800"},
                               {"op": "setMyProfile", "avatar": "a\udc00b"},
                               {"op": "join", "groupId": "\ud83d"},
                               {"op": "send", "groupId": self.room,
                                "msgBody": text("\udfff")}])
        return self._text("lone-surrogate", _dumps({**req, "id": rid}),
                          {rid: frozenset({10004, 10007, 10015}) | BUSY})

    def json_value(self) -> Case:
        value = _value(self.rng)
        if isinstance(value, dict) and self.rng.random() < 0.5:
            rid = self.tid()
            return self._text("no-op", _dumps({**value, "id": rid}),
                              {rid: frozenset({10003}) | BUSY})
        return self._text("json-value", _dumps(value), {})

    def random_text(self) -> Case:
        s = "".join(chr(self.rng.randrange(0x20, 0xD7FF)) for _ in range(self.rng.randrange(40)))
        return self._text("random-text", s.encode(), {})

    def corrupted(self) -> Case:
        data = bytearray(_dumps({**_template(self.rng, self.worker, self.sig, self.room),
                                 "id": f"m{self.n}"}))
        for _ in range(self.rng.randrange(1, 4)):
            at = self.rng.randrange(len(data))
            action = self.rng.choice(["flip", "insert", "delete"])
            if action == "flip":
                data[at] = self.rng.randrange(256)
            elif action == "insert":
                data[at:at] = bytes([self.rng.randrange(256)])
            elif len(data) > 1:
                del data[at]
        return self._text("corrupted-bytes", bytes(data), {})

    def binary(self) -> Case:
        payload = self.rng.randbytes(self.rng.randrange(0, 200))
        return Case("binary", [masked(0x2, payload)])

    def ping(self) -> Case:
        payload = self.rng.randbytes(self.rng.randrange(0, 126))
        return Case("ping-frame", [masked(0x9, payload)], pongs=[payload])

    def pong(self) -> Case:
        return Case("pong-frame", [masked(0xA, self.rng.randbytes(self.rng.randrange(0, 126)))])

    def fragmented(self) -> Case:
        rid = self.tid()
        payload = _dumps({"op": "setMyProfile", "nick": "Zoë 火", "id": rid})
        payload = payload.replace(b"\\u00eb", "ë".encode()).replace(b"\\u706b", "火".encode())
        cuts = sorted(self.rng.sample(range(1, len(payload)), self.rng.randrange(1, 6)))
        parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        frames, pongs = [], []
        for i, part in enumerate(parts):
            frames.append(masked(0x1 if i == 0 else 0x0, part, fin=i == len(parts) - 1))
            if self.rng.random() < 0.3 and i < len(parts) - 1:
                pongs.append(self.rng.randbytes(8))
                frames.append(masked(0x9, pongs[-1]))
        return Case("fragmented", [b"".join(frames)], {rid: frozenset({0, 10007}) | BUSY},
                    pongs, frames=len(frames))

    def session(self) -> Case:
        """A valid login and join in one write: what a fresh connection mostly starts with."""
        user = USERS[self.worker]
        login, join = self.tid(), self.tid()
        frames = [masked(0x1, _dumps({"op": "login", "id": login, "sdkAppId": SDKAPPID,
                                      "userId": user, "userSig": self.sig(user)})),
                  masked(0x1, _dumps({"op": "join", "id": join, "groupId": self.room}))]
        return Case("login-join", [b"".join(frames)],
                    {login: frozenset({0}) | BUSY, join: frozenset({0}) | BUSY}, frames=2)

    def split_writes(self) -> Case:
        payload, replies = self.request()
        data = masked(0x1, payload)
        cuts = sorted(self.rng.sample(range(1, len(data)), min(len(data) - 1, 4)))
        return Case("split-writes", [data[a:b] for a, b in
                                     zip([0, *cuts], [*cuts, len(data)], strict=True)],
                    replies, closes=_closes_for(payload))

    def burst(self) -> Case:
        replies, frames = {}, []
        for _ in range(self.rng.randrange(2, 40)):
            rid = self.tid()
            replies[rid] = frozenset({0}) | BUSY
            frames.append(masked(0x1, _dumps({"op": "ping", "id": rid})))
        return Case("burst", [b"".join(frames)], replies, frames=len(frames))

    def flood(self) -> Case:
        """600 requests in one write: past the burst (400 by default) the
        refusals (10023) pass the flood limit (about 100): close 4029."""
        frames = [masked(0x1, _dumps({"op": "ping", "id": f"fl{i}"})) for i in range(600)]
        return Case("flood", [b"".join(frames)], closes=frozenset({4029}), frames=600)

    def wide_length(self) -> Case:
        rid = self.tid()
        return Case("non-minimal-length",
                    [masked(0x1, _dumps({"op": "ping", "id": rid}), wide=self.rng.choice([1, 2]))],
                    {rid: frozenset({0}) | BUSY})

    def bad_key(self) -> Case:
        """The mask bit set but the payload masked with another key: the
        server reads garbage, which is invalid UTF-8 (1007) or not JSON."""
        payload, _ = self.request()
        key, other = os.urandom(4), os.urandom(4)
        data = masked(0x1, payload, key=key)
        head = len(data) - len(payload) - 4
        seen = unmask(other, unmask(key, payload))
        closes = frozenset() if _valid_utf8(seen) else frozenset({1007})
        return Case("bad-mask-key", [data[:head] + other + data[head + 4:]], closes=closes)

    def _text(self, kind: str, payload: bytes, replies: dict[str, frozenset[int]]) -> Case:
        closes = _closes_for(payload)
        if closes:
            return Case(kind, [masked(0x1, payload)], closes=closes)
        return Case(kind, [masked(0x1, payload)], {k: v | BUSY for k, v in replies.items()})

    def case(self) -> Case:
        return self.rng.choices(_CHOICES, _WEIGHTS)[0](self)

    # -- frames that break RFC 6455
    def broken(self) -> Case:
        rng, ping = self.rng, _dumps({"op": "ping"})
        kind, data, code, *count = rng.choice([
            ("unmasked", lambda: masked(0x1, ping, mask=False), 1002),
            ("reserved-bits", lambda: masked(0x1, ping, rsv=rng.randrange(1, 8)), 1002),
            ("unknown-opcode", lambda: masked(rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]),
                                              ping), 1002),
            ("stray-continuation", lambda: masked(0x0, ping), 1002),
            ("fragmented-control", lambda: masked(rng.choice([0x8, 0x9, 0xA]), b"", fin=False),
             1002),
            ("long-control", lambda: masked(rng.choice([0x8, 0x9, 0xA]), b"\x03\xe8" + b"x" * 130),
             1002),
            ("length-top-bit", lambda: struct.pack("!BBQ", 0x81, 0xFF, 2**63 + 5)
             + os.urandom(4), 1002),
            ("oversized", lambda: masked(0x1, b'"' + b"x" * rng.randrange(65535, 70000) + b'"'),
             1009),
            ("oversized-fragments", lambda: masked(0x1, b"x" * 40000, fin=False)
             + masked(0x0, b"x" * 30000), 1009, 2),
            # each fragment costs a request token: past the budget (LIVECAST_REQ_BURST)
            # the flood close may come before the fragment count's
            ("too-many-fragments", lambda: masked(0x1, b"[", fin=False)
             + masked(0x0, b" ", fin=False) * 1024 + masked(0x0, b"]"),
             frozenset({1008, 4029}), 1026),
            ("message-inside-fragments", lambda: masked(0x1, b"[", fin=False)
             + masked(rng.choice([0x1, 0x2]), b"1"), 1002, 2),
            ("invalid-utf8", lambda: masked(0x1, b'{"op":"ping","x":"\xff\xfe"}'), 1007),
            ("invalid-utf8-fragment", lambda: masked(0x1, b'{"x":"\xc3\x28', fin=False), 1007),
            ("close-empty", lambda: masked(0x8, b""), 1000),
            ("close-one-byte", lambda: masked(0x8, b"\x03"), 1002),
            ("close-bad-code", lambda: masked(0x8, struct.pack(
                "!H", rng.choice([0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000]))),
             1002),
            ("close-bad-reason", lambda: masked(0x8, b"\x03\xe8\xff"), 1007),
        ])
        if rng.random() < 0.15:  # a valid close code is echoed (1000 for one outside 3000-4999)
            code = rng.choice([1000, 1001, 1002, 1003, 1007, 1011, 3000, 4000, 4999])
            echo = code if code in (1000, 1001) or 3000 <= code < 5000 else 1000
            return Case("close", [masked(0x8, struct.pack("!H", code) + b"bye")],
                        closes=frozenset({echo}))
        closes = frozenset({code}) if isinstance(code, int) else code
        return Case(kind, [data()], closes=closes, frames=count[0] if count else 1)


def _closes_for(payload: bytes) -> frozenset[int]:
    if len(payload) > 65536:
        return frozenset({1009})
    if not _valid_utf8(payload):
        return frozenset({1007})
    return frozenset()


WEIGHTS: list[tuple[Callable[[Draw], Case], int]] = [
    (Draw.mutated, 30), (Draw.valid, 10), (Draw.surrogate, 4), (Draw.json_value, 5),
    (Draw.random_text, 4), (Draw.corrupted, 8), (Draw.binary, 3), (Draw.ping, 3),
    (Draw.pong, 3), (Draw.fragmented, 5), (Draw.split_writes, 3), (Draw.burst, 3),
    (Draw.wide_length, 2), (Draw.bad_key, 2), (Draw.broken, 12), (Draw.flood, 1),
]
_CHOICES = [fn for fn, _ in WEIGHTS]
_WEIGHTS = [w for _, w in WEIGHTS]
