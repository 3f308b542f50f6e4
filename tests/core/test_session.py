"""livecast.core.session: the connection, sans I/O.  Bytes and ``now`` in,
actions out, no event loop: each test feeds client frames at chosen times
and asserts on the actions."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecast.core.flood import flood_limit
from livecast.core.protocol import Needs, Request
from livecast.core.session import (
    CLOSE_WAIT_BYTES,
    HANG_UP,
    SHED,
    VIOLATION,
    Action,
    CloseWith,
    Phase,
    Reply,
    Session,
    Signal,
    Write,
)
from livecast.core.wsframe import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    frame,
)
from livecast.errors import Close, Code
from livecast.gateway.ws import OPS
from tests.core.test_wsframe import client_frame, close_payload


@dataclass(frozen=True)
class Limits:
    req_rate: float = 200.0
    req_burst: int = 400
    violation_limit: int = 5
    outbox_soft_bytes: int = 256 * 1024
    outbox_hard_bytes: int = 2 * 1024 * 1024
    login_timeout: float = 10.0
    allow_guests: bool = True


LIMITS = Limits()
PING = client_frame(b"p", OP_PING)
PONG = client_frame(b"", OP_PONG)


def empty() -> int:
    return 0


def text(**fields: object) -> bytes:
    return client_frame(orjson.dumps(fields))


def run(session: Session, data: bytes, now: float = 0.0, outbox: int = 0,
        closing: bool = False) -> list[Action]:
    """Feed ``data`` and collect every action, as the shell does."""
    session.receive_data(data)
    out: list[Action] = []
    while (actions := session.next_actions(now, lambda: outbox, closing)) is not None:
        out.extend(actions)
    return out


def new(limits: Limits = LIMITS, now: float = 0.0) -> Session:
    return Session(limits, OPS, now)


def closes(actions: list[Action]) -> list[int]:
    return [a.code for a in actions if isinstance(a, CloseWith)]


def reply_codes(actions: list[Action]) -> list[int]:
    return [a.body["code"] for a in actions if isinstance(a, Reply)]


# ------------------------------------------------------------------ requests
def test_a_request_comes_out_parsed_with_its_defaults() -> None:
    """A text frame with a known op is a ``Request`` to dispatch."""
    body = [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "hi"}}]
    (req,) = run(new(), text(op="send", id=7, groupId="g", msgBody=body))
    assert isinstance(req, Request)
    assert (req.op, req.id, req.args["priority"], req.args["random"]) == ("send", 7, "Normal", 0)


def test_many_frames_in_one_read_come_out_in_order() -> None:
    data = b"".join(text(op="ping", id=i) for i in range(50))
    actions = run(new(), data)
    assert [a.id for a in actions if isinstance(a, Request)] == list(range(50))


def test_a_frame_cut_in_two_comes_out_once_whole() -> None:
    data, session = text(op="ping", id=1), new()
    assert run(session, data[:5]) == []
    (req,) = run(session, data[5:])
    assert isinstance(req, Request) and req.id == 1


def test_a_value_error_is_answered_and_is_no_violation() -> None:
    """A bad group id is answered 10015; it costs a token, not a violation."""
    session = new(replace(LIMITS, req_burst=1, req_rate=0.0, violation_limit=1))
    assert reply_codes(run(session, text(op="join", id=1, groupId=""))) == [Code.INVALID_GROUP_ID]
    assert reply_codes(run(session, text(op="ping", id=2))) == [Code.FREQ_LIMIT]
    assert session.violations == 0


def test_an_unknown_op_is_answered_10003_and_counted_as_a_violation() -> None:
    actions = run(new(), text(op="nope", id="x"))
    assert actions == [VIOLATION, Reply({"op": "reply", "id": "x", "code": Code.BAD_COMMAND,
                                         "info": "unknown op"})]


def test_a_frame_that_is_not_json_is_a_violation_with_no_reply() -> None:
    assert run(new(), client_frame(b"{nope")) == [VIOLATION]


def test_the_violation_limit_closes_4009_on_the_last_one() -> None:
    session = new()
    for _ in range(LIMITS.violation_limit - 1):
        assert run(session, client_frame(b"\x00", OP_BINARY)) == [VIOLATION]
    assert run(session, client_frame(b"\x00", OP_BINARY)) == [
        VIOLATION, CloseWith(Close.VIOLATIONS, "too many protocol violations")]


# ------------------------------------------------------------------ control frames
def test_a_ping_is_answered_with_a_pong_of_its_payload() -> None:
    assert run(new(), PING) == [Write(frame(b"p", OP_PONG))]


def test_past_the_soft_limit_a_ping_goes_unanswered_and_past_the_hard_limit_sheds() -> None:
    session = new()
    assert run(session, PING, outbox=LIMITS.outbox_soft_bytes + 1) == []
    assert run(session, PING, outbox=LIMITS.outbox_hard_bytes + 1) == [SHED]
    assert run(session, PING) == []  # shed: nothing more is acted on
    assert run(new(), text(op="ping", id=1), outbox=LIMITS.outbox_hard_bytes + 1) == [SHED]


def test_the_outbox_is_asked_only_when_a_rule_needs_it() -> None:
    """Pongs and closes never ask for the outbox's size (it can cost a syscall)."""
    asked: list[int] = []

    def outbox() -> int:
        asked.append(1)
        return 0

    session = new()
    session.receive_data(PONG + PONG + client_frame(close_payload(1000), OP_CLOSE))
    while session.next_actions(0.0, outbox, False) is not None:
        pass
    assert asked == []


