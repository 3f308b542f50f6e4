"""livecast.core.cors: which origin may read the client and mint dev UserSigs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from livecast.core.cors import allow_origin, normal_origin, parse_origins

APP = "https://app.example.com"


@pytest.mark.parametrize(("text", "origin"), [
    ("https://App.Example.com", APP),
    ("https://app.example.com:443", APP),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("http://localhost:80", "http://localhost"),
    ("  https://[::1]:9000 ", "https://[::1]:9000"),
])
def test_origins_are_normalised(text: str, origin: str) -> None:
    assert normal_origin(text) == origin


@pytest.mark.parametrize("text", [
    "app.example.com", "https://app.example.com/", "https://app.example.com/x",
    "https://app.example.com?q", "ftp://app.example.com", "https://user@app.example.com",
    "https://", "null", "https://app.example.com:99999", "*.example.com",
])
def test_what_is_not_an_origin_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        normal_origin(text)


def test_a_list_is_parsed_deduplicated_and_may_hold_the_wildcard() -> None:
    assert parse_origins("") == ()
    assert parse_origins(f" {APP}, ,https://APP.example.com,*") == (APP, "*")
    with pytest.raises(ValueError):
        parse_origins(f"{APP},https://other.example.com/path")


def test_only_listed_origins_are_answered() -> None:
    allowed = parse_origins(f"{APP},http://localhost:5173")
    assert allow_origin(APP, allowed, wildcard_ok=True) == APP
    assert allow_origin("http://localhost:5173", allowed, wildcard_ok=False) == \
        "http://localhost:5173"
    assert allow_origin("https://evil.example.com", allowed, wildcard_ok=True) is None
    assert allow_origin("http://app.example.com", allowed, wildcard_ok=True) is None  # scheme
    assert allow_origin("https://app.example.com:8443", allowed, wildcard_ok=True) is None
    assert allow_origin(None, allowed, wildcard_ok=True) is None
    assert allow_origin("null", allowed, wildcard_ok=True) is None


def test_the_wildcard_opens_public_files_but_never_a_usersig_endpoint() -> None:
    allowed = parse_origins(f"*,{APP}")
    assert allow_origin("https://anyone.example.org", allowed, wildcard_ok=True) == "*"
    assert allow_origin("https://anyone.example.org", allowed, wildcard_ok=False) is None
    assert allow_origin(APP, allowed, wildcard_ok=False) == APP   # listed by name


@given(st.text(max_size=60))
def test_nothing_is_shared_by_default_whatever_the_origin(origin: str) -> None:
    assert allow_origin(origin, (), wildcard_ok=True) is None
    assert allow_origin(origin, parse_origins("*"), wildcard_ok=False) is None
