"""A user's profile: the nick and avatar stamped on its messages, and any
other ``Tag_Profile_*`` tag an app keeps there (docs/rest.md, profile).

Pure: one dict of tag -> value per user, as the store keeps it; a change
is merged into what is stored and the whole profile is written back.
"""

from __future__ import annotations

from collections.abc import Mapping

from livecast.core.group_fields import bad

__all__ = ["IMAGE", "MAX_TAGS", "NICK", "Profile", "merge", "nick_and_avatar"]

NICK = "Tag_Profile_IM_Nick"
IMAGE = "Tag_Profile_IM_Image"
MAX_TAGS = 64  # tags other than the nick and the avatar, per user

Profile = dict[str, str | int]


def nick_and_avatar(profile: Mapping[str, str | int]) -> tuple[str, str]:
    """What a session of the user carries: ("", "") for what is not set."""
    return str(profile.get(NICK, "")), str(profile.get(IMAGE, ""))


def merge(stored: Mapping[str, str | int], nick: str | None = None, avatar: str | None = None,
          tags: Mapping[str, str | int] | None = None) -> Profile:
    """``stored`` with the change applied (None: left as it is); 10004 (the
    caller's code for a bad parameter) when the user would hold more than
    ``MAX_TAGS`` other tags."""
    merged = dict(stored)
    if tags:
        merged.update(tags)
        if sum(1 for tag in merged if tag not in (NICK, IMAGE)) > MAX_TAGS:
            raise bad(f"a user holds at most {MAX_TAGS} other profile tags")
    if nick is not None:
        merged[NICK] = nick
    if avatar is not None:
        merged[IMAGE] = avatar
    return merged
