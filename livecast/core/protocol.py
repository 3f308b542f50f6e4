"""Client frames of the WebSocket protocol, version 1 (docs/protocol.md).

``parse_frame`` turns one text frame into a ``Request`` (op, id, validated
args with defaults filled in) or a ``FrameError`` (the reply code, and
whether the frame counts toward the 4009 protocol-violation limit). It never
raises, whatever the input: remote misbehaviour is a value (STYLE.md habit 1).
The fields of each op are ``OpSpec`` values here; the one op table that
holds them, row by row with the handlers (``livecast.gateway.ws.OPS``), is
passed in, so a table, not a ladder, says which ops exist.

Invariants and decisions (the contract page leaves these open):

* The envelope is a JSON object of at most ``MAX_FRAME_BYTES`` UTF-8 bytes.
  Not JSON, invalid UTF-8, not an object, or too large: 10004, violation,
  ``id`` None (it cannot be told, so no reply is sent).
* ``id`` is optional; when present (and not null) it is an int (64-bit range,
  not bool) or a str of at most ``MAX_ID_CHARS`` characters. Any other id:
  10004, violation, ``id`` None. A frame without ``id`` parses normally but
  its ``FrameError`` has ``id`` None: only requests with an id get a reply.
* No known ``op`` (missing, not a string, or not in the op table): 10003
  BAD_COMMAND, violation, with the id.
* Shape errors are violations, because a correct client never sends them:
  a missing required field, a field of the wrong JSON type (``null`` for a
  required field included), ``msgBody`` that is not an array. All answer
  10004.
* Value errors are answered but are not violations, because the values come
  from end users or from a newer client: a group id that is empty, longer
  than 48 bytes or not printable ASCII (10015), a ``userId`` that is not 1..32
  printable ASCII characters (10004), an unknown ``priority`` name or a
  ``random`` outside 0..4294967295 (10004), ``nick`` over 64 or ``avatar``
  over 500 UTF-8 bytes (10004), a malformed message element (10004,
  livecast.core.messages), and a message over 12 KB (80002).
* ``null`` for an optional field means absent: its default is used, or, for
  ``nick``/``avatar`` (no default: "leave unchanged"), it is left out of args.
* Unknown fields, in the envelope or among an op's fields, are ignored.
* ``userSig`` is only type-checked here; an empty one is the UserSig
  verifier's 70002.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Protocol

import orjson

from livecast.core.group_attrs import parse_key_list, parse_map
from livecast.core.group_ids import is_valid_group_id
from livecast.core.messages import (
    MAX_ELEMENTS,
    MAX_MSG_BYTES,
    check_size,
    message_size,
    plain_element,
    validate_msg_body,
)
from livecast.errors import Code, LivecastError

MAX_FRAME_BYTES = 64 * 1024
MAX_ID_CHARS = 64
MAX_USER_ID_BYTES = 32
MAX_NICK_BYTES = 64
MAX_AVATAR_BYTES = 500
UINT32_MAX = 2**32 - 1
PRIORITIES: tuple[str, ...] = ("High", "Normal", "Low", "Lowest")
KICK_REASONS: frozenset[str] = frozenset({"multiLogin", "banned", "groupDestroyed", "slow"})
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


@dataclass(slots=True, unsafe_hash=True)
class Request:
    """A well-formed client request (one per frame: slotted, not frozen, whose
    __init__ costs about 0.3 us more; nothing changes it once made)."""

    op: str
    id: int | str | None
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FrameError:
    """A refused frame: the reply to send (when ``id`` is not None)."""

    code: int
    info: str
    id: int | str | None
    violation: bool


class _Violation(LivecastError):
    """A shape error: answered like any LivecastError, and counted toward 4009."""


# -- field checks: (field name, raw value) -> validated value -----------------

Check = Callable[[str, Any], Any]


def _str(name: str, v: object) -> str:
    if not isinstance(v, str):
        raise _Violation(Code.BAD_PARAMETER, f"{name} must be a string")
    return v


def _int(name: str, v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _Violation(Code.BAD_PARAMETER, f"{name} must be an integer")
    return v


def _ranged_int(name: str, v: object, lo: int, hi: int) -> int:
    """An integer (else a violation) within ``lo..hi`` (else a bad value:
    answered, not a violation)."""
    n = _int(name, v)
    if not lo <= n <= hi:
        raise LivecastError(Code.BAD_PARAMETER, f"{name} must be in {lo}..{hi}")
    return n


def _printable_ascii(s: str, max_bytes: int) -> bool:
    return 0 < len(s) <= max_bytes and s.isascii() and s.isprintable()


def _group_id(name: str, v: object) -> str:
    if is_valid_group_id(v):  # a str: the common case in one call
        return v  # type: ignore[return-value]
    s = _str(name, v)
    if not is_valid_group_id(s):
        raise LivecastError(Code.INVALID_GROUP_ID, f"{name} must be 1..48 printable ASCII bytes")
    return s


def _user_id(name: str, v: object) -> str:
    s = _str(name, v)
    if not _printable_ascii(s, MAX_USER_ID_BYTES):
        raise LivecastError(Code.BAD_PARAMETER, f"{name} must be 1..32 printable ASCII bytes")
    return s


def _utf8_at_most(limit: int) -> Check:
    def check(name: str, v: object) -> str:
        s = _str(name, v)
        try:
            ok = len(s) <= limit and len(s.encode("utf-8")) <= limit
        except UnicodeEncodeError:
            ok = False
        if not ok:
            raise LivecastError(Code.BAD_PARAMETER, f"{name} must be at most {limit} UTF-8 bytes")
        return s

    return check


def _priority(name: str, v: object) -> str:
    if v.__class__ is str and v in PRIORITIES:  # the common case without a call
        return v
    s = _str(name, v)
    if s not in PRIORITIES:
        raise LivecastError(Code.BAD_PARAMETER, f"{name} must be one of {', '.join(PRIORITIES)}")
    return s


def _uint32(name: str, v: object) -> int:
    if v.__class__ is int and 0 <= v <= UINT32_MAX:
        return v
    n = _int(name, v)
    if not 0 <= n <= UINT32_MAX:
        raise LivecastError(Code.BAD_PARAMETER, f"{name} must be in 0..{UINT32_MAX}")
    return n


def _msg_body(name: str, v: object) -> list[dict[str, Any]]:
    if not isinstance(v, list):
        raise _Violation(Code.BAD_PARAMETER, f"{name} must be an array")
    return validate_msg_body(v)


def _attr_map(name: str, v: object) -> list[tuple[str, str]]:
    """Group attributes ``{key: value}`` (limits: core/group_attrs.py)."""
    if not isinstance(v, dict):
        raise _Violation(Code.BAD_PARAMETER, f"{name} must be an object")
    return parse_map(v, name)


def _attr_keys(name: str, v: object) -> list[str]:
    """Group attribute keys ``[key, ...]``."""
    if not isinstance(v, list):
        raise _Violation(Code.BAD_PARAMETER, f"{name} must be an array")
    return parse_key_list(v, name)


def _send_size(args: dict[str, Any]) -> None:
    check_size(args["msgBody"], args["cloudCustomData"])


def _quick_send(frame: dict[str, Any]) -> dict[str, Any] | None:
    """A ``send`` in its common shape (text and at most one custom element,
    every field of its usual type and value) validated in one step: the same
    args, in the same order, that the field checks give it; None for any other
    shape, which the field checks then judge (and answer with its code)."""
    gid = frame.get("groupId")
    if not is_valid_group_id(gid):
        return None
    priority = frame.get("priority")
    if priority is None:
        priority = "Normal"
    elif priority.__class__ is not str or priority not in PRIORITIES:
        return None
    rand = frame.get("random")
    if rand is None:
        rand = 0
    elif rand.__class__ is not int or not 0 <= rand <= UINT32_MAX:
        return None
    data = frame.get("cloudCustomData")
    if data is None:
        data = ""
    elif data.__class__ is not str:
        return None
    body = frame.get("msgBody")
    if body.__class__ is not list or not 0 < len(body) <= MAX_ELEMENTS:
        return None
    customs = 0
    for elem in body:
        kind = plain_element(elem)
        if not kind:
            return None
        customs += kind - 1
    if customs > 1:
        return None
    try:
        if message_size(body, data) > MAX_MSG_BYTES:
            return None
    except LivecastError:
        return None
    return {"groupId": gid, "msgBody": body, "priority": priority, "random": rand,
            "cloudCustomData": data}


# -- the op table ---------------------------------------------------------------


class _Omit:
    """Default of an optional field that is left out of args when absent."""


OMIT: Final = _Omit()


@dataclass(frozen=True, slots=True)
class Field:
    """One field of an op: its check, and what absence means."""

    name: str
    check: Check
    required: bool = True
    default: object = OMIT


@dataclass(frozen=True, slots=True)
class OpSpec:
    """An op's fields, and a check over the validated args (run last)."""

    fields: tuple[Field, ...] = ()
    post: Callable[[dict[str, Any]], None] | None = None
    # the common shape validated in one step: the args the fields give it, or
    # None (then the fields decide); must agree with them (tests/core/test_protocol.py)
    quick: Callable[[dict[str, Any]], dict[str, Any] | None] | None = field(
        default=None, compare=False)
    # the fields as plain tuples, read once per request (``_parse_args``)
    rows: tuple[tuple[str, Check, bool, object], ...] = field(init=False, repr=False,
                                                              compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple((f.name, f.check, f.required, f.default)
                                               for f in self.fields))


