"""Client frames: Reader joins, unmasks and checks them; unmask, close_code and the close codes
of every protocol violation (RFC 6455 sections 5 and 7.4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.core.wsframe import (
    FRAGMENT,
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Drain,
    Reader,
    WsError,
    close_code,
    close_frame,
    frame,
    unmask,
)

KEY = b"\x37\xfa\x21\x3d"  # the masking key of RFC 6455 section 5.7's examples
BIG = 1 << 20
ALLOWED_CLOSE = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
FORBIDDEN_CLOSE = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


# ------------------------------------------------------------------ a client-frame encoder
def xor(key: bytes, data: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def header(opcode: int, length: int, *, fin: bool = True, rsv: int = 0, key: bytes = KEY,
           masked: bool = True) -> bytes:
    """A frame header (RFC 6455 section 5.2), the masking key included when masked."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask = 0x80 if masked else 0
    if length < 126:
        head = struct.pack("!BB", first, mask | length)
    elif length < 65536:
        head = struct.pack("!BBH", first, mask | 126, length)
    else:
        head = struct.pack("!BBQ", first, mask | 127, length)
    return head + key if masked else head


def client_frame(payload: bytes, opcode: int = OP_TEXT, *, fin: bool = True, rsv: int = 0,
                 key: bytes = KEY, masked: bool = True) -> bytes:
    head = header(opcode, len(payload), fin=fin, rsv=rsv, key=key, masked=masked)
    return head + (xor(key, payload) if masked else payload)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def error_of(*frames: bytes, max_size: int = 1024) -> WsError:
    """The error the last frame raises; the frames before it are fed first and must pass."""
    reader = Reader(max_size)
    for f in frames[:-1]:
        reader.feed(f)
    with pytest.raises(WsError) as caught:
        reader.feed(frames[-1])
    assert caught.value.reason and str(caught.value) == caught.value.reason
    return caught.value


def feed_all(*frames: bytes, max_size: int = 1024) -> list[tuple[int, bytes]]:
    reader = Reader(max_size)
    return reader.feed(b"".join(frames))


# ------------------------------------------------------------------ strategies
KEYS = st.binary(min_size=4, max_size=4)
CLOSE_PAYLOADS = st.one_of(
    st.just(b""),
    st.builds(close_payload,
              st.sampled_from(ALLOWED_CLOSE) | st.integers(3000, 4999),
              st.text(max_size=30).map(str.encode)),
)
CONTROLS = st.one_of(
    st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125)),
    st.tuples(st.just(OP_CLOSE), CLOSE_PAYLOADS),
)
SMALL_DATA = st.one_of(
    st.tuples(st.just(OP_TEXT), st.text().map(str.encode)),
    st.tuples(st.just(OP_BINARY), st.binary()),
)
LONG_SIZES = st.sampled_from([126, 1000, 65535, 65536, 70000])
LONG_DATA = st.one_of(  # long enough for the 16- and 64-bit length forms
    st.builds(lambda n, seed: (OP_TEXT, (seed * n)[:n].encode()),
              LONG_SIZES, st.text("abcé€😀", min_size=1, max_size=4)),
    st.builds(lambda n, seed: (OP_BINARY, (seed * n)[:n]),
              LONG_SIZES, st.binary(min_size=1, max_size=4)),
)


