"""A room across three ``livecast serve`` processes on one real redis-server:
one seq stream for every member wherever it is connected, online counts
summed over the processes, bans reaching members on other processes, and the
room going on elsewhere when its owner is killed (``kill -9``)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from livecast.client import Client, text
from livecast.core.group import Group
from livecast.core.records import group_record
from livecast.store.redis import RedisStore
from tests.conftest import SDKAPPID
from tests.redis_fixtures import RedisCluster, redis_cluster, start_server
from tests.test_restart import Server, cluster_env, kill_servers, sig, start_servers, until

__all__ = ["redis_cluster"]

GID = "live-1"


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A redis-server of the test's own ("server", the default), or the
    session's 3-master Redis Cluster, flushed ("cluster")."""
    if getattr(request, "param", "server") == "cluster":
        nodes: RedisCluster = request.getfixturevalue("redis_cluster")
        nodes.flush()
        yield nodes.url
        return
    server = start_server(tmp_path)
    yield server.url
    server.stop()


@pytest.fixture
async def cluster(redis_url: str, tmp_path: Path) -> AsyncIterator[list[Server]]:
    servers: list[Server] = []
    await start_servers(cluster_env(redis_url, tmp_path), 3, servers)
    yield servers
    await kill_servers(servers)


async def member(s: Server, user: str) -> Client:
    c, code = await s.client(user)
    assert code == 0
    await until(lambda: _joins(c), f"{user} joined {GID} on :{s.port}")
    return c


async def _joins(c: Client) -> bool:
    return bool((await c.join(GID))["code"] == 0)


async def seqs_of(c: Client, count: int) -> list[tuple[int, str]]:
    """The next ``count`` messages a member receives, as (seq, text)."""
    got: list[tuple[int, str]] = []
    while len(got) < count:
        push = await asyncio.wait_for(c.next_push("msgs"), 15)
        got += [(m["seq"], m["msgBody"][0]["MsgContent"]["Text"]) for m in push["msgs"]]
    return got


@pytest.mark.parametrize("redis_url", ["server", "cluster"], indirect=True)
async def test_one_room_one_seq_stream_across_three_processes(cluster: list[Server]) -> None:
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "Cluster room"})
    members = [await member(s, f"m{i}") for i, s in enumerate(cluster)]
    senders = [await member(b, "sender-b"), await member(c, "sender-c")]
    answers = []
    for i in range(6):
        r = await senders[i % 2].send(GID, text(f"t{i}"))
        assert r["code"] == 0 and r["msgSeq"] > 0, r
        answers.append(r["msgSeq"])
    assert answers == sorted(answers) and len(set(answers)) == 6
    streams = [await seqs_of(m, 6) for m in members]
    assert streams[0] == streams[1] == streams[2]  # the same stream on every process
    seqs = [s for s, _t in streams[0]]
    assert seqs == list(range(seqs[0], seqs[0] + 6))  # contiguous
    # the online count sums the three processes (5 members), on any of them
    await until(lambda: _online_is(b, 5), "online counts summed over processes")
    await until(lambda: _online_is(c, 5), "the same count on c")
    late, code = await c.client("late")
    assert code == 0
    assert (await late.join(GID))["onlineMemberNum"] == 6  # the join reply's too
    for x in members + senders + [late]:
        await x.close()


async def _online_is(s: Server, n: int) -> bool:
    r = await s.ok("group_open_http_svc", "get_online_member_num", {"GroupId": GID})
    return bool(r["OnlineMemberNum"] == n)


async def test_a_ban_and_a_profile_change_reach_every_process(cluster: list[Server]) -> None:
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "before"})
    watcher = await member(c, "watcher")
    bob = await member(b, "bob")
    await a.ok("group_open_http_svc", "modify_group_base_info", {"GroupId": GID, "Name": "after"})
    info = await c.ok("group_open_http_svc", "get_group_info", {"GroupIdList": [GID]})
    tip = await asyncio.wait_for(watcher.next_push("tips"), 10)
    while not any(t["type"] == "groupInfo" for t in tip["tips"]):
        tip = await asyncio.wait_for(watcher.next_push("tips"), 10)
    info = await c.ok("group_open_http_svc", "get_group_info", {"GroupIdList": [GID]})
    assert info["GroupInfo"][0]["Name"] == "after"  # read on another process, after the tip
    await a.ok("group_open_http_svc", "ban_group_member",
               {"GroupId": GID, "Members_Account": ["bob"], "Duration": 600})
    assert await asyncio.wait_for(bob.wait_closed(), 10) == 4004
    again, code = await b.client("bob")
    assert code == 0 and (await again.join(GID))["code"] == 10007
    for x in (watcher, bob, again):
        await x.close()


