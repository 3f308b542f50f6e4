"""Tencent-compatible REST API: ``POST /v4/<service>/<command>``.

Envelope (docs/rest.md, "Calling the API"): HTTP 200 always, a JSON object with
``ActionStatus`` (``OK``/``FAIL``), ``ErrorCode`` (0 = success) and
``ErrorInfo``; the ``profile`` service adds ``ErrorDisplay`` as Tencent's does.

Checks, in this order (docs/rest.md, "Order of checks"); the first failing one
answers:
0. the caller's IP is not locked out after repeated failures of 1-2
   (docs/rest.md, "Failed authentication")                         -> 70050
1. ``sdkappid`` is this app's                                      -> 60006
2. ``usersig`` is a valid UserSig of ``identifier`` (core/usersig.py), not
   issued at or before a kick of ``identifier``                    -> 70xxx
3. ``identifier`` is a configured app admin                        -> 60010
4. ``(service, command)`` is in the table: an unknown command of a group
   service -> 10003, any other unknown path -> 60009
5. the body: at most 1 MiB (60002), non-empty, UTF-8 JSON, an object (60003)
6. the handler's own validation (10004 re-coded per service, 10015, ...)
So nothing about the server is told to a caller who is not an
authenticated admin. Any other method than POST answers 60002 before these
checks (``wrong_method``). Anything else a handler raises is a bug: it is logged
and answered 10002, never an HTTP 500.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiohttp import web

# Handler modules register themselves in the table when imported.
from livecast.admin import accounts, attrs, counters, extension, groups, members, messages
from livecast.admin.groups import MAX_INFO_IDS
from livecast.admin.table import BAD_PARAMETER_OF, COMMANDS, Body, Call
from livecast.core.admission import retry_hint
from livecast.core.group_ids import is_valid_group_id
from livecast.core.usersig import verify
from livecast.errors import Code, LivecastError
from livecast.gateway.admission import gates, limited_ip
from livecast.gateway.keys import ADMIN, NODE
from livecast.node.node import Node
from livecast.runner import UNREADABLE_BODY

__all__ = ["COMMANDS", "MAX_BODY", "envelope", "handle", "wrong_method"]

log = logging.getLogger("livecast.admin")

_HANDLER_MODULES = (accounts, attrs, counters, extension, groups, members, messages)
MAX_BODY = 1 << 20
MAX_LOOKUPS = MAX_INFO_IDS  # rooms of a GroupIdList looked up in the store (more: 10004)
GROUP_SERVICES = frozenset({"group_open_http_svc", "group_open_avchatroom_http_svc",
                            "group_open_attr_http_svc"})
# Fields some services add to every answer (1.2: profile answers carry ErrorDisplay).
EXTRA_FIELDS: dict[str, dict[str, Any]] = {"profile": {"ErrorDisplay": ""}}


def envelope(code: int = 0, info: str = "", **fields: Any) -> web.Response:
    body = {"ActionStatus": "OK" if code == 0 else "FAIL", "ErrorCode": int(code),
            "ErrorInfo": info, **fields}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def handle(request: web.Request) -> web.Response:
    node = request.app[NODE]
    service, name = request.match_info["service"], request.match_info["command"]
    extra = EXTRA_FIELDS.get(service, {})
    try:
        result = await _serve(request, node, service, name)
    except LivecastError as err:
        code = err.code
        if code == Code.BAD_PARAMETER:
            code = BAD_PARAMETER_OF.get(service, code)
        return envelope(code, err.info, **extra)
    except Exception:
        log.exception("REST %s/%s failed", service, name)
        return envelope(Code.INTERNAL, "internal error", **extra)
    return envelope(0, "", **extra, **result)


async def wrong_method(request: web.Request) -> web.Response:
    """Any method but POST (1.1: POST only): the envelope, HTTP 200 as for every
    refusal, so a client that reads the body reports why."""
    extra = EXTRA_FIELDS.get(request.match_info["service"], {})
    response = envelope(Code.HTTP_PARSE, f"REST requests must use POST, not {request.method}",
                        **extra)
    response.headers["Allow"] = "POST"
    return response


async def _serve(request: web.Request, node: Node, service: str, name: str) -> Body:
    caller = _guarded_auth(node, request.query, request.remote or "")
    fn = COMMANDS.get((service, name))
    if fn is None:
        code = Code.BAD_COMMAND if service in GROUP_SERVICES else Code.BAD_URL
        raise LivecastError(code, f"unknown command {service}/{name}")
    body = await _read_body(request)
    if node.cluster is not None:
        await _look_up_rooms(node, body)
    return await fn(Call(node, caller, request.app[ADMIN], request.remote or ""), body)


async def _look_up_rooms(node: Node, body: Body) -> None:
    """Cluster: the rooms a call names (``GroupId``, ``GroupIdList``) that this
    process does not know are read from the store first: another process may
    have just created them (cluster.py invariant 10).  One still unknown is
    answered as before (10010); a bad id is the command's to refuse."""
    named = [body.get("GroupId")]
    listed = body.get("GroupIdList")
    if isinstance(listed, list):
        named.extend(listed[:MAX_LOOKUPS])
    unknown = {gid for gid in named
               if isinstance(gid, str) and gid not in node.rooms and is_valid_group_id(gid)}
    # together: a slow store is waited for once; a REST call skips the
    # remembered misses (a room may have just been made elsewhere)
    await asyncio.gather(*(node.link.find(gid, fresh=True) for gid in unknown))