@st.composite
def conversations(draw: st.DrawFn, data: st.SearchStrategy[tuple[int, bytes]]
                  ) -> tuple[bytes, list[tuple[int, bytes]]]:
    """A client's byte stream and the (opcode, payload) list a reader should make of it:
    data messages cut into fragments at arbitrary bytes, control frames between them."""
    stream: list[bytes] = []
    expected: list[tuple[int, bytes]] = []
    for opcode, payload in draw(st.lists(st.one_of(data, CONTROLS), max_size=6)):
        if opcode in (OP_PING, OP_PONG, OP_CLOSE):
            stream.append(client_frame(payload, opcode, key=draw(KEYS)))
            expected.append((opcode, payload))
            continue
        cuts = sorted(draw(st.sets(st.integers(0, len(payload)), max_size=4)))
        pieces = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
        for i, piece in enumerate(pieces):
            if i:
                for c_op, c_payload in draw(st.lists(CONTROLS, max_size=2)):
                    stream.append(client_frame(c_payload, c_op, key=draw(KEYS)))
                    expected.append((c_op, c_payload))
            stream.append(client_frame(piece, opcode if i == 0 else OP_CONT,
                                       fin=i == len(pieces) - 1, key=draw(KEYS)))
        expected.append((opcode, payload))
    return b"".join(stream), expected


# ------------------------------------------------------------------ the encoder itself
def test_encoder_reproduces_the_rfc_masked_examples() -> None:
    # RFC 6455 section 5.7: a masked "Hello" text frame and a masked "Hello" pong
    assert client_frame(b"Hello") == bytes.fromhex("818537fa213d7f9f4d5158")
    assert client_frame(b"Hello", OP_PONG) == bytes.fromhex("8a8537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_encoder_unmasked_matches_the_server_frame_builder(size: int) -> None:
    payload = bytes(range(256)) * (size // 256 + 1)
    assert client_frame(payload[:size], OP_BINARY, masked=False) == frame(payload[:size],
                                                                          OP_BINARY)


# ------------------------------------------------------------------ unmask
@given(st.binary(max_size=2000), KEYS)
def test_unmask_is_a_repeating_four_byte_xor(payload: bytes, key: bytes) -> None:
    assert unmask(key, payload) == xor(key, payload)


@given(st.binary(max_size=2000), KEYS)
def test_unmask_is_its_own_inverse(payload: bytes, key: bytes) -> None:
    assert unmask(key, unmask(key, payload)) == payload


def test_unmask_of_nothing_is_nothing() -> None:
    assert unmask(KEY, b"") == b""


# ------------------------------------------------------------------ reading frames
def test_reader_reads_the_rfc_examples() -> None:
    reader = Reader(BIG)
    assert reader.feed(bytes.fromhex("818537fa213d7f9f4d5158")) == [(OP_TEXT, b"Hello")]
    assert reader.feed(bytes.fromhex("8a8537fa213d7f9f4d5158")) == [(OP_PONG, b"Hello")]


@pytest.mark.parametrize(("size", "marker"), [
    (0, 0), (125, 125), (126, 126), (65535, 126), (65536, 127), (70000, 127)])
def test_reader_decodes_each_length_form(size: int, marker: int) -> None:
    payload = (bytes(range(251)) * (size // 251 + 1))[:size]
    f = client_frame(payload, OP_BINARY, key=b"\x01\x80\xff\x7e")
    assert f[1] == 0x80 | marker
    reader = Reader(BIG)
    assert reader.feed(f) == [(OP_BINARY, payload)]
    assert reader.buf == b""


@pytest.mark.parametrize("size", [5, 200, 300])
def test_a_frame_split_anywhere_is_returned_only_when_complete(size: int) -> None:
    payload = b"x" * size
    f = client_frame(payload, OP_BINARY)
    for at in range(len(f) + 1):
        reader = Reader(BIG)
        assert reader.feed(f[:at]) == ([] if at < len(f) else [(OP_BINARY, payload)])
        assert reader.feed(f[at:]) == ([(OP_BINARY, payload)] if at < len(f) else [])
        assert reader.buf == b""


@given(conversations(st.one_of(SMALL_DATA, LONG_DATA)), st.data())
def test_any_conversation_in_any_chunks_round_trips(
        conversation: tuple[bytes, list[tuple[int, bytes]]], data: st.DataObject) -> None:
    stream, expected = conversation
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=40)))
    reader = Reader(BIG)
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += reader.feed(stream[a:b])
    assert out == expected
    assert reader.buf == b"" and reader.parts is None


@given(conversations(SMALL_DATA))
def test_any_conversation_fed_one_byte_at_a_time_round_trips(
        conversation: tuple[bytes, list[tuple[int, bytes]]]) -> None:
    stream, expected = conversation
    reader = Reader(BIG)
    out = []
    for i in range(len(stream)):
        out += reader.feed(stream[i:i + 1])
    assert out == expected
    assert reader.buf == b"" and reader.parts is None


# ------------------------------------------------------------------ protocol errors: 1002
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_an_unmasked_frame_fails_1002(opcode: int) -> None:
    assert error_of(client_frame(b"hi", opcode, masked=False)).code == 1002


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_reserved_bits_fail_1002(rsv: int) -> None:
    assert error_of(client_frame(b"hi", rsv=rsv)).code == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_an_unknown_opcode_fails_1002(opcode: int) -> None:
    assert error_of(client_frame(b"", opcode)).code == 1002


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_fragmented_control_frame_fails_1002(opcode: int) -> None:
    assert error_of(client_frame(b"", opcode, fin=False)).code == 1002


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_a_control_frame_over_125_bytes_fails_1002(opcode: int) -> None:
    assert error_of(client_frame(close_payload(1000, b"x" * 124), opcode)).code == 1002


@pytest.mark.parametrize("fin", [True, False])
def test_a_continuation_with_nothing_to_continue_fails_1002(fin: bool) -> None:
    assert error_of(client_frame(b"x", OP_CONT, fin=fin)).code == 1002


def test_a_continuation_after_the_message_ended_fails_1002() -> None:
    err = error_of(client_frame(b"a", fin=False), client_frame(b"b", OP_CONT),
                   client_frame(b"c", OP_CONT))
    assert err.code == 1002


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("fin", [True, False])
def test_a_new_message_inside_a_fragmented_one_fails_1002(opcode: int, fin: bool) -> None:
    assert error_of(client_frame(b"a", fin=False), client_frame(b"b", opcode, fin=fin)).code == 1002


# ------------------------------------------------------------------ sizes: 1009
@pytest.mark.parametrize(("max_size", "length"), [
    (10, 11), (125, 126), (1000, 65535), (65535, 65536), (BIG, 2**63 - 1)])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_a_frame_over_max_size_fails_1009_on_its_header(
        max_size: int, length: int, opcode: int) -> None:
    assert error_of(header(opcode, length), max_size=max_size).code == 1009


@pytest.mark.parametrize("length", [2**63, 2**63 + 5, 2**64 - 1])
def test_a_64_bit_length_with_its_top_bit_set_fails_1002(length: int) -> None:
    """RFC 6455 section 5.2: the most significant bit MUST be 0; a protocol
    error, not a size one."""
    head = struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, length) + KEY
    err = error_of(head, max_size=BIG)
    assert err.code == 1002 and err.rest == head


