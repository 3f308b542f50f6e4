"""Kick times: when each user was last kicked (``im_open_login_svc/kick``),
so that the UserSigs issued at or before it are refused at login and on REST
calls (``core.usersig.revoked`` decides; docs/rest.md, kick).

The node owns one ``KickTimes``.  ``MemoryKickTimes`` is the in-memory
default: it forgets on restart.  Durable state implements the same two
methods so that kick times survive a restart.

Invariants:
1. A user's kick time only moves forward: a later kick replaces an earlier
   one, an earlier time never replaces a later one.
2. One entry per user ever kicked (kicks are an admin's act: few), kept for
   good, since a UserSig may be valid for years.
"""

from __future__ import annotations

from typing import Protocol


class KickTimes(Protocol):
    def kicked_at(self, user: str) -> float | None:
        """The user's last kick (unix seconds), or None if never kicked."""

    def record_kick(self, user: str, t: float) -> None:
        """The user was kicked at ``t`` (unix seconds)."""


class MemoryKickTimes:
    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: dict[str, float] = {}

    def kicked_at(self, user: str) -> float | None:
        return self._times.get(user)

    def record_kick(self, user: str, t: float) -> None:
        last = self._times.get(user)
        if last is None or t > last:
            self._times[user] = t