async def test_every_process_gives_the_room_s_next_seq(cluster: list[Server]) -> None:
    """get_group_info's NextMsgSeq is the seq the next delivered message gets,
    whichever process answers: the owner's, the one its sender is on, one
    with no member; LastMsgTime is the owner's where the room is followed."""
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "seqs"})
    sender = await member(b, "sender")
    for i in range(5):
        assert (await sender.send(GID, text(f"m{i}")))["msgSeq"] == i + 1
    infos = [(await s.ok("group_open_http_svc", "get_group_info",
                         {"GroupIdList": [GID]}))["GroupInfo"][0] for s in (a, b, c)]
    assert [i["NextMsgSeq"] for i in infos] == [6, 6, 6]
    assert infos[0]["LastMsgTime"] > 0 and infos[1]["LastMsgTime"] == infos[0]["LastMsgTime"]
    await sender.close()


async def test_a_change_made_where_the_room_has_no_member_keeps_its_last_msg_time(
        cluster: list[Server]) -> None:
    """LastMsgTime is stored with the room's changes: one made on a process
    that never saw a message there stores the time read, not its own 0."""
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "times"})
    sender = await member(a, "sender")
    assert (await sender.send(GID, text("one")))["msgSeq"] == 1
    await a.ok("group_open_http_svc", "modify_group_base_info", {"GroupId": GID, "Name": "t1"})
    stored = (await a.ok("group_open_http_svc", "get_group_info",
                         {"GroupIdList": [GID]}))["GroupInfo"][0]["LastMsgTime"]
    assert stored > 0
    await c.ok("group_open_http_svc", "modify_group_base_info", {"GroupId": GID, "Name": "t2"})
    for s in (c, b):
        info = (await s.ok("group_open_http_svc", "get_group_info",
                           {"GroupIdList": [GID]}))["GroupInfo"][0]
        assert info["LastMsgTime"] == stored, s.port
    await sender.close()


async def test_a_room_just_made_elsewhere_is_found_by_every_call(
        cluster: list[Server], redis_url: str) -> None:
    """A room stored by another process whose announcement has not come yet
    (put in the store here, announced to nobody) is read from the store
    before any answer: by REST calls, after a call that found it missing
    too, and by WebSocket reads; and a room made by create_group on one
    process takes a send through another at once."""
    a, b, _c = cluster
    viewer, code = await b.client("viewer")
    assert code == 0
    probed = await b.ok("group_open_http_svc", "get_group_info",
                        {"GroupIdList": ["stored-probed"]})
    assert probed["GroupInfo"][0]["ErrorCode"] == 10010  # missing: remembered a while
    store = await RedisStore.open(redis_url)
    try:
        for gid in ("stored-rest", "stored-probed", "stored-ws"):
            group = Group.create(gid, "administrator", time.time(), {"Name": gid})
            assert await store.put_group(group_record(group), create=True)
    finally:
        await store.close()
    info = await b.ok("group_open_http_svc", "get_group_info",
                      {"GroupIdList": ["stored-rest", "stored-probed"]})
    assert [i["ErrorCode"] for i in info["GroupInfo"]] == [0, 0]
    assert (await viewer.get_group_info("stored-ws"))["code"] == 0
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": "made", "Name": "made"})
    await b.ok("group_open_http_svc", "send_group_msg",
               {"GroupId": "made", "Random": 1, "MsgBody": text("welcome")})
    await viewer.close()


async def test_every_process_lists_the_members_of_every_process(cluster: list[Server]) -> None:
    """get_members and check_members list the room's members wherever they
    are connected, whichever process answers (each listed its own only)."""
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "everyone"})
    users = {"u-a": a, "u-b": b, "u-c": c}
    clients = [await member(s, u) for u, s in users.items()]
    for s in (a, b, c):  # each process's heartbeat shows the others' members
        await until(lambda s=s: _online_is(s, 3), f"3 online seen on :{s.port}")
    for s in (a, b, c):
        listed = await s.ok("group_open_avchatroom_http_svc", "get_members",
                            {"GroupId": GID, "Timestamp": 0})
        assert sorted(m["Member_Account"] for m in listed["MemberList"]) == sorted(users)
        checked = await s.ok("group_open_avchatroom_http_svc", "check_members",
                             {"GroupId": GID, "Member_Account": [*users, "nobody"]})
        assert sorted(checked["Member_Account"]) == sorted(users)
    for x in clients:
        await x.close()