def test_a_fragment_over_max_size_fails_1009_on_its_header() -> None:
    err = error_of(client_frame(b"abc", fin=False), header(OP_CONT, 11), max_size=10)
    assert err.code == 1009


@pytest.mark.parametrize("last_fin", [True, False])
def test_a_fragmented_message_over_max_size_fails_1009(last_fin: bool) -> None:
    err = error_of(client_frame(b"x" * 6, OP_BINARY, fin=False),
                   client_frame(b"y" * 5, OP_CONT, fin=last_fin), max_size=10)
    assert err.code == 1009


def test_a_frame_of_exactly_max_size_is_read() -> None:
    assert feed_all(client_frame(b"x" * 10), max_size=10) == [(OP_TEXT, b"x" * 10)]


def test_a_fragmented_message_of_exactly_max_size_is_read() -> None:
    frames = [client_frame(b"abc", fin=False), client_frame(b"defg", OP_CONT, fin=False),
              client_frame(b"hij", OP_CONT)]
    assert feed_all(*frames, max_size=10) == [(OP_TEXT, b"abcdefghij")]


def test_control_frames_between_fragments_do_not_count_toward_the_size() -> None:
    frames = [client_frame(b"x" * 6, OP_BINARY, fin=False), client_frame(b"p" * 8, OP_PING),
              client_frame(b"y" * 4, OP_CONT)]
    assert feed_all(*frames, max_size=10) == [(OP_PING, b"p" * 8), (OP_BINARY, b"x" * 6 + b"y" * 4)]


