"""UserSig v2 (reference section 4) against Tencent's own library and the 4.3 vector."""

from __future__ import annotations

import base64
import json
import math
import time
import zlib

import TLSSigAPIv2
from hypothesis import given
from hypothesis import strategies as st

from livecast.core.usersig import DEFAULT_EXPIRE, decode, mint, revoked, verify
from livecast.errors import Code

APP = 1400000000
KEY = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
USER = "xiaojun"
T0 = 1700000000
VECTOR_EXPIRE = 15552000
VECTOR_SIG = "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
VECTOR_USERBUF_SIG = "QjT201xPkXk/aM1e+y0vakZb0K2iPrFue++0s5y6bFM="
VECTOR = (
    "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJk"
    "TE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoB"
    "HdYzUg__"
)
ALL_CODES = {
    Code.OK,
    Code.SIG_EXPIRED,
    Code.SIG_EMPTY,
    Code.SIG_INVALID,
    Code.SIG_BAD_SIGNATURE,
    Code.SIG_USER_MISMATCH,
    Code.SIG_SDKAPPID_MISMATCH,
}


def encode(doc: object, level: int = 6) -> str:
    """Pack any JSON value the way a UserSig is packed (4.1 steps 5-6)."""
    packed = zlib.compress(json.dumps(doc).encode("utf-8"), level)
    raw = base64.b64encode(packed).decode("ascii")
    return raw.replace("+", "*").replace("/", "-").replace("=", "_")


def wrap(raw: bytes) -> str:
    """Url-style base64 of arbitrary bytes."""
    return base64.b64encode(raw).decode().replace("+", "*").replace("/", "-").replace("=", "_")


def vector_doc() -> dict[str, object]:
    doc = decode(VECTOR)
    assert doc is not None
    return doc


# --- Tencent's own library ---------------------------------------------------


def test_tencent_library_sig_verifies() -> None:
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig(USER, 86400)
    now = time.time()
    assert verify(sig, APP, KEY, USER, now) == Code.OK
    assert verify(sig, APP, KEY, "other", now) == Code.SIG_USER_MISMATCH
    assert verify(sig, APP, KEY[::-1], USER, now) == Code.SIG_BAD_SIGNATURE


def test_tencent_library_sig_with_userbuf_verifies() -> None:
    api = TLSSigAPIv2.TLSSigAPIv2(APP, KEY)
    sig = api.gen_sig_with_userbuf(USER, 86400, b"abc")
    now = time.time()
    doc = decode(sig)
    assert doc is not None and doc["TLS.userbuf"] == "YWJj"
    assert verify(sig, APP, KEY, USER, now) == Code.OK


def test_tencent_library_sig_expires_after_its_window() -> None:
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig(USER, 60)
    doc = decode(sig)
    assert doc is not None
    issued = doc["TLS.time"]
    assert isinstance(issued, int)
    assert verify(sig, APP, KEY, USER, issued + 60) == Code.OK
    assert verify(sig, APP, KEY, USER, issued + 61) == Code.SIG_EXPIRED


# --- the fixed vector of 4.3 --------------------------------------------------


def test_vector_verifies_until_its_last_second() -> None:
    assert verify(VECTOR, APP, KEY, USER, T0) == Code.OK
    assert verify(VECTOR, APP, KEY, USER, T0 + VECTOR_EXPIRE) == Code.OK
    assert verify(VECTOR, APP, KEY, USER, T0 + VECTOR_EXPIRE + 1) == Code.SIG_EXPIRED


def test_mint_reproduces_vector_byte_for_byte() -> None:
    assert mint(APP, KEY, USER, T0, VECTOR_EXPIRE) == VECTOR
    assert mint(APP, KEY, USER, T0 + 0.999, VECTOR_EXPIRE) == VECTOR


def test_vector_document_fields() -> None:
    assert vector_doc() == {
        "TLS.ver": "2.0",
        "TLS.identifier": USER,
        "TLS.sdkappid": APP,
        "TLS.expire": VECTOR_EXPIRE,
        "TLS.time": T0,
        "TLS.sig": VECTOR_SIG,
    }


def test_mint_with_userbuf_matches_vector_signature() -> None:
    doc = decode(mint(APP, KEY, USER, T0, VECTOR_EXPIRE, userbuf=b"abc"))
    assert doc is not None
    assert doc["TLS.userbuf"] == "YWJj"
    assert doc["TLS.sig"] == VECTOR_USERBUF_SIG


def test_mint_default_expire_is_180_days() -> None:
    doc = decode(mint(APP, KEY, USER, T0))
    assert doc is not None and doc["TLS.expire"] == DEFAULT_EXPIRE == 15552000