@pytest.mark.parametrize("control", [PING, PONG])
def test_control_frames_cost_a_token_like_any_request(control: bytes) -> None:
    """Issue 14 point 6: pings and unsolicited pongs spend the request budget."""
    session = new(replace(LIMITS, req_burst=3, req_rate=0.0))
    run(session, control * 3)
    assert reply_codes(run(session, text(op="ping", id=1))) == [Code.FREQ_LIMIT]


@pytest.mark.parametrize("control", [PING, PONG])
def test_a_control_frame_flood_in_one_read_is_closed_4029(control: bytes) -> None:
    """A burst of pings or pongs past the bucket closes once the score passes its limit."""
    limits = replace(LIMITS, req_burst=40, req_rate=0.0)
    refusals = math.floor(flood_limit(limits.req_burst)) + 1
    actions = run(new(limits), control * (limits.req_burst + refusals + 50))
    assert actions.count(CloseWith(Close.FLOOD, "flood")) == 1
    assert actions[-1] == CloseWith(Close.FLOOD, "flood")  # nothing after it is acted on
    assert sum(isinstance(a, Write) for a in actions) == (
        limits.req_burst if control == PING else 0)


# ------------------------------------------------------------------ fragments
def fragmented(body: bytes, frames: int, last_fin: bool = True) -> bytes:
    """``body`` as one text message in ``frames`` frames: the first carries
    it, the continuations are empty (as the review's flood sent them)."""
    return b"".join(client_frame(b"" if i else body, OP_CONT if i else OP_TEXT,
                                 fin=i == frames - 1 and last_fin) for i in range(frames))


@pytest.mark.parametrize("n", [2, 7, MAX_FRAGMENTS])
def test_a_message_in_n_frames_costs_n_tokens(n: int) -> None:
    """Invariant 2: every frame costs a token, each fragment included."""
    session = new(replace(LIMITS, req_burst=n + 1, req_rate=0.0))
    (req,) = run(session, fragmented(orjson.dumps({"op": "ping", "id": 1}), n))
    assert isinstance(req, Request) and req.id == 1
    assert isinstance(run(session, text(op="ping", id=2))[0], Request)  # the last token
    assert reply_codes(run(session, text(op="ping", id=3))) == [Code.FREQ_LIMIT]


def test_each_fragment_takes_its_token_when_it_is_read() -> None:
    """Not when its message ends: a message still under way has paid for the
    frames read so far, and a fragment cut across two reads is paid once."""
    session = new(replace(LIMITS, req_burst=6, req_rate=0.0))
    frames = [client_frame(b'{"op":"ping",', OP_TEXT, fin=False),
              client_frame(b'"id":', OP_CONT, fin=False),
              client_frame(b"1", OP_CONT, fin=False), client_frame(b"}", OP_CONT)]
    for k, f in enumerate(frames[:-1], start=1):
        assert run(session, f[:3]) == [] and run(session, f[3:]) == []
        assert session.limiter.available(0.0) == 6 - k
    (req,) = run(session, frames[-1])
    assert isinstance(req, Request) and req.id == 1
    assert session.limiter.available(0.0) == 2