# ------------------------------------------------------------------ text: 1007
@pytest.mark.parametrize("text", [
    b"\xff", b"ok\x80", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"],
    ids=["ff", "stray-continuation", "truncated", "overlong", "surrogate", "above-max"])
def test_invalid_utf8_text_fails_1007(text: bytes) -> None:
    assert error_of(client_frame(text)).code == 1007


def test_binary_is_not_checked_for_utf8() -> None:
    assert feed_all(client_frame(b"\xff\xc3", OP_BINARY)) == [(OP_BINARY, b"\xff\xc3")]


@pytest.mark.parametrize("pieces", [[b"ok", b"\xff"], [b"\xe2\x82", b""]],
                         ids=["bad-last", "never-completed"])
def test_a_fragmented_invalid_text_fails_1007_on_its_last_fragment(pieces: list[bytes]) -> None:
    first, last = pieces
    assert error_of(client_frame(first, fin=False), client_frame(last, OP_CONT)).code == 1007


@pytest.mark.parametrize("pieces", [
    [b"\xff"], [b"ok", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"],
    [b"\xe2", b"\x82", b"\x28"], [b"\xf4\x90"]],
    ids=["bad-first", "surrogate-in-second", "broken-across-three", "over-u10ffff"])
def test_a_fragmented_text_fails_1007_on_the_first_fragment_that_cannot_be_utf8(
        pieces: list[bytes]) -> None:
    """Autobahn 6.4: fail fast, before the message is complete."""
    frames = [client_frame(p, OP_TEXT if i == 0 else OP_CONT, fin=False)
              for i, p in enumerate(pieces)]
    assert error_of(*frames).code == 1007


@given(st.text(min_size=1, max_size=20), st.data())
def test_a_text_cut_anywhere_into_fragments_is_accepted(text: str, data: st.DataObject) -> None:
    raw = text.encode()
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=5)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    frames = [client_frame(p, OP_TEXT if i == 0 else OP_CONT, fin=i == len(pieces) - 1)
              for i, p in enumerate(pieces)]
    assert feed_all(*frames) == [(OP_TEXT, raw)]


@pytest.mark.parametrize("text", ["é", "€", "😀", "a€😀b"])
def test_a_character_split_across_fragments_is_accepted(text: str) -> None:
    encoded = text.encode()
    for at in range(len(encoded) + 1):
        frames = [client_frame(encoded[:at], fin=False), client_frame(b"p", OP_PING),
                  client_frame(encoded[at:], OP_CONT)]
        assert feed_all(*frames) == [(OP_PING, b"p"), (OP_TEXT, encoded)]


# ------------------------------------------------------------------ close frames
def test_an_empty_close_payload_has_no_code() -> None:
    assert close_code(b"") is None
    assert feed_all(client_frame(b"", OP_CLOSE)) == [(OP_CLOSE, b"")]


@pytest.mark.parametrize("code", ALLOWED_CLOSE)
@pytest.mark.parametrize("reason", [b"", b"bye", "adiós 👋".encode()])
def test_an_allowed_close_code_is_returned(code: int, reason: bytes) -> None:
    payload = close_payload(code, reason)
    assert close_code(payload) == code
    assert feed_all(client_frame(payload, OP_CLOSE)) == [(OP_CLOSE, payload)]


@pytest.mark.parametrize("payload", [b"\x03", b"\xe8"])
def test_a_one_byte_close_payload_fails_1002(payload: bytes) -> None:
    with pytest.raises(WsError) as caught:
        close_code(payload)
    assert caught.value.code == 1002
    assert error_of(client_frame(payload, OP_CLOSE)).code == 1002


@pytest.mark.parametrize("code", FORBIDDEN_CLOSE)
def test_a_close_code_a_peer_may_not_send_fails_1002(code: int) -> None:
    with pytest.raises(WsError) as caught:
        close_code(close_payload(code))
    assert caught.value.code == 1002
    assert error_of(client_frame(close_payload(code), OP_CLOSE)).code == 1002


@pytest.mark.parametrize("reason", [b"\xff", b"bye\xc3", b"\xed\xa0\x80"])
def test_a_close_reason_that_is_not_utf8_fails_1007(reason: bytes) -> None:
    with pytest.raises(WsError) as caught:
        close_code(close_payload(1000, reason))
    assert caught.value.code == 1007
    assert error_of(client_frame(close_payload(1000, reason), OP_CLOSE)).code == 1007


@given(st.integers(0, 65535), st.binary(max_size=123))
def test_close_code_either_returns_the_code_or_raises_ws_error(code: int, reason: bytes) -> None:
    try:
        result = close_code(close_payload(code, reason))
    except WsError as err:
        assert err.code in (1002, 1007)
    else:
        assert result == code


# ------------------------------------------------------------------ close_frame (server side)
def test_close_frame_cuts_a_long_reason_to_the_control_limit() -> None:
    f = close_frame(1001, "x" * 300)
    assert f[:2] == bytes([0x80 | OP_CLOSE, 125])
    assert close_code(f[2:]) == 1001


def test_close_frame_cuts_a_long_reason_on_a_character_boundary() -> None:
    assert close_code(close_frame(1000, "é" * 100)[2:]) == 1000


def _fragments(count: int, last_fin: bool = True) -> bytes:
    """A text message "x" * count in ``count`` frames of one byte each."""
    frames = [client_frame(b"x", OP_TEXT if i == 0 else OP_CONT,
                           fin=(i == count - 1 and last_fin)) for i in range(count)]
    return b"".join(frames)


def test_a_message_in_max_fragments_frames_is_read() -> None:
    assert Reader(1 << 16).feed(_fragments(MAX_FRAGMENTS)) == [(OP_TEXT, b"x" * MAX_FRAGMENTS)]


def test_a_message_in_more_frames_than_max_fragments_fails_1008() -> None:
    reader = Reader(1 << 16)
    with pytest.raises(WsError) as err:
        reader.feed(_fragments(MAX_FRAGMENTS + 1, last_fin=False))
    assert err.value.code == 1008


def test_empty_continuations_count_toward_the_fragment_limit() -> None:
    data = (client_frame(b"", OP_TEXT, fin=False)
            + client_frame(b"", OP_CONT, fin=False) * MAX_FRAGMENTS)
    with pytest.raises(WsError) as err:
        Reader(1 << 16).feed(data)
    assert err.value.code == 1008


# ------------------------------------------------------------------ marks: one item a frame
def frame_count(stream: bytes) -> int:
    """The frames of a masked client stream."""
    pos = count = 0
    while pos < len(stream):
        n, pos = stream[pos + 1] & 0x7F, pos + 2
        if n >= 126:
            width = 2 if n == 126 else 8
            n, pos = int.from_bytes(stream[pos:pos + width], "big"), pos + width
        pos, count = pos + 4 + n, count + 1
    return count


def test_marks_give_a_fragment_for_each_frame_of_a_message_but_its_last() -> None:
    data = b"".join([client_frame(b"a", OP_TEXT, fin=False), client_frame(b"p", OP_PING),
                     client_frame(b"b", OP_CONT, fin=False), client_frame(b"c", OP_CONT),
                     client_frame(b"whole")])
    assert Reader(BIG, marks=True).feed(data) == [
        FRAGMENT, (OP_PING, b"p"), FRAGMENT, (OP_TEXT, b"abc"), (OP_TEXT, b"whole")]
    assert Reader(BIG).feed(data) == [(OP_PING, b"p"), (OP_TEXT, b"abc"), (OP_TEXT, b"whole")]


def test_marks_come_with_the_error_of_a_message_in_too_many_frames() -> None:
    reader = Reader(1 << 16, marks=True)
    with pytest.raises(WsError) as err:
        reader.feed(_fragments(MAX_FRAGMENTS + 1, last_fin=False))
    assert err.value.code == 1008 and err.value.messages == [FRAGMENT] * MAX_FRAGMENTS


@given(conversations(st.one_of(SMALL_DATA, LONG_DATA)), st.data())
def test_with_marks_any_conversation_gives_one_item_a_frame(
        conversation: tuple[bytes, list[tuple[int, bytes]]], data: st.DataObject) -> None:
    """In any chunks: as many items as frames, and the same messages as without."""
    stream, expected = conversation
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=40)))
    reader, out = Reader(BIG, marks=True), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        out += reader.feed(stream[a:b])
    assert len(out) == frame_count(stream)
    assert [item for item in out if item is not FRAGMENT] == expected