def test_other_compression_levels_verify() -> None:
    for level in (0, 1, 9):
        assert verify(encode(vector_doc(), level), APP, KEY, USER, T0) == Code.OK


# --- rejections ---------------------------------------------------------------


def test_wrong_app_user_and_key() -> None:
    assert verify(VECTOR, APP + 1, KEY, USER, T0) == Code.SIG_SDKAPPID_MISMATCH
    assert verify(VECTOR, APP, KEY, "xiaojun2", T0) == Code.SIG_USER_MISMATCH
    assert verify(VECTOR, APP, "not-the-key", USER, T0) == Code.SIG_BAD_SIGNATURE


def test_app_is_checked_before_user() -> None:
    assert verify(VECTOR, APP + 1, KEY, "someone", T0) == Code.SIG_SDKAPPID_MISMATCH


def test_changed_signature_is_rejected() -> None:
    doc = vector_doc()
    doc["TLS.sig"] = base64.b64encode(b"\x00" * 32).decode()
    assert verify(encode(doc), APP, KEY, USER, T0) == Code.SIG_BAD_SIGNATURE


def test_extended_expiry_without_resigning_is_rejected() -> None:
    doc = vector_doc()
    doc["TLS.expire"] = VECTOR_EXPIRE * 10
    late = T0 + VECTOR_EXPIRE + 1
    assert verify(encode(doc), APP, KEY, USER, late) == Code.SIG_BAD_SIGNATURE


def test_forged_expired_sig_reports_bad_signature_not_expiry() -> None:
    doc = vector_doc()
    doc["TLS.time"] = T0 - 1
    assert verify(encode(doc), APP, KEY, USER, T0 + VECTOR_EXPIRE) == Code.SIG_BAD_SIGNATURE


def test_added_or_removed_userbuf_is_rejected() -> None:
    doc = vector_doc()
    doc["TLS.userbuf"] = "YWJj"
    assert verify(encode(doc), APP, KEY, USER, T0) == Code.SIG_BAD_SIGNATURE
    with_buf = decode(mint(APP, KEY, USER, T0, userbuf=b"abc"))
    assert with_buf is not None
    del with_buf["TLS.userbuf"]
    assert verify(encode(with_buf), APP, KEY, USER, T0) == Code.SIG_BAD_SIGNATURE


def test_empty() -> None:
    assert verify("", APP, KEY, USER, T0) == Code.SIG_EMPTY


def test_garbage_strings_are_invalid() -> None:
    garbage = [
        " ",
        "hello world",
        "eJyrVgrx",
        VECTOR[:-2],
        VECTOR[:40] + "!!" + VECTOR[42:],
        wrap(b"not zlib at all"),
        wrap(zlib.compress(b"not json")),
        wrap(zlib.compress(b"[1, 2, 3]")),
        wrap(zlib.compress(b'"TLS.sig"')),
        wrap(zlib.compress(json.dumps({"TLS.ver": "2.0"}).encode())),
        wrap(zlib.compress(json.dumps(vector_doc()).encode())[:-4]),
        wrap(zlib.compress(json.dumps(vector_doc()).encode()) + b"tail"),
        "é" * 8,
        "A" * 5000,
    ]
    for sig in garbage:
        assert verify(sig, APP, KEY, USER, T0) == Code.SIG_INVALID, sig


def test_ill_typed_fields_are_invalid() -> None:
    bad_values: list[tuple[str, object]] = [
        ("TLS.time", 1700000000.0),
        ("TLS.time", "1700000000"),
        ("TLS.time", True),
        ("TLS.time", -1),
        ("TLS.expire", False),
        ("TLS.expire", -5),
        ("TLS.expire", None),
        ("TLS.sdkappid", "1400000000"),
        ("TLS.sdkappid", True),
        ("TLS.identifier", 7),
        ("TLS.identifier", "\ud800"),
        ("TLS.sig", 12),
        ("TLS.sig", "not base64!"),
        ("TLS.userbuf", 5),
        ("TLS.userbuf", "***"),
        ("TLS.ver", "1.0"),
        ("TLS.ver", 2.0),
    ]
    for name, value in bad_values:
        doc = vector_doc()
        doc[name] = value
        assert verify(encode(doc), APP, KEY, USER, T0) == Code.SIG_INVALID, (name, value)


def test_missing_fields_are_invalid() -> None:
    for name in ("TLS.ver", "TLS.identifier", "TLS.sdkappid", "TLS.time", "TLS.expire", "TLS.sig"):
        doc = vector_doc()
        del doc[name]
        assert verify(encode(doc), APP, KEY, USER, T0) == Code.SIG_INVALID, name