def test_a_message_whose_fragments_outrun_the_bucket_is_refused_10023() -> None:
    session = new(replace(LIMITS, req_burst=3, req_rate=0.0))
    actions = run(session, fragmented(orjson.dumps({"op": "ping", "id": 9}), 5))
    assert not any(isinstance(a, Request) for a in actions)
    assert reply_codes(actions) == [Code.FREQ_LIMIT]
    assert session.flood is not None and session.flood.score == 2  # frames 4 and 5


def test_a_message_with_a_refused_fragment_is_refused_even_if_its_end_finds_a_token() -> None:
    """A fragment has no id to answer: its message is refused whole when it ends."""
    session = new(replace(LIMITS, req_burst=2, req_rate=1.0))
    data = fragmented(orjson.dumps({"op": "ping", "id": 4}), 4)
    last = len(client_frame(b"", OP_CONT))
    assert run(session, data[:-last], now=0.0) == []  # three fragments, two tokens
    actions = run(session, data[-last:], now=5.0)  # the bucket refilled meanwhile
    assert reply_codes(actions) == [Code.FREQ_LIMIT]
    assert not any(isinstance(a, Request) for a in actions)
    assert session.flood is not None and session.flood.score < 2  # the end was not refused
    assert isinstance(run(session, text(op="ping", id=5), now=5.0)[0], Request)  # the next is


@pytest.mark.parametrize("kind", ["fragments", "messages", "pings"])
def test_a_fragment_flood_is_closed_4029_like_a_message_flood(kind: str) -> None:
    """Issue 14 point 2 holds frame by frame: the frame that closes a flood
    is the same whether the frames are fragments, messages or pings."""
    limits = replace(LIMITS, req_burst=40, req_rate=0.0)
    count = limits.req_burst + math.floor(flood_limit(limits.req_burst)) + 1
    body = orjson.dumps({"op": "ping", "id": 1})
    frames = {"fragments": fragmented(body, count + 1, last_fin=False),
              "messages": client_frame(body) * (count + 1), "pings": PING * (count + 1)}[kind]
    size = len(frames) // (count + 1)
    assert closes(run(new(limits), frames[:size * (count - 1)])) == []
    actions = run(new(limits), frames)
    assert closes(actions) == [Close.FLOOD] and actions[-1] == CloseWith(Close.FLOOD, "flood")


def test_the_reviews_fragment_flood_is_closed_in_its_first_message() -> None:
    """At the defaults, pings cut into MAX_FRAGMENTS frames: closed 4029
    before the first one ends, and none carried out."""
    attack = b"".join(fragmented(orjson.dumps({"op": "ping", "id": i}), MAX_FRAGMENTS)
                      for i in range(3))
    actions = run(new(), attack)
    assert actions[-1] == CloseWith(Close.FLOOD, "flood")
    assert not any(isinstance(a, Request | Reply) for a in actions)


def test_after_the_close_nothing_but_the_peers_close_is_acted_on() -> None:
    session = new()
    assert run(session, text(op="ping", id=1) + PING, closing=True) == []
    assert run(session, client_frame(close_payload(4000), OP_CLOSE), closing=True) == [
        CloseWith(4000), HANG_UP]


@pytest.mark.parametrize(("code", "echo"), [(1000, 1000), (1001, 1001), (4321, 4321),
                                            (1002, 1000), (1011, 1000)])
def test_the_peers_close_is_echoed_and_ends_the_read(code: int, echo: int) -> None:
    """RFC 6455 section 7.1.1; a code a server does not send back is answered 1000;
    what follows the close in the same read is not acted on."""
    data = client_frame(close_payload(code), OP_CLOSE) + text(op="ping", id=1)
    assert run(new(), data) == [CloseWith(echo), HANG_UP]


@pytest.mark.parametrize(("payload", "code"), [
    (close_payload(1005), 1002), (close_payload(2999), 1002), (b"\x03", 1002),
    (close_payload(1000) + b"\xff", 1007)])
def test_a_malformed_close_is_answered_and_ends_the_read(payload: bytes, code: int) -> None:
    """The peer's close came (with a code it may not send, one byte, a reason
    not UTF-8): answered with the failure's code and hung up on at once,
    nothing more awaited."""
    session = new()
    data = client_frame(payload, OP_CLOSE) + text(op="ping", id=1)
    actions = run(session, data)
    assert [type(a) for a in actions] == [CloseWith, type(HANG_UP)]
    assert actions[0].code == code and actions[1] == HANG_UP  # type: ignore[union-attr]


