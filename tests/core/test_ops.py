"""livecast/core/ops.py: who may read the ops endpoints, with a manual clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from livecast.core.ops import (
    SESSION_LIFETIME,
    bearer_token,
    is_loopback_host,
    ops_refusal,
    session_valid,
    session_value,
    token_matches,
)

TOKEN = "ops-token-0123456789abcdef"
NOW = 1_764_230_000.0


def test_loopback_is_decided_by_the_listen_host() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "localhost"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "::", "", "10.0.0.5", "192.168.1.2", "example.com", "::ffff:8.8.8.8"):
        assert not is_loopback_host(host), host


def test_without_a_token_open_only_where_chosen() -> None:
    assert ops_refusal("", True, None, None, NOW) is None
    refusal = ops_refusal("", False, f"Bearer {TOKEN}", None, NOW)
    assert refusal is not None and refusal[0] == 403
    assert "LIVECAST_OPS_TOKEN" in refusal[1] and "LIVECAST_OPS_LISTEN" in refusal[1]


def test_with_a_token_only_the_token_opens_even_on_loopback() -> None:
    for open_ in (True, False):
        assert ops_refusal(TOKEN, open_, f"Bearer {TOKEN}", None, NOW) is None
        assert ops_refusal(TOKEN, open_, f"bearer  {TOKEN} ", None, NOW) is None
        for header in (None, "", "Bearer", f"Basic {TOKEN}", f"Bearer {TOKEN}x",
                       f"Bearer {TOKEN[:-1]}", "Bearer \u00e9t\u00e9"):
            refusal = ops_refusal(TOKEN, open_, header, None, NOW)
            assert refusal is not None and refusal[0] == 401, header


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("BEARER abc") == "abc"
    assert bearer_token("Bearer ") is None
    assert bearer_token("Token abc") is None
    assert bearer_token(None) is None


def test_a_session_lasts_its_lifetime_and_only_for_its_token() -> None:
    value = session_value(TOKEN, NOW)
    assert TOKEN not in value
    assert session_valid(TOKEN, value, NOW + SESSION_LIFETIME - 1)
    assert ops_refusal(TOKEN, False, None, value, NOW + 1) is None
    assert not session_valid(TOKEN, value, NOW + SESSION_LIFETIME)
    assert not session_valid("another-token-0123456789", value, NOW)
    expires, _, mac = value.partition(".")
    assert not session_valid(TOKEN, f"{int(expires) + 3600}.{mac}", NOW)  # extended: refused
    assert not session_valid(TOKEN, f"{expires}.{mac[:-1]}0", NOW) or mac.endswith("0")
    for bad in ("", ".", "x.y", "\u00b2.abc", f"{expires}", f"-1.{mac}", "9" * 40 + "." + mac):
        assert not session_valid(TOKEN, bad, NOW), bad
    assert not session_valid("", value, NOW)


def test_an_empty_token_never_matches() -> None:
    assert not token_matches("", "")
    assert token_matches(TOKEN, TOKEN) and not token_matches(TOKEN, TOKEN.upper())


@given(st.text(max_size=80), st.text(max_size=80), st.floats(0, 4e9))
def test_no_forged_credential_passes_and_nothing_raises(header: str, cookie: str,
                                                       now: float) -> None:
    assert ops_refusal(TOKEN, True, header, cookie, now) is not None
    assert ops_refusal(TOKEN, True, "Bearer " + header, cookie, now) is not None