async def test_a_member_who_has_just_joined_elsewhere_is_listed(cluster: list[Server]) -> None:
    """Every live process is asked, not only those the last heartbeat showed
    with members of the room."""
    a, b, _c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": "just", "Name": "just"})
    newcomer, code = await b.client("newcomer")
    assert code == 0 and (await newcomer.join("just"))["code"] == 0
    checked = await a.ok("group_open_avchatroom_http_svc", "check_members",
                         {"GroupId": "just", "Member_Account": ["newcomer"]})
    assert checked["Member_Account"] == ["newcomer"]
    await newcomer.close()


async def test_killing_the_owner_moves_the_room_with_its_seq(cluster: list[Server]) -> None:
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "failover"})
    listener = await member(c, "listener")
    sender = await member(b, "sender")
    first = await sender.send(GID, text("before"))
    assert first["code"] == 0 and first["msgSeq"] > 0
    await a.stop(signal.SIGKILL)  # the creator owns the room
    killed_at = time.monotonic()
    later: dict[str, Any] = {}

    async def delivered_again() -> bool:
        r = await sender.send(GID, text("after"))
        assert r["code"] in (0, 10002), r  # answered either way: delivered, or retry
        later.update(r)
        return bool(r["code"] == 0 and r["msgSeq"] > 0)

    await until(delivered_again, "the room going on elsewhere", within=15)
    took = time.monotonic() - killed_at
    assert later["msgSeq"] == first["msgSeq"] + 1  # no reuse, no skip
    got = await seqs_of(listener, 2)
    assert [s for s, _t in got][-1] == later["msgSeq"]
    print(f"failover took {took:.1f} s")
    for x in (listener, sender):
        await x.close()



async def member_tips(c: Client, kind: str, users: set[str]) -> list[str]:
    """Every member named in ``kind`` tips until ``users`` were all seen."""
    seen: list[str] = []
    while not users <= set(seen):
        push = await asyncio.wait_for(c.next_push("tips"), 15)
        for tip in push["tips"]:
            if tip["type"] == kind:
                assert tip["total"] >= len(tip["members"])
                seen += tip["members"]
    return seen


async def test_join_and_quit_tips_reach_every_process(cluster: list[Server]) -> None:
    a, b, c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "tips"})
    watcher = await member(a, "watcher")
    joiners = [await member(s, f"j{i}") for i, s in enumerate((b, c, b, c))]
    seen = await member_tips(watcher, "memberJoin", {"j0", "j1", "j2", "j3"})
    assert sorted(u for u in seen if u != "watcher") == ["j0", "j1", "j2", "j3"]  # once each
    assert (await joiners[1].quit(GID))["code"] == 0
    assert "j1" in await member_tips(watcher, "memberQuit", {"j1"})
    # a member on b hears of a join on c, not of its own process only
    late = await member(c, "late")
    assert "late" in await member_tips(joiners[0], "memberJoin", {"late"})
    for x in (watcher, *joiners, late):
        await x.close()


async def test_the_broadcast_limit_is_the_clusters(cluster: list[Server]) -> None:
    """send_broadcast_msg: at most one call per second for the whole cluster;
    two calls made at once on two processes: one is sent, one gets 10023."""
    a, b, _c = cluster
    await a.ok("group_open_http_svc", "create_group",
               {"Type": "AVChatRoom", "GroupId": GID, "Name": "broadcast"})
    body = {"From_Account": "admin", "Random": 1,
            "MsgBody": [{"MsgType": "TIMCustomElem", "MsgContent": {"Data": "x"}}]}
    answers = await asyncio.gather(
        a.rest("group_open_http_svc", "send_broadcast_msg", body),
        b.rest("group_open_http_svc", "send_broadcast_msg", dict(body, Random=2)))
    assert sorted(r["ErrorCode"] for r in answers) == [0, 10023], answers


async def test_a_room_created_on_one_process_is_joined_at_once_on_another(
        cluster: list[Server]) -> None:
    """No 10010 in the moment before the other processes hear of a new room:
    a join on another process looks the room up in the store."""
    a, b, c = cluster
    joiners = [(await s.client(f"j{s.port}"))[0] for s in (b, c)]
    try:
        for i in range(5):
            gid = f"fresh-{i}"
            await a.ok("group_open_http_svc", "create_group",
                       {"Type": "AVChatRoom", "GroupId": gid, "Name": "fresh"})
            answers = await asyncio.gather(*(j.join(gid) for j in joiners))
            assert [r["code"] for r in answers] == [0, 0], answers
        missing = await asyncio.gather(*(j.join("absent") for j in joiners))
        assert [r["code"] for r in missing] == [10010, 10010], missing
    finally:
        for j in joiners:
            await j.close()