def test_a_close_with_no_code_is_answered_1000() -> None:
    assert run(new(), client_frame(b"", OP_CLOSE)) == [CloseWith(Close.NORMAL), HANG_UP]


# ------------------------------------------------------------------ after the close: a bound
def flooded(limits: Limits) -> Session:
    """A session that has just closed 4029 on a ping flood."""
    session = new(limits)
    actions = run(session, PING * (limits.req_burst + math.floor(flood_limit(limits.req_burst))
                                   + 1))
    assert actions[-1] == CloseWith(Close.FLOOD, "flood")
    return session


def test_after_its_close_a_flooder_is_read_only_for_its_close_up_to_a_bound() -> None:
    """Invariant 6: within CLOSE_WAIT_BYTES the peer's close still ends the
    session cleanly (echoed, then hung up)."""
    session = flooded(replace(LIMITS, req_burst=8, req_rate=0.0))
    chunk = PING * 1000
    sent = 0
    while sent + 2 * len(chunk) <= CLOSE_WAIT_BYTES:
        assert run(session, chunk) == []
        sent += len(chunk)
    assert run(session, client_frame(close_payload(1000), OP_CLOSE)) == [
        CloseWith(1000), HANG_UP]


@pytest.mark.parametrize("node_closed", [False, True])
def test_a_peer_that_goes_on_sending_past_the_bound_is_hung_up_on(node_closed: bool) -> None:
    """Past CLOSE_WAIT_BYTES read since the close (this object's, or the
    node's: ``closing``), HANG_UP once, and nothing more is read."""
    limits = replace(LIMITS, req_burst=8, req_rate=0.0)
    session = new(limits) if node_closed else flooded(limits)
    assert run(session, PING, closing=node_closed) == []  # the node's close is seen here
    chunk, actions = PING * 1000, []
    for _ in range(CLOSE_WAIT_BYTES // len(chunk) + 1):
        actions += run(session, chunk, closing=node_closed)
    assert actions == [HANG_UP]
    before = session.reader.buf
    assert run(session, client_frame(close_payload(1000), OP_CLOSE)[:3] + PING,
               closing=node_closed) == []
    assert session.reader.buf is before  # not even fed


# ------------------------------------------------------------------ broken framing
def test_messages_before_broken_framing_count_then_1002_then_the_peers_close() -> None:
    """RFC 6455 section 7.1.7: whole messages first, the failure's close, and the
    rest only walked for the peer's close frame."""
    unmasked = bytes([0x81, 0x01]) + b"x"
    data = text(op="ping", id=1) + unmasked + client_frame(close_payload(1000), OP_CLOSE)
    actions = run(new(), data)
    assert isinstance(actions[0], Request)
    assert actions[1:] == [CloseWith(1002, "client frames must be masked"),
                           CloseWith(Close.NORMAL), HANG_UP]


def test_lost_framing_hangs_up_at_once() -> None:
    """A 64-bit length with its top bit set: nothing more can be recognised."""
    lost = bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"\0" * 4
    assert run(new(), lost) == [
        CloseWith(1002, "a 64-bit length with its most significant bit set"),
        CloseWith(Close.NORMAL), HANG_UP]


@pytest.mark.parametrize(("data", "code"), [
    (client_frame(b"\xff\xfe"), 1007),
    (client_frame(b"x", OP_CONT), 1002),
    (client_frame(b"x" * 70_000), 1009),
])
def test_broken_frames_close_with_the_readers_code(data: bytes, code: int) -> None:
    assert closes(run(new(), data)) == [code]


# ------------------------------------------------------------------ phase and deadline
def test_the_phase_moves_forward_with_what_is_carried_out() -> None:
    session = new()
    assert session.phase is Phase.OPEN
    session.carried_out("ping")
    assert session.phase is Phase.OPEN
    session.carried_out("join")
    assert session.phase is Phase.GUEST
    session.carried_out("login")
    assert session.phase is Phase.USER
    session.carried_out("join")
    assert session.phase is Phase.USER


def test_what_each_op_needs_of_the_phase() -> None:
    session = new(replace(LIMITS, allow_guests=False))
    assert session.refusal(Needs.NO_LOGIN) is None
    assert session.refusal(Needs.LOGIN) == (Code.NO_PERMISSION, "login first")
    assert session.refusal(Needs.READER) == (Code.NO_PERMISSION,
                                             "guests are not allowed: login first")
    assert new().refusal(Needs.READER) is None  # guests allowed
    session.carried_out("login")
    assert session.refusal(Needs.NO_LOGIN) == (Code.BAD_PARAMETER, "already logged in")
    assert session.refusal(Needs.LOGIN) is None
    assert session.refusal(Needs.READER) is None
    assert session.refusal(Needs.ANY) is None


def test_the_login_deadline_closes_4002_only_in_the_open_phase() -> None:
    session = new(now=5.0)
    assert session.opened(5.0) == 5.0 + LIMITS.login_timeout
    assert session.login_expired() == [CloseWith(Close.LOGIN_TIMEOUT, "no login in time")]
    assert session.phase is Phase.CLOSING
    assert run(session, PING) == []  # closing: nothing more is acted on
    for op in ("join", "login"):
        other = new(now=5.0)
        other.carried_out(op)
        assert other.login_expired() == []


def test_an_idle_session_has_no_flood_score_until_a_refusal() -> None:
    session = new(replace(LIMITS, req_burst=1, req_rate=0.0))
    run(session, PING)
    assert session.flood is None
    run(session, PING)
    assert session.flood is not None and session.flood.score == 1.0


# ------------------------------------------------------------------ properties
ACTION_TYPES = (Request, Reply, Write, CloseWith, Signal)
CLOSE_CODES = {1000, 1001, 1002, 1007, 1008, 1009, 4009, 4029} | set(range(3000, 5000))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 64), max_size=20),
       st.booleans())
