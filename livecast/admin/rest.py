"""Tencent-compatible REST API: ``POST /v4/<service>/<command>``.

Envelope and auth (spec/tencent-reference.md section 1): HTTP 200 always,
``ActionStatus``/``ErrorCode``/``ErrorInfo``; the caller is an app admin with
a valid UserSig.  Dispatch is one table ``(service, command) -> handler``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from livecast.core.usersig import verify
from livecast.errors import Code, LivecastError
from livecast.node.hub import Node

log = logging.getLogger("livecast.admin")

Body = dict[str, Any]
Command = Callable[[Node, str, Body], Awaitable[Body]]
COMMANDS: dict[tuple[str, str], Command] = {}
MAX_BODY = 1 << 20


def command(service: str, *names: str) -> Callable[[Command], Command]:
    def register(fn: Command) -> Command:
        for name in names:
            COMMANDS[(service, name)] = fn
        return fn
    return register


def envelope(code: int = 0, info: str = "", **fields: Any) -> web.Response:
    body = {"ActionStatus": "OK" if code == 0 else "FAIL", "ErrorCode": int(code),
            "ErrorInfo": info, **fields}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _auth(node: Node, query: Any) -> str:
    s = node.settings
    try:
        sdkappid = int(query.get("sdkappid", ""))
    except ValueError:
        raise LivecastError(Code.BAD_SDKAPPID, "sdkappid is missing or not a number") from None
    if sdkappid != s.sdkappid:
        raise LivecastError(Code.BAD_SDKAPPID, "invalid SDKAppID")
    identifier = query.get("identifier", "")
    code = verify(query.get("usersig", ""), s.sdkappid, s.secret_key.value, identifier,
                  node.clock())
    if code:
        raise LivecastError(code, "UserSig verification failed")
    if not s.is_admin(identifier):
        raise LivecastError(Code.NEED_ADMIN, "request requires app admin permissions")
    return str(identifier)


async def handle(request: web.Request) -> web.Response:
    from livecast.gateway.ws import NODE

    node = request.app[NODE]
    key = (request.match_info["service"], request.match_info["command"])
    try:
        caller = _auth(node, request.query)
        fn = COMMANDS.get(key)
        if fn is None:
            raise LivecastError(Code.BAD_URL, f"unknown command {key[0]}/{key[1]}")
        body = await _read_body(request)
        result = await fn(node, caller, body)
    except LivecastError as err:
        return envelope(err.code, err.info)
    return envelope(0, "", **result)


async def _read_body(request: web.Request) -> Body:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise LivecastError(Code.HTTP_PARSE, "request body too large")
    if not raw.strip():
        raise LivecastError(Code.JSON_PARSE, "empty body: send {} when no fields are needed")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LivecastError(Code.JSON_PARSE, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise LivecastError(Code.JSON_PARSE, "request body must be a JSON object")
    return body


def field(body: Body, name: str, kind: type, required: bool = True, default: Any = None) -> Any:
    """One typed field of a request body, or 10004 naming it."""
    if name not in body:
        if required:
            raise LivecastError(Code.BAD_PARAMETER, f"{name} is required")
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LivecastError(Code.BAD_PARAMETER, f"{name} must be {kind.__name__}")
    return value


# ------------------------------------------------------------------ commands
SVC = "group_open_http_svc"


@command(SVC, "create_group")
async def create_group(node: Node, caller: str, body: Body) -> Body:
    from livecast.core.group import validate_custom_group_id

    kind = field(body, "Type", str)
    if kind != "AVChatRoom":
        raise LivecastError(Code.NO_PERMISSION, "only AVChatRoom groups are served")
    field(body, "Name", str)
    if "MemberList" in body:
        raise LivecastError(Code.NO_PERMISSION, "AVChatRoom takes no MemberList")
    gid = body.get("GroupId")
    if gid is not None:
        gid = validate_custom_group_id(gid)
    owner = field(body, "Owner_Account", str, required=False, default=caller)
    group = node.create_group(owner, body, gid)
    return {"GroupId": group.group_id}


@command(SVC, "destroy_group")
async def destroy_group(node: Node, caller: str, body: Body) -> Body:
    node.destroy_group(field(body, "GroupId", str))
    return {}
