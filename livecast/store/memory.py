"""The in-memory twin of the store: the same contract, kept in dicts.

For a node embedded in a program that wants no file (tests build their nodes
with it); ``livecast serve`` never uses it: its default is SQLite.  It passes
the same contract suite as the real engines (tests/store/test_contract.py),
but for surviving a restart and reporting to an observer.

Kept: rooms by id, kick times and like totals, ``seen`` keys with the time
each expires, profiles by user (copies, so a caller's later change is not stored).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from livecast.core.records import GroupRecord
from livecast.store.base import DEDUP_WINDOW, LocalLocks, Profile, Snapshot, StoreError, expired


class MemoryStore:
    __slots__ = ("_groups", "_kicks", "_likes", "_locks", "_marker", "_profiles", "_seen",
                 "closed")

    def __init__(self) -> None:
        self._groups: dict[str, GroupRecord] = {}
        self._kicks: dict[str, float] = {}
        self._likes: dict[str, int] = {}
        self._seen: dict[str, float] = {}  # key -> when it expires
        self._profiles: dict[str, dict[str, str | int]] = {}
        self._locks = LocalLocks()
        self._marker = uuid.uuid4().hex
        self.closed = False

    @property
    def healthy(self) -> bool:
        return not self.closed

    def _check(self) -> None:
        if self.closed:
            raise StoreError("the store is closed")

    async def ping(self) -> bool:
        return not self.closed

    async def load_all(self, now: float | None = None) -> Snapshot:
        self._check()
        if now is not None:
            for gid, r in list(self._groups.items()):
                self._groups[gid] = replace(
                    r, mutes={u: t for u, t in r.mutes.items() if not expired(t, now)},
                    bans={u: t for u, t in r.bans.items() if not expired(t, now)})
        groups = sorted(self._groups.values(), key=lambda r: (r.created, r.group_id))
        likes = {gid: n for gid, n in self._likes.items() if n and gid in self._groups}
        return Snapshot(tuple(groups), dict(self._kicks), likes)

    async def load_group(self, group_id: str) -> GroupRecord | None:
        self._check()
        return self._groups.get(group_id)

    async def put_group(self, record: GroupRecord, create: bool = False) -> bool:
        self._check()
        if (record.group_id in self._groups) == create:
            return False
        self._groups[record.group_id] = record
        return True

    async def put_settings(self, record: GroupRecord) -> bool:
        self._check()
        old = self._groups.get(record.group_id)
        if old is None:
            return False
        self._groups[record.group_id] = replace(record, mutes=dict(old.mutes),
                                                bans=dict(old.bans))
        return True

    async def delete_group(self, group_id: str) -> bool:
        self._check()
        self._likes.pop(group_id, None)
        return self._groups.pop(group_id, None) is not None

    async def _restrict(self, group_id: str, field: str, user: str, until: float | None) -> None:
        self._check()
        r = self._groups.get(group_id)
        if r is None:
            return
        table = dict(r.mutes if field == "mutes" else r.bans)
        if until is None:
            table.pop(user, None)
        else:
            table[user] = until
        self._groups[group_id] = (replace(r, mutes=table) if field == "mutes"
                                  else replace(r, bans=table))

    async def set_mute(self, group_id: str, user: str, until: float) -> None:
        await self._restrict(group_id, "mutes", user, until)

    async def clear_mute(self, group_id: str, user: str) -> None:
        await self._restrict(group_id, "mutes", user, None)

    async def set_ban(self, group_id: str, user: str, until: float) -> None:
        await self._restrict(group_id, "bans", user, until)

    async def clear_ban(self, group_id: str, user: str) -> None:
        await self._restrict(group_id, "bans", user, None)

    async def set_kick(self, user: str, at: float) -> None:
        self._check()
        if at > self._kicks.get(user, float("-inf")):
            self._kicks[user] = at

    async def kick_time(self, user: str) -> float | None:
        self._check()
        return self._kicks.get(user)

    async def kick_times(self) -> dict[str, float]:
        self._check()
        return dict(self._kicks)

    async def marker(self) -> str:
        self._check()
        return self._marker

    async def seen(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        self._check()
        for k in [k for k, ends in self._seen.items() if ends <= now]:
            del self._seen[k]
        if key in self._seen:
            return True
        self._seen[key] = now + window
        return False

    async def recent(self, key: str, now: float, window: float = DEDUP_WINDOW) -> bool:
        self._check()
        ends = self._seen.get(key)
        return ends is not None and now < ends

    async def unsee(self, key: str) -> None:
        self._check()
        self._seen.pop(key, None)

    async def add_likes(self, group_id: str, n: int) -> int:
        self._check()
        total = self._likes.get(group_id, 0) + n
        self._likes[group_id] = total
        return total

    async def likes(self, group_id: str) -> int:
        self._check()
        return self._likes.get(group_id, 0)

    async def put_profile(self, user: str, profile: Profile) -> None:
        self._check()
        self._profiles[user] = dict(profile)

    async def load_profiles(self, users: Sequence[str]) -> dict[str, dict[str, str | int]]:
        self._check()
        return {u: dict(self._profiles[u]) for u in users if u in self._profiles}

    async def all_profiles(self, limit: int) -> dict[str, dict[str, str | int]] | None:
        self._check()
        if len(self._profiles) > limit:
            return None
        return {u: dict(p) for u, p in self._profiles.items()}

    async def lock(self, name: str, ttl: float) -> str | None:
        self._check()
        return self._locks.lock(name, ttl)

    async def unlock(self, name: str, token: str) -> None:
        self._check()
        self._locks.unlock(name, token)

    async def close(self) -> None:
        self.closed = True
