"""The node's webhook events: when each Tencent callback fires, with what.

``livecast.core.callbacks`` builds the bodies and parses replies; the
``Webhooks`` client does the I/O; this module decides the moments
(docs/webhooks.md):

- before-send: for every send, client or REST, before rate limiting (so
  dropped likes still reach the business backend); its verdict may reject
  the message, drop it silently, or replace its body; the before-send of a
  like (``like_rule``, the counter's rule) that the backend did not get
  (breaker open, timeout, error) is sent again later (``Webhooks``: held
  callbacks), so a like counter never misses it; it carries a ``MsgKey``
  unique to the message, so a counter counts it once;
- after-send: each delivered message, never a dropped one;
- send-exception: each message dropped by the rate limit (10023), each send
  refused for mute (10017), each message still waiting (queued, or in its
  before-send callback) when its room was destroyed (10010);
- before-join / after-join / after-exit for logged-in members (guests have no
  account to report); joins and exits are aggregated per room and flushed
  with the member tips, at most ``MEMBER_BATCH`` accounts per callback, whose
  ``Operator_Account`` and ``ClientIP`` are its first member's; a member's own
  events reach the backend in order (a pending join or exit is posted before
  the same member's opposite event is aggregated, since a flush posts all
  joins, then all exits: a reconnect is reported exit, then join), and
  before a kick or the group's destruction is posted;
- after-create / info-changed / destroyed for REST operations.

With no callback URL every method returns at once and builds nothing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from typing import Any

from livecast.core import callbacks as cb
from livecast.core.callbacks import Action, Verdict
from livecast.core.group import Group
from livecast.core.likes import LikeRule, recognise_message
from livecast.core.scheduler import PRIORITY_NAMES
from livecast.errors import LivecastError
from livecast.node.room import Outgoing
from livecast.webhooks.client import Webhooks

MEMBER_BATCH = 500


class Hooks:
    __slots__ = ("clock", "enabled", "exits", "joins", "like_rule", "msg_keys", "webhooks")

    def __init__(self, webhooks: Webhooks, clock: Callable[[], float]) -> None:
        self.webhooks = webhooks
        self.enabled = webhooks.enabled
        self.clock = clock
        self.joins: dict[str, dict[str, str]] = {}  # group -> {user: client ip}, in order
        self.exits: dict[str, dict[str, str]] = {}
        # "MsgKey" of a before-send: unique per message, across restarts too
        prefix = os.urandom(8).hex()
        self.msg_keys = (f"{prefix}-{n}" for n in itertools.count(1))
        self.like_rule = LikeRule()  # what a like is (the app sets the configured rule)

    # ----------------------------------------------------------- messages
    async def before_send(self, group_id: str, msg: Outgoing) -> bool:
        """Ask the backend; True to go on (``msg`` may have a new body), False when
        silently dropped (the sender already has its answer); raises on reject."""
        if not self.enabled or not msg.before_callback:
            return True
        body = cb.before_send(group_id, msg.sender, msg.operator, msg.random, msg.body,
                              msg.cloud_custom_data, PRIORITY_NAMES[msg.priority], self.clock())
        priority = PRIORITY_NAMES[msg.priority]
        like = recognise_message(group_id, priority, msg.body, self.like_rule) is not None
        if like:
            body["MsgKey"] = next(self.msg_keys)
        verdict = await self.webhooks.before_send(body, msg.client_ip, msg.platform, like)
        return _apply(verdict, msg)

    def delivered(self, group_id: str, msg: Outgoing, seq: int, time_ms: int) -> None:
        if self.enabled and msg.after_callback:
            self.webhooks.post(cb.after_send(
                group_id, msg.sender, msg.operator, msg.random, msg.body, msg.cloud_custom_data,
                PRIORITY_NAMES[msg.priority], seq, time_ms, self.clock()),
                msg.client_ip, msg.platform)

    def failed(self, group_id: str, msg: Outgoing, code: int, info: str | None = None) -> None:
        if self.enabled:
            self.webhooks.post(cb.send_exception(
                group_id, msg.sender, msg.operator, msg.random, msg.body, msg.cloud_custom_data,
                PRIORITY_NAMES[msg.priority], code, self.clock(), info),
                msg.client_ip, msg.platform)

    # ----------------------------------------------------------- members
    async def before_join(self, group_id: str, user: str, client_ip: str) -> None:
        """Raises LivecastError when the backend refuses the join."""
        if not self.enabled:
            return
        body = cb.before_join(group_id, user, self.clock())
        verdict = await self.webhooks.before_join(body, client_ip, cb.PLATFORM_WEB)
        if verdict.action is not Action.ALLOW:
            raise LivecastError(verdict.code, verdict.info)

    def joined(self, group_id: str, user: str, client_ip: str) -> None:
        if self.enabled and user:
            if user in self.exits.get(group_id, ()):
                self.flush_members()  # keep the member's events in order
            self.joins.setdefault(group_id, {}).setdefault(user, client_ip)

    def exited(self, group_id: str, user: str, client_ip: str) -> None:
        if self.enabled and user:
            if user in self.joins.get(group_id, ()):
                self.flush_members()
            self.exits.setdefault(group_id, {}).setdefault(user, client_ip)

    def kicked(self, group_id: str, users: list[str], operator: str,
               client_ip: str = "") -> None:
        if self.enabled and users:
            self.flush_members()  # a pending join of a kicked member goes first
            for i in range(0, len(users), MEMBER_BATCH):
                self.webhooks.post(cb.after_exit(group_id, users[i:i + MEMBER_BATCH],
                                                 self.clock(), "Kicked", operator), client_ip)

    def flush_members(self) -> None:
        """Post the aggregated joins and exits (called with the member tips)."""
        joins, self.joins = self.joins, {}
        exits, self.exits = self.exits, {}
        now = self.clock()
        for gid, batch in _batches(joins):
            self.webhooks.post(cb.after_join(gid, [u for u, _ in batch], now), batch[0][1],
                               cb.PLATFORM_WEB)
        for gid, batch in _batches(exits):
            self.webhooks.post(cb.after_exit(gid, [u for u, _ in batch], now), batch[0][1],
                               cb.PLATFORM_WEB)

    # ----------------------------------------------------------- groups
    def created(self, group: Group, operator: str, client_ip: str) -> None:
        if self.enabled:
            self.webhooks.post(cb.after_create(group.group_id, group.owner, operator, group.name,
                                               group.app_defined, self.clock()), client_ip)

    def info_changed(self, group_id: str, operator: str, changes: Mapping[str, Any],
                     client_ip: str) -> None:
        if self.enabled and changes:
            body = cb.after_info_changed(group_id, operator, changes, self.clock())
            if body is not None:
                self.webhooks.post(body, client_ip)

    def destroyed(self, group: Group, client_ip: str) -> None:
        if self.enabled:
            self.flush_members()  # the group's pending joins and exits go first
            self.webhooks.post(cb.after_destroyed(group.group_id, group.owner, group.name,
                                                  self.clock()), client_ip)


def _batches(events: dict[str, dict[str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each group's (user, client ip) events cut into lists of at most ``MEMBER_BATCH``."""
    cut = [(gid, list(users.items())) for gid, users in events.items()]
    return [(gid, items[i:i + MEMBER_BATCH]) for gid, items in cut
            for i in range(0, len(items), MEMBER_BATCH)]


def _apply(verdict: Verdict, msg: Outgoing) -> bool:
    if verdict.action is Action.REJECT:
        raise LivecastError(verdict.code, verdict.info)
    if verdict.action is Action.DROP:  # the node answers the sender (Dropped, "Callback")
        return False
    msg.body, msg.cloud_custom_data = verdict.message(msg.body, msg.cloud_custom_data)
    return True
