from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livecast.core.signing import (
    body_signature,
    body_signature_ok,
    tencent_sign,
    tencent_sign_ok,
)


def test_tencent_vector() -> None:
    expected = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
    assert tencent_sign("xxxxyyyy", 1669872112) == expected
    assert tencent_sign_ok("xxxxyyyy", expected, "1669872112", now=1669872112)
    assert tencent_sign_ok("xxxxyyyy", expected.upper(), "1669872112", now=0)


def test_tencent_sign_refusals() -> None:
    good = tencent_sign("tok", 1000)
    assert not tencent_sign_ok("other", good, "1000", now=1000)
    assert not tencent_sign_ok("tok", good, "1001", now=1000)
    assert not tencent_sign_ok("tok", good, "abc", now=1000)
    assert not tencent_sign_ok("tok", good, "1000", now=1000 + 61, window=60)
    assert tencent_sign_ok("tok", good, "1000", now=1000 + 60, window=60)


def test_body_signature_rotation_replay_and_tampering() -> None:
    body = b'{"CallbackCommand":"Group.CallbackAfterSendMsg"}'
    header = body_signature(["new", "old"], 5000, body)
    assert body_signature_ok(["old"], header, body, now=5000)
    assert body_signature_ok(["new"], header, body, now=5100)
    assert not body_signature_ok(["third"], header, body, now=5000)
    assert not body_signature_ok(["new"], header, body + b" ", now=5000)
    assert not body_signature_ok(["new"], header, body, now=5000 + 301)
    assert not body_signature_ok(["new"], "garbage", body, now=5000)
    assert not body_signature_ok(["new"], header.replace("t=5000", "t=5001"), body, now=5000)


@given(st.text(), st.binary(), st.integers(min_value=0, max_value=2**40))
def test_body_signature_round_trip(key: str, body: bytes, t: int) -> None:
    assert body_signature_ok([key], body_signature([key], t, body), body, now=t)


@given(st.text(max_size=12))
def test_no_header_value_raises(value: str) -> None:
    """Unicode digits such as "²" pass str.isdigit() but not int(): refused, never raised."""
    good = tencent_sign("tok", 1000)
    assert tencent_sign_ok("tok", good, value, now=1000) is (
        value.isascii() and value.isdigit() and int(value) == 1000)
    assert body_signature_ok(["k"], f"t={value},v1=00", b"", now=1000) is False


def test_superscript_digits_are_refused() -> None:
    assert not body_signature_ok(["k"], "t=²,v1=00", b"", now=2)
    assert not tencent_sign_ok("tok", tencent_sign("tok", 2), "²", now=2)


def test_a_hostile_sign_or_time_is_refused_never_raised() -> None:
    good = tencent_sign("tok", 1000)
    assert not tencent_sign_ok("tok", "é" * 64, "1000", now=1000)  # compare_digest raised
    assert not tencent_sign_ok("tok", good, "1" * 5000, now=1000)  # int() raised past 4,300
    assert not body_signature_ok(["k"], "t=1000,v1=" + "é" * 64, b"", now=1000)
    assert not body_signature_ok(["k"], "t=" + "1" * 5000 + ",v1=00", b"", now=1000)
