"""Wire codes and the one error tree of livecast.

Remote misbehaviour is reported as *values* (a reply code or a close code),
never as an exception that escapes a handler.  The only exception type that
crosses module boundaries on purpose is ``LivecastError``, raised inside a
request handler and turned into a reply at the edge:

    LivecastError(code, info)         -- a Tencent error code for one request
      (raised by core validators; caught by the WebSocket op table and the
       REST dispatch table, which answer with ``code``/``info``)

Everything else that escapes is a programmer error.

Codes are data: Tencent codes (docs/rest.md and docs/protocol.md, Error codes) in
``Code``, WebSocket close codes (docs/protocol.md, Close codes) in ``Close``.
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Tencent Cloud Chat error codes used by livecast (reference section 7)."""

    OK = 0
    # group (server) codes, 7.1
    INTERNAL = 10002
    BAD_COMMAND = 10003
    BAD_PARAMETER = 10004
    TOO_MANY_ACCOUNTS = 10005
    TOO_MANY_WAITING = 10006  # "operation frequency limit": too many requests waiting
    NO_PERMISSION = 10007
    GROUP_NOT_FOUND = 10010
    JSON_PARSE_GROUP = 10011
    INVALID_GROUP_ID = 10015
    CALLBACK_REJECTED = 10016
    MUTED = 10017
    GROUP_ID_TAKEN = 10021
    FREQ_LIMIT = 10023
    GROUP_ID_TAKEN_BY_YOU = 10025
    TOO_MANY_ROOMS = 10036  # "AVChatRoom count over the limit": LIVECAST_MAX_ROOMS
    NO_ROAMING = 10044
    # group attributes, 7.1 (core/group_attrs.py)
    ATTR_KEY_TOO_LONG = 10045
    ATTR_VALUE_TOO_LONG = 10046
    ATTR_TOO_MANY_KEYS = 10047
    ATTR_TOO_LARGE = 10048
    ATTR_WRITE_FREQ_LIMIT = 10049
    ATTR_KEY_NOT_FOUND = 10050
    ATTR_STALE_WRITE = 10056
    TOO_MANY_COUNTERS = 10063
    # content / size / webhook, 7.3
    MSG_TOO_LONG = 80002
    CALLBACK_FAILED = 80003
    # REST common, 1.5
    HTTP_PARSE = 60002
    JSON_PARSE = 60003
    BAD_SDKAPPID = 60006
    BAD_URL = 60009
    NEED_ADMIN = 60010
    # UserSig, 7.4
    SIG_EXPIRED = 70001
    SIG_EMPTY = 70002
    SIG_INVALID = 70003
    SIG_BAD_SIGNATURE = 70009
    SIG_USER_MISMATCH = 70013
    SIG_SDKAPPID_MISMATCH = 70014
    AUTH_LOCKED = 70050  # too many failed REST authentications from this IP: retry later
    LOGIN_RATE_LIMIT = 70399  # too many logins (per IP or on the node): retry later
    BATCH_SIZE = 70206  # im_open_login_svc: a batch over its size (Tencent's "bad batch size")
    # per-service "invalid parameter" of REST services other than groups
    LOGIN_BAD_PARAMETER = 70402     # im_open_login_svc
    PROFILE_BAD_PARAMETER = 40001   # profile


class Close(IntEnum):
    """WebSocket close codes (docs/protocol.md, Close codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    TOO_LARGE = 1009
    LOGIN_FAILED = 4001
    LOGIN_TIMEOUT = 4002
    MULTI_LOGIN = 4003
    BANNED = 4004
    SLOW = 4008
    VIOLATIONS = 4009
    TRY_LATER = 4013  # admission control: too many connects or logins; "retry after N s"
    FLOOD = 4029


# Close codes a metric label may name: livecast's own and the IANA-registered
# 1000-1015.  A peer's close is echoed with the code it sent (any 3000-4999),
# so any other code is counted under "other": clients do not choose series.
KNOWN_CLOSES = frozenset(int(c) for c in Close) | frozenset(range(1000, 1016))


def close_label(code: int) -> str:
    """The ``code`` label of a close: the code itself if known, else "other"."""
    return str(code) if code in KNOWN_CLOSES else "other"


class LivecastError(Exception):
    """A request failed with a Tencent error code; answered, never fatal."""

    def __init__(self, code: int, info: str = "") -> None:
        super().__init__(code, info)
        self.code = int(code)
        self.info = info

    def __repr__(self) -> str:
        return f"LivecastError({self.code}, {self.info!r})"