def test_any_byte_stream_in_any_chunks_never_raises(data: bytes, cuts: list[int],
                                                    closing: bool) -> None:
    """Arbitrary bytes become actions of the documented kinds, and reply codes
    and close codes that are documented ones."""
    session, pos, actions = new(replace(LIMITS, req_burst=8)), 0, []
    for n in [*cuts, len(data)]:
        actions += run(session, data[pos:pos + n], now=pos / 100, closing=closing)
        pos += n
    assert all(isinstance(a, ACTION_TYPES) for a in actions)
    assert {int(c) for c in reply_codes(actions)} <= {int(c) for c in Code}
    assert set(closes(actions)) <= CLOSE_CODES


frames = st.sampled_from([PING, PONG, text(op="ping", id=1), text(op="ping"),
                          client_frame(b"\x00", OP_BINARY), text(op="join", groupId="")])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.2), frames), max_size=300))
def test_pings_answered_never_outrun_the_bucket(arrivals: list[tuple[float, bytes]]) -> None:
    """Whatever the mix of frames: pongs written <= burst + rate * elapsed."""
    limits = replace(LIMITS, req_rate=20.0, req_burst=10, violation_limit=10**6)
    session, now, pongs = new(limits), 0.0, 0
    for gap, data in arrivals:
        now += gap
        actions = run(session, data, now=now)
        pongs += sum(isinstance(a, Write) for a in actions)
        if closes(actions):
            break
        assert pongs <= limits.req_burst + limits.req_rate * now + 1e-6


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(1 / 20, 1.0), min_size=1, max_size=300), st.sampled_from([PING, PONG]))
def test_a_client_at_or_under_its_rate_is_never_refused(gaps: list[float],
                                                        data: bytes) -> None:
    limits = replace(LIMITS, req_rate=20.0, req_burst=1)
    session, now = new(limits), 0.0
    for gap in gaps:
        now += gap
        assert run(session, data, now=now) in ([], [Write(frame(b"p", OP_PONG))])


@pytest.mark.parametrize(("times", "within"), [(4.6, 1.0), (2.0, 3.0), (1.5, 6.0)])
def test_a_sustained_excess_is_closed_within_seconds(times: float, within: float) -> None:
    """Issue 14 point 2, at the defaults (200/s, burst 400): refused requests
    never reset the score, so any sustained excess ends in 4029."""
    session, rate, now = new(), LIMITS.req_rate * times, 0.0
    while now < within + 10:
        now += 1 / rate
        if closes(run(session, PONG, now=now)) == [Close.FLOOD]:
            break
    assert now < within
