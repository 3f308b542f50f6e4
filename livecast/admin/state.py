"""State the admin REST layer keeps beside the node (one ``AdminState`` per app,
held under ``gateway.keys.ADMIN`` for the app's lifetime).

Kept here until the node holds it itself (see docs/rest.md, "Where state
lives"): the ``Random`` de-duplication table of send_group_msg and
send_broadcast_msg (docs/rest.md: 5 minutes), the broadcast rate limit and
sequence (1 call/s), the first time a member was seen (get_members
``JoinTime``), and the stable ordinals that make get_appid_group_list's ``Next`` cursor.

Invariants:
- ``SendLog`` holds at most ``cap`` entries, none older than ``window``
  seconds at the last lookup; entries are kept in insertion order, and every
  lookup first drops the expired head;
- ``ordinals`` gives each room (its ``RoomOwner``, made once when the room
  is created or loaded, kept through every change of the room) an integer
  that grows with creation order: ``numbered_rooms`` walks ``node.rooms``
  (creation order) and numbers the rooms it has not numbered yet, so a later
  room never gets a smaller number and a changed one keeps its own.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from livecast.node.node import Node
from livecast.node.owner import RoomOwner

DEDUP_WINDOW = 300.0  # seconds: "within 5 minutes" (2.5)
DEDUP_CAP = 100_000
MEMBERS_PAGE = 500  # get_members page size (2.8: 500 in the English page, 250 in the Chinese)
MAX_LISTED_ROOMS = 1_000  # rooms whose members' first listing times are kept
LISTING_TTL = 1.0  # seconds a room's members listing serves its pages

SendKey = tuple[str, str, int]  # (GroupId, or "" for a broadcast; sender; Random)
Answer = dict[str, Any]


class SendLog:
    """Answers of recent sends by (group, sender, Random), for de-duplication."""

    __slots__ = ("_cap", "_entries", "_window")

    def __init__(self, window: float = DEDUP_WINDOW, cap: int = DEDUP_CAP) -> None:
        self._window = window
        self._cap = cap
        self._entries: OrderedDict[SendKey, tuple[float, asyncio.Future[Answer]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, key: SendKey, now: float) -> asyncio.Future[Answer] | None:
        """The answer (maybe still pending) of the same send within the window."""
        self._expire(now)
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def record(self, key: SendKey, answer: asyncio.Future[Answer], now: float) -> None:
        self._entries[key] = (now, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self._cap:
            self._entries.popitem(last=False)

    def forget(self, key: SendKey) -> None:
        """A refused send is not remembered."""
        self._entries.pop(key, None)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            at = next(iter(entries.values()))[0]
            if now - at < self._window:
                return
            entries.popitem(last=False)


class AdminState:
    """Everything the admin layer remembers for one node."""

    __slots__ = ("broadcast_seq", "first_seen", "last_broadcast", "listings", "members_page",
                 "next_ordinal", "ordinals", "sends")

    def __init__(self) -> None:
        self.members_page = MEMBERS_PAGE
        # rooms listed lately (get_members) -> (when, monotonic; the listing)
        self.listings: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self.sends = SendLog()
        self.broadcast_seq = 0
        self.last_broadcast = float("-inf")
        # per room listed lately, the first time each member connection (node
        # id, connection id) was listed: its JoinTime (the rooms last listed kept)
        self.first_seen: OrderedDict[str, dict[tuple[str, int], float]] = OrderedDict()
        self.ordinals: dict[str, tuple[RoomOwner, int]] = {}
        self.next_ordinal = 1

    def listing(self, group_id: str, now: float) -> list[dict[str, Any]] | None:
        """The room's members listing made less than ``LISTING_TTL`` s ago."""
        kept = self.listings.get(group_id)
        return kept[1] if kept is not None and now - kept[0] < LISTING_TTL else None

    def keep_listing(self, group_id: str, now: float, listing: list[dict[str, Any]]) -> None:
        self.listings = {g: v for g, v in self.listings.items() if now - v[0] < LISTING_TTL}
        self.listings[group_id] = (now, listing)

    def joined_at(self, group_id: str, members: list[tuple[str, int]],
                  now: float) -> list[float]:
        """When each member connection of a room's listing (node id, connection
        id) was first listed by the admin layer; connections no longer in the
        room are forgotten, and so are the rooms not listed lately."""
        before = self.first_seen.pop(group_id, {})
        seen = {key: before.get(key, now) for key in members}
        self.first_seen[group_id] = seen
        if len(self.first_seen) > MAX_LISTED_ROOMS:
            self.first_seen.popitem(last=False)
        return [seen[key] for key in members]

    def numbered_rooms(self, node: Node) -> list[tuple[int, str]]:
        """``(ordinal, GroupId)`` of every room, in creation order."""
        fresh: dict[str, tuple[RoomOwner, int]] = {}
        for gid, room in node.rooms.items():
            known = self.ordinals.get(gid)
            if known is None or known[0] is not room:  # new, or destroyed and made again
                known = (room, self.next_ordinal)
                self.next_ordinal += 1
            fresh[gid] = known
        self.ordinals = fresh
        return sorted((n, gid) for gid, (_g, n) in fresh.items())