class Kind(Enum):
    """An op's place in the order of a connection's requests (docs/protocol.md,
    "Order of requests"; the rules are carried out by ``gateway.ws.Order``)."""

    FREE = "free"  # answered at once (ping)
    READ = "read"  # waits for the CHANGE and the READ before it
    SEND = "send"  # waits for the CHANGE before it; sends reach the room in order
    CHANGE = "change"  # waits for every earlier request; every later one waits for it


class Needs(Enum):
    """What an op needs of the connection's phase when it is carried out
    (``core.session.Session.refusal``)."""

    ANY = "any"
    NO_LOGIN = "no login"  # login: not logged in yet
    LOGIN = "login"  # the user's own profile: logged in
    READER = "reader"  # a room's public reads: logged in, or guests allowed


class HasSpec(Protocol):
    """A row of an op table as ``parse_frame`` reads it: the op's fields."""

    @property
    def spec(self) -> OpSpec: ...


# The fields of each op.  The op table itself (one row per op: these fields,
# the handler, the hooked handler, the kind, what it needs) is
# ``livecast.gateway.ws.OPS``; ``parse_frame`` takes it as an argument.
_GROUP = (Field("groupId", _group_id),)
# recent messages and recovery (docs/protocol.md, join): both optional
_JOIN_HISTORY = (Field("history", lambda n, v: _ranged_int(n, v, 0, 1000), required=False),
                 Field("sinceSeq", lambda n, v: _ranged_int(n, v, 0, 2**53), required=False),
                 Field("historyEpoch", lambda n, v: _ranged_int(n, v, 0, 2**63),
                       required=False))
