"""The opening handshake: accept keys, the 101, request heads, and which upgrades are refused."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from livecast.core.handshake import (
    HEAD_END,
    Head,
    accept_key,
    joined,
    parse_head,
    switching_protocols,
    upgrade_error,
)

# RFC 6455 section 1.3: the sample nonce and the Sec-WebSocket-Accept it gets.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
RFC_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3, typed out again

CHROMIUM_HEAD = (
    b"GET /v1/ws?sdkappid=1400000000&lang=en HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8080\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/126.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:8080\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)

VALID = {
    "host": "example.com",
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": RFC_KEY,
}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# ------------------------------------------------------------------ accept_key
def test_accept_key_of_the_rfc_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_accept_key_ignores_surrounding_spaces_and_tabs() -> None:
    assert accept_key(f" \t{RFC_KEY}\t ") == RFC_ACCEPT


@given(st.binary(min_size=16, max_size=16))
def test_accept_key_is_base64_sha1_of_key_and_guid(nonce: bytes) -> None:
    key = b64(nonce)
    assert accept_key(key) == b64(hashlib.sha1(key.encode() + RFC_GUID).digest())


@pytest.mark.parametrize("key", [
    "",
    "   ",
    "not base64 at all!",
    "dGhlIHNhbXBsZSBub25jZQ",  # padding missing
    "dGhlIHNhbXBsZSBub25j ZQ==",  # a space inside
    "dGhlIHNhbXBsZSBub25jZQ==dGhl",  # data after the padding
    b64(bytes(15)),
    b64(bytes(17)),
    b64(bytes(32)),
    "dGhlIHNhbXBsZSBub25jZé==",  # non-ASCII inside
    "ÿ" * 24,
], ids=["empty", "blank", "not-base64", "unpadded", "inner-space", "trailing-data",
        "15-bytes", "17-bytes", "32-bytes", "non-ascii", "latin-1-only"])
def test_accept_key_rejects_invalid_keys(key: str) -> None:
    assert accept_key(key) is None


@given(st.binary(max_size=64).filter(lambda raw: len(raw) != 16))
def test_accept_key_rejects_base64_of_any_other_length(raw: bytes) -> None:
    assert accept_key(b64(raw)) is None


@pytest.mark.parametrize("key", [RFC_KEY + "\xa0", "\x85" + RFC_KEY, RFC_KEY + "\x1f",
                                 RFC_KEY + "\n"],
                         ids=["nbsp", "nel", "unit-separator", "bare-lf"])
def test_accept_key_rejects_keys_padded_with_non_http_whitespace(key: str) -> None:
    assert accept_key(key) is None


# ------------------------------------------------------------------ switching_protocols
def test_switching_protocols_accepts_the_key() -> None:
    response = switching_protocols(RFC_KEY)
    assert response.endswith(b"\r\n\r\n")
    status, *lines, blank, end = response.decode("ascii").split("\r\n")
    assert (blank, end) == ("", "")
    assert status == "HTTP/1.1 101 Switching Protocols"
    headers = {}
    for line in lines:
        name, sep, value = line.partition(": ")
        assert sep and name.lower() not in headers, line
        headers[name.lower()] = value
    assert headers == {
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-accept": RFC_ACCEPT,
    }  # and neither Sec-WebSocket-Extensions nor Sec-WebSocket-Protocol


@pytest.mark.parametrize("key", ["", "abc", b64(bytes(15))])
def test_switching_protocols_raises_on_an_invalid_key(key: str) -> None:
    with pytest.raises(ValueError):
        switching_protocols(key)


# ------------------------------------------------------------------ parse_head
def test_parse_head_of_a_chromium_upgrade() -> None:
    head = parse_head(CHROMIUM_HEAD)
    assert head is not None
    assert (head.method, head.version) == ("GET", "HTTP/1.1")
    assert head.target == "/v1/ws?sdkappid=1400000000&lang=en"
    assert head.path == "/v1/ws"
    assert all(name == name.lower() for name in head.headers)
    assert head.headers["host"] == "127.0.0.1:8080"  # a colon inside a value is kept
    assert head.headers["sec-websocket-key"] == RFC_KEY
    assert head.headers["sec-websocket-extensions"] == (
        "permessage-deflate; client_max_window_bits")
    assert head.headers["accept-encoding"] == "gzip, deflate, br, zstd"
    assert len(head.headers) == 12


def test_a_parsed_chromium_head_is_accepted_with_the_rfc_answer() -> None:
    head = parse_head(CHROMIUM_HEAD)
    assert head is not None
    assert upgrade_error(head.method, head.version, head.headers) is None
    assert b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n" in (
        switching_protocols(head.headers["sec-websocket-key"]))


def test_parse_head_joins_repeated_headers() -> None:
    head = parse_head(
        b"GET /v1/ws HTTP/1.1\r\n"
        b"connection: keep-alive\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        b"CONNECTION: Upgrade\r\n"
        b"sec-websocket-extensions: x-webkit-deflate-frame\r\n"
        b"\r\n")
    assert head is not None
    assert head.headers == {
        "connection": "keep-alive, Upgrade",
        "sec-websocket-extensions": "permessage-deflate, x-webkit-deflate-frame",
    }


def test_parse_head_strips_optional_whitespace_around_values() -> None:
    head = parse_head(b"GET / HTTP/1.1\r\nUpgrade:websocket\r\nX-A: \t a b \t\r\nX-Empty:\r\n\r\n")
    assert head is not None
    assert head.headers == {"upgrade": "websocket", "x-a": "a b", "x-empty": ""}


@pytest.mark.parametrize(("target", "path"), [
    ("/v1/ws", "/v1/ws"),
    ("/v1/ws?", "/v1/ws"),
    ("/v1/ws?a=1&b=2", "/v1/ws"),
    ("/v1/ws?next=/x?y", "/v1/ws"),
    ("/?q", "/"),
])
def test_head_path_drops_the_query_string(target: str, path: str) -> None:
    head = parse_head(f"GET {target} HTTP/1.1\r\n\r\n".encode())
    assert head is not None
    assert (head.target, head.path) == (target, path)


@pytest.mark.parametrize("raw", [
    b"",
    b"\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2\r\n\r\n",
    b"GET / FTP/1.1\r\n\r\n",
    b"G\xc9T / HTTP/1.1\r\n\r\n",
    b"/ GET HTTP/1.1\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\nHost: x\n\n",
], ids=["empty", "blank", "method-only", "no-version", "four-parts", "double-space",
        "http2", "ftp", "non-ascii-method", "slash-method", "leading-crlf", "bare-lf"])
def test_parse_head_rejects_malformed_request_lines(raw: bytes) -> None:
    assert parse_head(raw) is None


@pytest.mark.parametrize("line", [
    b"Upgrade websocket",
    b": websocket",
    b" Upgrade: websocket",
    b"\tUpgrade: websocket",
    b"Upgrade : websocket",
    b"Up\x01grade: websocket",
], ids=["no-colon", "empty-name", "folded-space", "folded-tab", "space-before-colon",
        "control-in-name"])
def test_parse_head_rejects_malformed_header_lines(line: bytes) -> None:
    assert parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n") is None


@pytest.mark.parametrize("raw", [
    b"GET  HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.\r\n\r\n",
    b"GET / HTTP/1.1\n\n",
    b"GET / HTTP/1.1\r\nSec WebSocket Key: x\r\n\r\n",
], ids=["empty-target", "no-minor-version", "bare-lf-no-headers", "space-in-name"])
def test_parse_head_rejects_heads_that_are_not_http(raw: bytes) -> None:
    assert parse_head(raw) is None


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~",
                 min_size=1, max_size=12)
_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12).flatmap(
    lambda v: st.text(" \t", max_size=2).map(lambda pad: f"{pad}{v}{pad}"))


@given(st.lists(st.tuples(_TOKEN, _VALUE), max_size=8))
def test_parse_head_keeps_every_header(fields: list[tuple[str, str]]) -> None:
    raw = "GET /x HTTP/1.1\r\n" + "".join(f"{n}:{v}\r\n" for n, v in fields) + "\r\n"
    expected: dict[str, str] = {}
    for name, value in fields:
        name, value = name.lower(), value.strip(" \t")
        expected[name] = f"{expected[name]}, {value}" if name in expected else value
    head = parse_head(raw.encode())
    assert head is not None
    assert dict(head.headers) == expected


@given(st.binary())
def test_parse_head_never_raises(raw: bytes) -> None:
    assert isinstance(parse_head(raw), Head | None)
    assert isinstance(parse_head(raw + HEAD_END), Head | None)


@given(st.binary())
def test_parse_head_never_raises_after_a_valid_request_line(raw: bytes) -> None:
    assert isinstance(parse_head(b"GET / HTTP/1.1\r\n" + raw + HEAD_END), Head | None)


# ------------------------------------------------------------------ upgrade_error
UPGRADE_CASES = [
    # id, method, version, header changes (None: remove), expected status
    ("valid", "GET", "HTTP/1.1", {}, None),
    ("post", "POST", "HTTP/1.1", {}, 405),
    ("head", "HEAD", "HTTP/1.1", {}, 405),
    ("lowercase-get", "get", "HTTP/1.1", {}, 405),  # methods are case-sensitive
    ("post-beats-everything", "POST", "HTTP/1.0", {name: None for name in VALID}, 405),
    ("http-1.0", "GET", "HTTP/1.0", {}, 400),
    ("http-2", "GET", "HTTP/2.0", {}, 400),
    ("no-upgrade", "GET", "HTTP/1.1", {"upgrade": None}, 426),
    ("upgrade-h2c", "GET", "HTTP/1.1", {"upgrade": "h2c"}, 426),
    ("upgrade-websockets", "GET", "HTTP/1.1", {"upgrade": "websockets"}, 426),
    ("upgrade-mixed-case", "GET", "HTTP/1.1", {"upgrade": "WebSocket"}, None),
    ("upgrade-list", "GET", "HTTP/1.1", {"upgrade": "h2c, websocket"}, None),
    ("no-connection", "GET", "HTTP/1.1", {"connection": None}, 400),
    ("connection-keep-alive", "GET", "HTTP/1.1", {"connection": "keep-alive"}, 400),
    ("connection-not-a-token", "GET", "HTTP/1.1", {"connection": "upgraded"}, 400),
    ("connection-keep-alive-upgrade", "GET", "HTTP/1.1",
     {"connection": "keep-alive, Upgrade"}, None),
    ("connection-lowercase", "GET", "HTTP/1.1", {"connection": "upgrade"}, None),
    ("connection-uppercase", "GET", "HTTP/1.1", {"connection": "UPGRADE"}, None),
    ("no-version", "GET", "HTTP/1.1", {"sec-websocket-version": None}, 426),
    ("version-8", "GET", "HTTP/1.1", {"sec-websocket-version": "8"}, 426),
    ("version-14", "GET", "HTTP/1.1", {"sec-websocket-version": "14"}, 426),
    ("version-130", "GET", "HTTP/1.1", {"sec-websocket-version": "130"}, 426),
    ("version-list", "GET", "HTTP/1.1", {"sec-websocket-version": "13, 8"}, 426),
    ("no-key", "GET", "HTTP/1.1", {"sec-websocket-key": None}, 400),
    ("empty-key", "GET", "HTTP/1.1", {"sec-websocket-key": ""}, 400),
    ("key-not-base64", "GET", "HTTP/1.1", {"sec-websocket-key": "not a key"}, 400),
    ("key-15-bytes", "GET", "HTTP/1.1", {"sec-websocket-key": b64(bytes(15))}, 400),
    ("key-repeated", "GET", "HTTP/1.1", {"sec-websocket-key": f"{RFC_KEY}, {RFC_KEY}"}, 400),
    ("no-host", "GET", "HTTP/1.1", {"host": None}, 400),
    ("empty-host", "GET", "HTTP/1.1", {"host": ""}, None),  # RFC 9112 3.2: allowed, empty
    ("host-repeated", "GET", "HTTP/1.1", {"host": "a.example, b.example"}, 400),
]


@pytest.mark.parametrize(("changes", "reason"), [
    ({"host": None}, "an HTTP/1.1 request needs a Host header"),
    ({"host": "a.example, a.example"}, "the Host header must appear once"),
    ({"sec-websocket-key": f"{RFC_KEY}, {RFC_KEY}"},
     "Sec-WebSocket-Key must appear once, with one key"),
    ({"sec-websocket-key": "not a key"}, "Sec-WebSocket-Key must be the base64 of 16 bytes"),
])
def test_upgrade_error_gives_the_reason(changes: dict[str, str | None], reason: str) -> None:
    headers = {k: v for k, v in {**VALID, **changes}.items() if v is not None}
    assert upgrade_error("GET", "HTTP/1.1", headers) == (400, reason)


def test_a_repeated_key_in_a_head_is_refused_for_the_repetition() -> None:
    raw = (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + RFC_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: " + RFC_KEY.encode() + b"\r\n\r\n")
    head = parse_head(raw)
    assert head is not None
    assert upgrade_error(head.method, head.version, head.headers) == (
        400, "Sec-WebSocket-Key must appear once, with one key")


def test_joined_sees_a_multidict_as_parse_head_does() -> None:
    multi = CIMultiDict([("Host", "x"), ("X-A", "1"), ("x-a", "2")])
    assert joined(multi.items()) == {"host": "x", "x-a": "1, 2"}


@pytest.mark.parametrize(("method", "version", "changes", "status"),
                         [case[1:] for case in UPGRADE_CASES],
                         ids=[case[0] for case in UPGRADE_CASES])
def test_upgrade_error(method: str, version: str, changes: dict[str, str | None],
                       status: int | None) -> None:
    headers = {**VALID, **changes}
    result = upgrade_error(method, version,
                           {k: v for k, v in headers.items() if v is not None})
    if status is None:
        assert result is None
    else:
        assert result is not None
        assert result[0] == status
        assert isinstance(result[1], str) and result[1]


@given(st.data())
def test_upgrade_tokens_match_in_any_case_and_position(data: st.DataObject) -> None:
    def any_case(word: str) -> str:
        flips = data.draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
        return "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))

    others = data.draw(st.lists(st.sampled_from(["keep-alive", "close", "TE", "h2c"]),
                                max_size=3))
    tokens = data.draw(st.permutations([*others, any_case("upgrade")]))
    headers = {**VALID, "upgrade": any_case("websocket"), "connection": ", ".join(tokens)}
    assert upgrade_error("GET", "HTTP/1.1", headers) is None


def _ci(changes: dict[str, str]) -> CIMultiDict[str]:
    fields = {"Upgrade": "websocket", "Connection": "keep-alive, Upgrade",
              "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": RFC_KEY,
              "Host": "example.com", **changes}
    return CIMultiDict(fields.items())


def test_upgrade_error_accepts_a_case_insensitive_mapping_with_original_names() -> None:
    assert upgrade_error("GET", "HTTP/1.1", _ci({})) is None


@pytest.mark.parametrize(("changes", "status"), [
    ({"Sec-WebSocket-Version": "8"}, 426),
    ({"Sec-WebSocket-Key": "short"}, 400),
    ({"Connection": "keep-alive"}, 400),
    ({"Upgrade": "h2c"}, 426),
])
def test_upgrade_error_reads_values_from_a_case_insensitive_mapping(
        changes: dict[str, str], status: int) -> None:
    result = upgrade_error("GET", "HTTP/1.1", _ci(changes))
    assert result is not None and result[0] == status
