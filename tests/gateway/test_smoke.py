from __future__ import annotations

from livecast.client import text
from tests.conftest import Live


async def test_two_members_see_a_message_with_nick(live: Live) -> None:
    gid = await live.room()
    alice = await live.client("alice")
    await alice.set_my_profile(nick="Alice")
    await alice.join(gid)
    bob = await live.client("bob", join=gid)
    r = await alice.send(gid, text("hello"))
    assert r["code"] == 0 and r["msgSeq"] == 1 and r["dropReason"] == ""
    push = await bob.next_push("msgs")
    (msg,) = push["msgs"]
    assert msg["seq"] == 1 and msg["from"] == "alice" and msg["nick"] == "Alice"
    echo = await alice.next_push("msgs")
    assert echo["msgs"][0]["seq"] == 1 and echo["msgs"][0]["nick"] == "Alice"