def _guarded_auth(node: Node, query: Any, remote: str) -> str:
    """``_auth``, with the failures of each IP counted: the
    ``LIVECAST_AUTH_FAIL_LIMIT``-th within ``LIVECAST_AUTH_FAIL_WINDOW`` seconds
    and every call for ``LIVECAST_AUTH_LOCKOUT`` seconds after it answer
    70050, checked or not (loopback exempt unless LIVECAST_ADMISSION_LOOPBACK)."""
    ip = limited_ip(node, remote)
    if ip is None:
        try:
            return _auth(node, query)
        except LivecastError as err:
            if err.code != Code.NEED_ADMIN:
                node.metrics.auth_failures.inc()
            raise
    lockout, now = gates(node).auth, time.monotonic()
    locked = lockout.locked(ip, now)
    if locked:
        node.metrics.auth_locked.inc()
        raise LivecastError(Code.AUTH_LOCKED, _locked_info(locked))
    try:
        caller = _auth(node, query)
    except LivecastError as err:
        if err.code == Code.NEED_ADMIN:  # a valid UserSig, just not an admin's
            raise
        node.metrics.auth_failures.inc()
        started = lockout.failed(ip, now)
        if started:
            node.metrics.auth_locked.inc()
            raise LivecastError(Code.AUTH_LOCKED, _locked_info(started)) from None
        raise
    lockout.succeeded(ip)
    return caller


def _locked_info(seconds: float) -> str:
    return f"too many failed attempts, retry after {retry_hint(seconds)} s"


def _auth(node: Node, query: Any) -> str:
    s = node.settings
    raw = str(query.get("sdkappid", ""))
    # int() would take " 14", "+14" and "1_4", and refuse 4,301 digits with a ValueError
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise LivecastError(Code.BAD_SDKAPPID, "sdkappid is missing or not a number")
    if int(raw) != s.sdkappid:
        raise LivecastError(Code.BAD_SDKAPPID, "invalid SDKAppID")
    identifier = str(query.get("identifier", ""))
    code = verify(str(query.get("usersig", "")), s.sdkappid, s.secret_key.value, identifier,
                  node.clock(), node.kicks.kicked_at(identifier))
    if code:
        raise LivecastError(code, "UserSig verification failed")
    if not s.is_admin(identifier):
        raise LivecastError(Code.NEED_ADMIN, "request requires app admin permissions")
    return identifier


async def _read_body(request: web.Request) -> Body:
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise LivecastError(Code.HTTP_PARSE, f"request body over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > MAX_BODY:
                raise LivecastError(Code.HTTP_PARSE, f"request body over {MAX_BODY} bytes")
            chunks.append(chunk)
    except UNREADABLE_BODY:  # e.g. a Content-Encoding that does not decode
        raise LivecastError(Code.JSON_PARSE, "request body could not be read as sent") from None
    return _parse_body(b"".join(chunks))


def _parse_body(raw: bytes) -> Body:
    if not raw.strip():
        raise LivecastError(Code.JSON_PARSE, "empty body: send {} when no fields are needed")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LivecastError(Code.JSON_PARSE, "request body is not valid UTF-8 JSON") from None
    if not isinstance(body, dict):
        raise LivecastError(Code.JSON_PARSE, "request body must be a JSON object")
    return body