async def test_a_rest_send_whose_fate_is_unknown_is_not_sent_again_by_its_retry(
        tmp_path: Path) -> None:
    server = start_server(tmp_path)
    servers: list[Server] = []
    try:
        env = cluster_env(server.url, tmp_path, LIVECAST_MAX_WAIT_MS="300,300,300,300")
        await start_servers(env, 2, servers)
        a, b = servers
        await a.ok("group_open_http_svc", "create_group",
                   {"Type": "AVChatRoom", "GroupId": GID, "Name": "owned by a"})
        watcher = await member(b, "watcher")
        body = {"GroupId": GID, "From_Account": "administrator", "Random": 77,
                "MsgBody": text("once")}
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)  # the owner stops answering (not gone)
        try:
            first = await b.rest("group_open_http_svc", "send_group_msg", body)
        finally:
            a.proc.send_signal(signal.SIGCONT)  # it may deliver the send after all
        assert first["ErrorCode"] == 10002 and "may have been delivered" in first["ErrorInfo"]
        again = await b.rest("group_open_http_svc", "send_group_msg", body)
        assert again == first  # the first answer: the retry is not sent again
        await until(lambda: _sends(b, "marker"), "the room answering again")
        texts = []
        while "marker" not in texts:
            push = await asyncio.wait_for(watcher.next_push("msgs"), 15)
            texts += [m["msgBody"][0]["MsgContent"]["Text"] for m in push["msgs"]]
        assert texts.count("once") <= 1  # delivered once at most, never twice
        await watcher.close()
    finally:
        await kill_servers(servers)
        server.stop()


async def _sends(s: Server, what: str) -> bool:
    r = await s.rest("group_open_http_svc", "send_group_msg", {  # a new Random each try
        "GroupId": GID, "From_Account": "administrator", "Random": time.monotonic_ns() % 2**32,
        "MsgBody": text(what)})
    return bool(r["ErrorCode"] == 0 and r["MsgSeq"] > 0)


async def _echo_then_reply(s: Server, user: str, sends: int) -> list[list[str]]:
    """What a sender on ``s`` reads, in order, up to each send's reply."""
    seen: list[list[str]] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(
            f"ws://127.0.0.1:{s.port}/v1/ws") as ws:
        await ws.send_json({"op": "login", "id": 1, "sdkAppId": SDKAPPID, "userId": user,
                            "userSig": sig(user)})
        await ws.send_json({"op": "join", "id": 2, "groupId": GID})
        while (await ws.receive_json()).get("id") != 2:
            pass
        for n in range(sends):
            await ws.send_json({"op": "send", "id": 10 + n, "groupId": GID,
                                "msgBody": text(f"{user} {n}")})
            got: list[str] = []
            while not got or not got[-1].startswith("reply"):
                frame = await ws.receive_json()
                if frame["op"] == "msgs":
                    got += [f"echo {m['seq']}" for m in frame["msgs"]
                            if m["from"] == user]
                elif frame["op"] == "reply" and frame["id"] == 10 + n:
                    got.append(f"reply {frame['msgSeq']}")
            seen.append(got)
    return seen


@pytest.mark.parametrize("chunk", ["2000", "1"])
@pytest.mark.parametrize("redis_url", ["server", "cluster"], indirect=True)
async def test_senders_get_their_echo_before_their_reply_on_every_process(
        redis_url: str, tmp_path: Path, chunk: str) -> None:
    """The reply of a send, from the owner's process or forwarded, follows its
    echo (docs/protocol.md), in a room written at once or one member per chunk."""
    servers: list[Server] = []
    try:
        await start_servers(cluster_env(redis_url, tmp_path, LIVECAST_FANOUT_CHUNK=chunk), 2,
                            servers)
        a, _b = servers
        await a.ok("group_open_http_svc", "create_group",
                   {"Type": "AVChatRoom", "GroupId": GID, "Name": "Chunked"})
        viewers = [await member(s, f"v{i}{s.port}") for s in servers for i in range(3)]
        for s in servers:
            for got in await _echo_then_reply(s, f"sender{s.port}", 3):
                seq = got[-1].split()[1]
                assert got == [f"echo {seq}", f"reply {seq}"], got
        for v in viewers:
            await v.close()
    finally:
        await kill_servers(servers)