def test_decompression_bomb_is_rejected() -> None:
    bomb = wrap(zlib.compress(b"{" + b" " * 2_000_000 + b"}", 9))
    assert len(bomb) <= 4096
    assert decode(bomb) is None
    assert verify(bomb, APP, KEY, USER, T0) == Code.SIG_INVALID


def test_deeply_nested_json_is_invalid() -> None:
    nested = wrap(zlib.compress(b"[" * 4000 + b"]" * 4000, 9))
    assert verify(nested, APP, KEY, USER, T0) == Code.SIG_INVALID


def test_decode_returns_none_for_non_objects() -> None:
    assert decode("") is None
    assert decode("garbage") is None
    assert decode(wrap(zlib.compress(b"[]"))) is None


# --- properties ---------------------------------------------------------------


@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    assert verify(text, APP, KEY, USER, T0) in ALL_CODES


@given(st.binary(max_size=300))
def test_arbitrary_inflatable_bytes_never_raise(raw: bytes) -> None:
    assert verify(wrap(zlib.compress(raw)), APP, KEY, USER, T0) in ALL_CODES


@given(
    identifier=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=32),
    expire=st.integers(min_value=1, max_value=10 * 365 * 86400),
    now=st.integers(min_value=0, max_value=4_000_000_000),
    userbuf=st.none() | st.binary(max_size=64),
)
def test_mint_then_verify_round_trips(
    identifier: str, expire: int, now: int, userbuf: bytes | None
) -> None:
    sig = mint(APP, KEY, identifier, now, expire, userbuf)
    assert verify(sig, APP, KEY, identifier, now) == Code.OK
    assert verify(sig, APP, KEY, identifier, now + expire) == Code.OK
    assert verify(sig, APP, KEY, identifier, now + expire + 1) == Code.SIG_EXPIRED
    assert verify(sig, APP, KEY, identifier + "x", now) == Code.SIG_USER_MISMATCH
    assert verify(sig, APP, KEY + "x", identifier, now) == Code.SIG_BAD_SIGNATURE


# --- revocation by a kick (im_open_login_svc/kick) ----------------------------


def test_a_kick_revokes_the_sigs_stamped_in_its_second_or_before() -> None:
    old, same_second, later = (mint(APP, KEY, USER, T0 + d, 3600) for d in (-5, 0.9, 1))
    kick = T0 + 0.5
    now = T0 + 10
    assert verify(old, APP, KEY, USER, now, kick) == Code.SIG_EXPIRED
    assert verify(same_second, APP, KEY, USER, now, kick) == Code.SIG_EXPIRED  # minted after it
    assert verify(later, APP, KEY, USER, now, kick) == Code.OK
    assert verify(old, APP, KEY, USER, now, None) == Code.OK  # never kicked
    assert verify(old, APP, KEY, USER, now, T0 - 6) == Code.OK  # kicked before it was issued
    assert verify(old, APP, KEY, USER, now, T0 - 5) == Code.SIG_EXPIRED  # at the very second


def test_a_forged_sig_is_refused_as_forged_even_when_revoked() -> None:
    forged = mint(APP, KEY[::-1], USER, T0, 3600)
    assert verify(forged, APP, KEY, USER, T0 + 1, T0 + 1) == Code.SIG_BAD_SIGNATURE


def test_tencent_library_sig_is_revoked_by_a_kick_in_or_after_its_second() -> None:
    sig = TLSSigAPIv2.TLSSigAPIv2(APP, KEY).gen_sig(USER, 3600)
    doc = decode(sig)
    assert doc is not None
    issued = doc["TLS.time"]
    assert isinstance(issued, int)
    now = issued + 1
    assert verify(sig, APP, KEY, USER, now, issued - 0.001) == Code.OK
    assert verify(sig, APP, KEY, USER, now, issued) == Code.SIG_EXPIRED
    assert verify(sig, APP, KEY, USER, now, issued + 0.999) == Code.SIG_EXPIRED


@given(issued=st.integers(0, 2**40), kicked=st.none() | st.floats(0, 2**41))
def test_revoked_is_issued_at_or_before_the_kick(issued: int, kicked: float | None) -> None:
    """Revoked iff stamped in the kick's whole second or before it."""
    assert revoked(issued, kicked) == (kicked is not None and issued <= math.floor(kicked))
    sig = mint(APP, KEY, USER, issued, 2**41)
    expected = Code.SIG_EXPIRED if revoked(issued, kicked) else Code.OK
    assert verify(sig, APP, KEY, USER, issued, kicked) == expected