# ------------------------------------------------------------------ after a violation
def test_messages_before_a_violation_come_with_the_error() -> None:
    reader = Reader(1024)
    with pytest.raises(WsError) as caught:
        reader.feed(client_frame(b"first") + client_frame(b"ping", OP_PING)
                    + client_frame(b"bad", masked=False) + client_frame(b"after"))
    assert caught.value.code == 1002
    assert caught.value.messages == [(OP_TEXT, b"first"), (OP_PING, b"ping")]
    # the rest starts at the offending frame: its head tells where the next one is
    assert caught.value.rest == client_frame(b"bad", masked=False) + client_frame(b"after")


def test_after_a_message_level_violation_the_rest_starts_at_the_next_frame() -> None:
    reader = Reader(1024)
    with pytest.raises(WsError) as caught:
        reader.feed(client_frame(b"\xff") + client_frame(b"next"))
    assert caught.value.code == 1007
    assert caught.value.rest == client_frame(b"next")


CLOSE = client_frame(close_payload(1000), OP_CLOSE)
GARBAGE = [  # frames breaking each rule, all still framed
    client_frame(b"unmasked", masked=False),
    client_frame(b"x" * 70000, OP_BINARY),
    client_frame(b"rsv", rsv=0x40),
    client_frame(b"op", 0x3),
    client_frame(b"\xff\xfe", OP_TEXT),
    client_frame(b"p" * 200, OP_PING),
    client_frame(b"c", OP_CONT),
]


