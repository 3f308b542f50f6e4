"""The admin REST command table and typed access to request bodies.

One table maps ``(service, command)`` to a handler (STYLE.md habit 7);
handler modules register with ``@command(service, name, ...)`` and
``livecast.admin.rest`` dispatches through ``COMMANDS``.

Invariants every handler keeps (docs/rest.md, "Conventions of every command"):
- it validates the *whole* request before it changes anything, and the
  validation and the change run without an ``await`` in between, so a refused
  request leaves no trace and no other request interleaves with a change;
- bad remote input raises ``LivecastError``; the field helpers below raise
  10004 (``BAD_PARAMETER``), which the dispatch re-codes per service
  (``BAD_PARAMETER_OF``: 70402 for im_open_login_svc, 40001 for profile);
- an explicit JSON ``null`` is a wrong type for every field except
  ``CloudCustomData`` (core/messages.py treats it as ``""``); fields a
  handler does not know are ignored, whatever their type.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from livecast.admin.state import AdminState
from livecast.core.group import is_valid_group_id
from livecast.core.group_fields import bad, check_int, check_text, check_user
from livecast.errors import Code, LivecastError
from livecast.node.node import Node
from livecast.node.owner import RoomOwner

Body = dict[str, Any]

# Codes the reference gives but errors.Code does not hold yet (section 7.4, profile API).
LOGIN_BAD_PARAMETER = Code.LOGIN_BAD_PARAMETER
PROFILE_BAD_PARAMETER = Code.PROFILE_BAD_PARAMETER
# The bad-parameter code of each service whose code is not 10004.
BAD_PARAMETER_OF: dict[str, int] = {
    "im_open_login_svc": LOGIN_BAD_PARAMETER,
    "profile": PROFILE_BAD_PARAMETER,
}
UINT32_MAX = 4294967295


@dataclass(frozen=True, slots=True)
class Call:
    """One authenticated admin request: the node, the admin identifier, admin state."""

    node: Node
    caller: str
    state: AdminState
    client_ip: str = ""     # ClientIP of the callbacks this request causes


Command = Callable[[Call, Body], Awaitable[Body]]
COMMANDS: dict[tuple[str, str], Command] = {}


def command(service: str, *names: str) -> Callable[[Command], Command]:
    """Register a handler under ``service`` for each of ``names``."""
    def register(fn: Command) -> Command:
        for name in names:
            if (service, name) in COMMANDS:
                raise RuntimeError(f"{service}/{name} registered twice")
            COMMANDS[(service, name)] = fn
        return fn
    return register


def refuse(code: int, info: str) -> Command:
    """A handler that checks the group exists, then answers ``code``."""
    async def refused(call: Call, body: Body) -> Body:
        room_of(call.node, body)
        raise LivecastError(code, info)
    return refused


# ------------------------------------------------------------ field access
def required(body: Body, name: str) -> object:
    if name not in body:
        raise bad(f"{name} is required")
    return body[name]


def text(body: Body, name: str, limit: int, *, default: str | None = None,
         min_bytes: int = 0) -> str:
    """A string field of ``min_bytes``..``limit`` UTF-8 bytes; required unless ``default``."""
    if name not in body and default is not None:
        return default
    return check_text(required(body, name), name, limit, min_bytes=min_bytes)


def integer(body: Body, name: str, low: int, high: int, *, default: int | None = None) -> int:
    """An int field (never a bool) in ``low``..``high``; required unless ``default``."""
    if name not in body and default is not None:
        return default
    return check_int(required(body, name), name, low, high)


def user(body: Body, name: str, *, default: str | None = None) -> str:
    """A UserID field (1..32 bytes); required unless ``default``."""
    if name not in body and default is not None:
        return default
    return check_user(required(body, name), name)


def array(body: Body, name: str, *, most: int, least: int = 1,
          too_many: int = Code.BAD_PARAMETER) -> list[Any]:
    """A required array of ``least``..``most`` items; past ``most`` answers ``too_many``."""
    value = required(body, name)
    if not isinstance(value, list):
        raise bad(f"{name} must be an array")
    if len(value) > most:
        raise LivecastError(too_many, f"{name} holds {len(value)} items, at most {most}")
    if len(value) < least:
        raise bad(f"{name} must hold at least {least} item(s)")
    return value


def users(body: Body, name: str, *, most: int, too_many: int = Code.TOO_MANY_ACCOUNTS) -> list[str]:
    """A required, non-empty array of UserIDs, duplicates removed (order kept)."""
    items = array(body, name, most=most, too_many=too_many)
    return list(dict.fromkeys(check_user(u, name) for u in items))


def strings(value: object, name: str, *, most: int = 1000) -> list[str]:
    """An array of at most ``most`` strings."""
    if not isinstance(value, list) or len(value) > most:
        raise bad(f"{name} must be an array of at most {most} strings")
    for item in value:
        if not isinstance(item, str):
            raise bad(f"{name} must hold strings only")
    return value


def one_of(body: Body, name: str, choices: Iterable[str]) -> str | None:
    """An optional string field that must be one of ``choices``."""
    if name not in body:
        return None
    value = body[name]
    allowed = tuple(choices)
    if not isinstance(value, str) or value not in allowed:
        raise bad(f"{name} must be one of {', '.join(allowed)}")
    return value


def typed(body: Body, name: str, kind: type) -> None:
    """An optional field Tencent documents and livecast ignores: check its type only."""
    if name in body:
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"{name} must be {_KIND_NAMES.get(kind, kind.__name__)}")


_KIND_NAMES = {int: "an integer", str: "a string", list: "an array", dict: "an object"}


def group_id(body: Body) -> str:
    """``GroupId``: required (10004), a string (10004), a valid id (10015)."""
    gid = required(body, "GroupId")
    if not isinstance(gid, str):
        raise bad("GroupId must be a string")
    if not is_valid_group_id(gid):
        raise LivecastError(Code.INVALID_GROUP_ID, "invalid GroupId")
    return gid


def room_of(node: Node, body: Body) -> RoomOwner:
    """The live room named by ``GroupId`` (10004 / 10015 / 10010)."""
    return node.room(group_id(body))
