"""Accounts and profiles: im_open_login_svc (account_import, multiaccount_import,
kick) and profile (portrait_set, portrait_get).

References: docs/rest.md (im_open_login_svc, profile; nick/avatar shown on
AVChatRoom messages), Tencent's pages of these five APIs (request shapes,
100 accounts per batch). Bad parameters answer 70402 on im_open_login_svc and
40001 on profile (the dispatch re-codes 10004, table.py).

Decisions (docs/rest.md):
- livecast keeps no account registry: any well-formed UserID (1..32 bytes)
  may log in, send or be named, imported or not. Importing records the
  optional ``Nick``/``FaceUrl`` as the profile;
- ``Tag_Profile_IM_Nick`` (<= 64 bytes, as the WebSocket ``setMyProfile``)
  and ``Tag_Profile_IM_Image`` (<= 500 bytes) are the nick and avatar stamped
  on that user's messages from then on, connected sessions included; any
  other ``Tag_Profile_*`` tag is kept too and returned by portrait_get; a
  profile is stored before it is answered (Node.change_profile) and
  survives a restart;
- kick closes every connection of the user: a ``kicked`` push with reason
  ``adminKick``, then close 4003 (as for a newer login: the client should not
  reconnect on its own); and it revokes the user's UserSigs issued at or
  before it (``TLS.time`` <= the kick, whole seconds): a login or REST call
  with one is refused 70001 (node/kicks.py, core/usersig.py ``revoked``).
"""

from __future__ import annotations

from typing import Any

from livecast.admin.table import Body, Call, array, command, strings, user
from livecast.core.group_fields import bad, check_text, check_user
from livecast.core.profiles import IMAGE, MAX_TAGS, NICK
from livecast.core.protocol import MAX_AVATAR_BYTES, MAX_NICK_BYTES
from livecast.errors import Code, LivecastError

LOGIN = "im_open_login_svc"
PROFILE = "profile"
MAX_IMPORT = 100
MAX_PROFILE_ACCOUNTS = 100
TAG_VALUE_LIMIT = 500
KICK_REASON = "adminKick"
_UINT64_MAX = 2**64 - 1

Profile = tuple[str | None, str | None]  # (nick, avatar); None = leave unchanged


def _import_profile(item: dict[str, Any]) -> Profile:
    nick = item.get("Nick")
    face = item.get("FaceUrl")
    if "Nick" in item:
        nick = check_text(nick, "Nick", MAX_NICK_BYTES)
    if "FaceUrl" in item:
        face = check_text(face, "FaceUrl", MAX_AVATAR_BYTES)
    return nick, face


async def _apply(call: Call, account: str, profile: Profile) -> None:
    if profile != (None, None):
        await call.node.change_profile(account, *profile)


@command(LOGIN, "account_import")
async def account_import(call: Call, body: Body) -> Body:
    name = "UserID" if "UserID" in body or "Identifier" not in body else "Identifier"
    account = user(body, name)
    await _apply(call, account, _import_profile(body))
    return {}


@command(LOGIN, "multiaccount_import")
async def multiaccount_import(call: Call, body: Body) -> Body:
    """New shape ``AccountList: [{UserID, Nick?, FaceUrl?}]`` or old ``Accounts: [id]``.

    A malformed request fails whole; a string UserID that is not valid is
    listed in ``FailAccounts`` and the others are imported.
    """
    new = "AccountList" in body or "Accounts" not in body
    items = array(body, "AccountList" if new else "Accounts", most=MAX_IMPORT,
                  too_many=Code.BATCH_SIZE)
    plans: list[tuple[str, Profile]] = []
    failed: list[str] = []
    for item in items:
        if new and not isinstance(item, dict):
            raise bad("each AccountList item must be an object with UserID")
        account = item.get("UserID") if new else item
        if not isinstance(account, str):
            raise bad("a UserID must be a string")
        profile = _import_profile(item) if new else (None, None)
        if _well_formed(account):
            plans.append((account, profile))
        else:
            failed.append(account)
    for account, profile in plans:
        await _apply(call, account, profile)
    return {"FailAccounts": failed}


def _well_formed(account: str) -> bool:
    try:
        check_user(account)
    except LivecastError:
        return False
    return True


@command(LOGIN, "kick")
async def kick(call: Call, body: Body) -> Body:
    account = user(body, "UserID" if "UserID" in body or "Identifier" not in body else "Identifier")
    node = call.node
    await node.record_kick(account, node.clock())  # revokes its UserSigs issued until now
    node.kick_everywhere(account, KICK_REASON)
    return {}


def _profile_item(item: object) -> tuple[str, str | int]:
    """One ``{Tag, Value}`` of portrait_set, validated."""
    if not isinstance(item, dict) or "Tag" not in item or "Value" not in item:
        raise bad("each ProfileItem must be an object with Tag and Value")
    tag, value = item["Tag"], item["Value"]
    if not isinstance(tag, str) or not tag.startswith("Tag_Profile_") or len(tag) > 64:
        raise bad("Tag must be a Tag_Profile_* name of at most 64 characters")
    if tag in (NICK, IMAGE):
        limit = MAX_NICK_BYTES if tag == NICK else MAX_AVATAR_BYTES
        return tag, check_text(value, tag, limit)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _UINT64_MAX:
        return tag, value
    return tag, check_text(value, tag, TAG_VALUE_LIMIT)


@command(PROFILE, "portrait_set")
async def portrait_set(call: Call, body: Body) -> Body:
    account = user(body, "From_Account")
    items = dict(_profile_item(i) for i in array(body, "ProfileItem", most=MAX_TAGS))
    nick, image = items.pop(NICK, None), items.pop(IMAGE, None)
    await call.node.change_profile(account, _as_text(nick), _as_text(image), items)
    return {}


def _as_text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


@command(PROFILE, "portrait_get")
async def portrait_get(call: Call, body: Body) -> Body:
    accounts = [check_user(a, "To_Account")
                for a in array(body, "To_Account", most=MAX_PROFILE_ACCOUNTS)]
    if "TagList" not in body:
        raise bad("TagList is required")
    tags = strings(body["TagList"], "TagList", most=MAX_TAGS)
    stored = await call.node.stored_profiles(list(dict.fromkeys(accounts)))
    return {"UserProfileItem": [_portrait(a, stored.get(a, {}), tags) for a in accounts],
            "FailAccount": []}


def _portrait(account: str, stored: dict[str, str | int], tags: list[str]) -> dict[str, Any]:
    known: dict[str, str | int] = {NICK: "", IMAGE: "", **stored}
    items = [{"Tag": t, "Value": known[t]} for t in dict.fromkeys(tags) if t in known]
    return {"To_Account": account, "ProfileItem": items, "ResultCode": 0, "ResultInfo": ""}