@given(st.lists(st.sampled_from(GARBAGE), max_size=5), st.data())
def test_a_drain_finds_the_peers_close_after_any_garbage_in_any_chunks(
        garbage: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(garbage) + CLOSE
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=6)))
    drain, got = Drain(), []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got.extend(drain.feed(stream[a:b]))
        assert len(drain.buf) <= 14 + 125  # a frame head, or a Close frame, at most
        if b < len(stream):
            assert got == []  # nothing before the Close frame is whole
    assert got == [(OP_CLOSE, b"")]


def test_a_drain_gives_up_at_once_when_the_framing_is_lost() -> None:
    lost = struct.pack("!BBQ", 0x82, 0x80 | 127, 2**63) + KEY
    assert Drain().feed(lost + b"anything") == [(OP_CLOSE, b"")]
    too_long_close = header(OP_CLOSE, 300)
    assert Drain().feed(too_long_close) == [(OP_CLOSE, b"")]


def test_a_drain_skips_a_big_payload_without_keeping_it() -> None:
    drain = Drain()
    assert drain.feed(header(OP_BINARY, 1 << 30)) == []
    for _ in range(4):
        assert drain.feed(bytes(1 << 16)) == []
    assert drain.buf == b"" and drain.skip == (1 << 30) - 4 * (1 << 16)