_ATTR_SEQ = Field("attrSeq", _int)  # compare-and-set: the attrSeq the member last saw
LOGIN = OpSpec((Field("sdkAppId", _int), Field("userId", _user_id), Field("userSig", _str)))
GROUP = OpSpec(_GROUP)  # join, quit, getGroupInfo, getOnlineMemberNum
JOIN = OpSpec((*_GROUP, *_JOIN_HISTORY))  # join's own: the history fields
SEND = OpSpec(
    (
        *_GROUP,
        Field("msgBody", _msg_body),
        Field("priority", _priority, required=False, default="Normal"),
        Field("random", _uint32, required=False, default=0),
        Field("cloudCustomData", _str, required=False, default=""),
    ),
    post=_send_size,
    quick=_quick_send,
)
SET_PROFILE = OpSpec(
    (
        Field("nick", _utf8_at_most(MAX_NICK_BYTES), required=False),
        Field("avatar", _utf8_at_most(MAX_AVATAR_BYTES), required=False),
    )
)
NO_FIELDS = OpSpec()  # getMyProfile, ping
GET_ATTRS = OpSpec((*_GROUP, Field("keyList", _attr_keys, required=False)))
ATTR_WRITE = OpSpec((*_GROUP, Field("groupAttributes", _attr_map), _ATTR_SEQ))
ATTR_DELETE = OpSpec((*_GROUP, Field("keyList", _attr_keys, required=False), _ATTR_SEQ))


# -- parsing --------------------------------------------------------------------


def _too_large(data: str | bytes) -> bool:
    n = len(data)
    if isinstance(data, str) and MAX_FRAME_BYTES // 4 < n <= MAX_FRAME_BYTES:
        n = len(data.encode("utf-8", "surrogatepass"))
    return n > MAX_FRAME_BYTES


def _decode(data: object) -> dict[str, Any] | FrameError:
    """The envelope object, or a FrameError with no id."""
    if data.__class__ is bytes:  # the frame reader's: its length is its size
        too_large = len(data) > MAX_FRAME_BYTES
    elif isinstance(data, (str, bytes)):
        too_large = _too_large(data)
    else:
        return FrameError(Code.BAD_PARAMETER, "frame must be text", None, True)
    if too_large:
        return FrameError(Code.BAD_PARAMETER, "frame too large", None, True)
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _lone_surrogate(data) or FrameError(Code.BAD_PARAMETER, "frame is not valid JSON",
                                                   None, True)
    if not isinstance(frame, dict):
        return FrameError(Code.BAD_PARAMETER, "frame is not a JSON object", None, True)
    return frame


