"""MemoryKickTimes (livecast/node/kicks.py): the last kick of each user."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livecast.node.kicks import KickTimes, MemoryKickTimes


def test_a_user_never_kicked_has_no_kick_time() -> None:
    kicks: KickTimes = MemoryKickTimes()
    assert kicks.kicked_at("alice") is None
    kicks.record_kick("bob", 10.5)
    assert kicks.kicked_at("alice") is None
    assert kicks.kicked_at("bob") == 10.5


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 2**40)), max_size=20))
def test_the_kick_time_is_the_latest_kick(kicks_seen: list[tuple[str, float]]) -> None:
    """Only moves forward: a kick recorded late with an earlier time changes nothing."""
    kicks = MemoryKickTimes()
    for user, t in kicks_seen:
        kicks.record_kick(user, t)
    for user in ("a", "b", "c"):
        times = [t for u, t in kicks_seen if u == user]
        assert kicks.kicked_at(user) == (max(times) if times else None)