def _lone_surrogate(data: str | bytes) -> FrameError | None:
    """A frame that is JSON but for a lone surrogate escape (``"\\ud800"``, which
    no UTF-8 text can hold): refused with its id, like any invalid field.
    The standard library's parser reads such escapes; orjson refuses them."""
    try:  # NaN, Infinity or 1e400 are no JSON either: the standard parser
        frame = json.loads(data, parse_constant=_no_constant)  # takes them
    except (ValueError, RecursionError, OverflowError):
        return None
    if not _holds_lone_surrogate(frame):
        return None  # refused by orjson for another reason (1e400): not valid JSON
    rid = frame.get("id") if isinstance(frame, dict) else None
    known = _valid_id(rid) and rid is not None and _unicode(rid)  # answerable as it came
    return FrameError(Code.BAD_PARAMETER, "a string holds a lone surrogate escape (\\ud800 to "
                      "\\udfff): not valid Unicode", rid if known else None, not known)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _holds_lone_surrogate(v: object, depth: int = 0) -> bool:
    if isinstance(v, str):
        return not _unicode(v)
    if depth > 64:
        return False
    if isinstance(v, dict):
        return any(_holds_lone_surrogate(k, depth + 1) or _holds_lone_surrogate(x, depth + 1)
                   for k, x in v.items())
    if isinstance(v, list):
        return any(_holds_lone_surrogate(x, depth + 1) for x in v)
    return False


def _unicode(v: object) -> bool:
    """False for a string holding a lone surrogate (no reply could carry it)."""
    if not isinstance(v, str):
        return True
    try:
        v.encode()
    except UnicodeEncodeError:
        return False
    return True


def _valid_id(v: object) -> bool:
    if isinstance(v, str):
        return len(v) <= MAX_ID_CHARS
    if isinstance(v, int) and not isinstance(v, bool):
        return _INT_MIN <= v <= _INT_MAX
    return v is None


def _parse_args(spec: OpSpec, frame: dict[str, Any]) -> dict[str, Any]:
    if spec.quick is not None:
        quick = spec.quick(frame)
        if quick is not None:
            return quick
    args: dict[str, Any] = {}
    for name, check, required, default in spec.rows:
        value = frame.get(name)
        if value is not None:
            args[name] = check(name, value)
        elif required:
            raise _Violation(Code.BAD_PARAMETER, f"missing {name}")
        elif default is not OMIT:
            args[name] = default
    if spec.post is not None:
        spec.post(args)
    return args


def parse_frame(data: str | bytes, ops: Mapping[str, HasSpec]) -> Request | FrameError:
    """Parse one client frame against the op table ``ops``; never raises
    (module docstring)."""
    frame = _decode(data)
    if isinstance(frame, FrameError):
        return frame
    rid = frame.get("id")
    # an int id (the common case) checked in place; bools and the rest by _valid_id
    valid = _INT_MIN <= rid <= _INT_MAX if rid.__class__ is int else _valid_id(rid)
    if not valid:
        info = f"id must be an integer or a string of at most {MAX_ID_CHARS} characters"
        return FrameError(Code.BAD_PARAMETER, info, None, True)
    op = frame.get("op")
    if not isinstance(op, str) or (row := ops.get(op)) is None:
        return FrameError(Code.BAD_COMMAND, "unknown op", rid, True)
    try:
        args = _parse_args(row.spec, frame)
    except LivecastError as exc:
        return FrameError(exc.code, exc.info, rid, isinstance(exc, _Violation))
    return Request(op, rid, args)


# -- replies and pushes (pure dicts; the server encodes them once) ---------------


def reply(id: int | str | None, code: int = 0, info: str = "", **fields: Any) -> dict[str, Any]:
    """``{"op":"reply","id":..,"code":..,"info":..,...result fields}``."""
    return {"op": "reply", "id": id, "code": int(code), "info": info, **fields}


def error_reply(err: FrameError) -> dict[str, Any] | None:
    """The reply to a refused frame, or None when its id is unknown (no reply)."""
    if err.id is None:
        return None
    return reply(err.id, err.code, err.info)


def kicked(reason: str) -> dict[str, Any]:
    """``{"op":"kicked","reason":..}``, sent before closing for that reason."""
    if reason not in KICK_REASONS:
        raise ValueError(f"unknown kick reason {reason!r}")
    return {"op": "kicked", "reason": reason}
