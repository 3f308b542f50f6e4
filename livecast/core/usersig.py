"""UserSig v2: mint and verify Tencent Cloud Chat login tickets (reference section 4).

A UserSig is ``b64url(zlib(json))`` where ``b64url`` is standard base64 with
``+ / =`` replaced by ``* - _`` (4.1 step 6) and the JSON document carries
``TLS.ver``, ``TLS.identifier``, ``TLS.sdkappid``, ``TLS.time``, ``TLS.expire``,
``TLS.sig`` and optionally ``TLS.userbuf``.  ``TLS.sig`` is the standard base64
of HMAC-SHA256(key as UTF-8 bytes, the lines of 4.1 step 2).

Invariants:
- Pure: no clock reads; ``now`` (unix seconds) is always passed in.
- ``verify`` never raises on remote input; it returns ``Code.OK`` (0) or one of
  the codes of section 7.4, checked in this order:
  1. empty string                                          -> 70002 SIG_EMPTY
  2. longer than ``MAX_SIG_CHARS``, bad base64, bad zlib, more than
     ``MAX_JSON_BYTES`` inflated, bad JSON, not an object, ``TLS.ver`` not
     ``"2.0"``, a field missing or ill-typed (ints must be real ints, not bools
     or floats; ``TLS.time``/``TLS.expire`` must be >= 0; ``TLS.identifier``
     must be a str encodable as UTF-8; ``TLS.sig`` and ``TLS.userbuf`` must be
     standard base64)                                       -> 70003 SIG_INVALID
  3. ``TLS.sdkappid`` differs from the app                 -> 70014
  4. ``TLS.identifier`` differs from the claimed UserID    -> 70013
  5. HMAC over the string rebuilt from the JSON's own values (with the
     ``TLS.userbuf`` line when present) differs from ``TLS.sig``, compared
     with ``hmac.compare_digest``                          -> 70009
  6. ``now > TLS.time + TLS.expire``                       -> 70001
  7. ``revoked(TLS.time, kicked_at)``: issued at or before the user's last
     kick (``im_open_login_svc/kick``)                      -> 70001, as
     Tencent's kick makes the earlier UserSigs expire
- The signature is checked *before* expiry (unlike the order listed in 4.2):
  a forged ticket is always answered 70009 and so reveals nothing about
  whether its claimed time window would have been accepted.
- ``TLS.userbuf`` is accepted when present (Tencent's TRTC libraries emit it);
  it is covered by the signature, so it cannot be added or altered.
- Inflation is bounded (decompression-bomb guard): input over
  ``MAX_SIG_CHARS`` characters or output over ``MAX_JSON_BYTES`` bytes is
  70003 before any JSON parsing.
- Revocation has the 1-second resolution of ``TLS.time``: a UserSig stamped
  in the same second as the kick (even minted just after it) is revoked; one
  stamped in a later second is not.  Refusing the ambiguous second errs on
  the safe side: a hijacked ticket never outlives the kick.
- ``mint`` reproduces Tencent's Python library byte for byte: ``json.dumps``
  key order and separators, zlib default level (6), padding kept as ``_``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass
from typing import TypeGuard

from livecast.errors import Code

DEFAULT_EXPIRE = 180 * 86400
MAX_SIG_CHARS = 4096
MAX_JSON_BYTES = 4096
VERSION = "2.0"

_TO_STD = str.maketrans("*-_", "+/=")
_TO_URL = str.maketrans("+/=", "*-_")


@dataclass(frozen=True, slots=True)
class _Ticket:
    """The typed fields of a decoded UserSig document."""

    identifier: str
    sdkappid: int
    time: int
    expire: int
    sig: bytes
    userbuf: str | None


def _content(identifier: str, sdkappid: int, time: int, expire: int, userbuf: str | None) -> bytes:
    """The string to sign, 4.1 step 2 (``userbuf`` already base64)."""
    text = (
        f"TLS.identifier:{identifier}\n"
        f"TLS.sdkappid:{sdkappid}\n"
        f"TLS.time:{time}\n"
        f"TLS.expire:{expire}\n"
    )
    if userbuf is not None:
        text += f"TLS.userbuf:{userbuf}\n"
    return text.encode("utf-8")


def _hmac(key: str, content: bytes) -> bytes:
    return hmac.new(key.encode("utf-8"), content, hashlib.sha256).digest()


def mint(
    sdkappid: int,
    key: str,
    identifier: str,
    now: float,
    expire: int = DEFAULT_EXPIRE,
    userbuf: bytes | None = None,
) -> str:
    """Issue a UserSig valid from ``int(now)`` for ``expire`` seconds (4.1)."""
    if now < 0 or expire < 0:
        raise ValueError("now and expire must be >= 0")
    time = int(now)
    buf = None if userbuf is None else base64.b64encode(userbuf).decode("ascii")
    sig = _hmac(key, _content(identifier, sdkappid, time, expire, buf))
    doc: dict[str, object] = {
        "TLS.ver": VERSION,
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdkappid,
        "TLS.expire": expire,
        "TLS.time": time,
    }
    if buf is not None:
        doc["TLS.userbuf"] = buf
    doc["TLS.sig"] = base64.b64encode(sig).decode("ascii")
    packed = zlib.compress(json.dumps(doc).encode("utf-8"))
    return base64.b64encode(packed).decode("ascii").translate(_TO_URL)


def _inflate(data: bytes) -> bytes | None:
    """Inflate one complete zlib stream of at most ``MAX_JSON_BYTES`` bytes."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_JSON_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail or inflater.unused_data or not inflater.eof:
        return None
    return out


def decode(usersig: str) -> dict[str, object] | None:
    """The UserSig's JSON object, or None when it cannot be decoded.

    Only the envelope is checked here (length, base64, zlib, JSON object);
    field types are checked by ``verify``.
    """
    if not usersig or len(usersig) > MAX_SIG_CHARS:
        return None
    try:
        packed = base64.b64decode(usersig.translate(_TO_STD), validate=True)
    except (binascii.Error, ValueError):
        return None
    raw = _inflate(packed)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _int_field(doc: dict[str, object], name: str) -> int | None:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _b64_field(doc: dict[str, object], name: str) -> bytes | None:
    value = doc.get(name)
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_utf8(value: object) -> TypeGuard[str]:
    """A str that encodes to UTF-8 (JSON may smuggle in lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse(doc: dict[str, object]) -> _Ticket | None:
    """Typed fields of a decoded document, or None when any is missing/ill-typed."""
    identifier = doc.get("TLS.identifier")
    sdkappid = _int_field(doc, "TLS.sdkappid")
    time = _int_field(doc, "TLS.time")
    expire = _int_field(doc, "TLS.expire")
    sig = _b64_field(doc, "TLS.sig")
    userbuf = doc.get("TLS.userbuf")
    if doc.get("TLS.ver") != VERSION or not _is_utf8(identifier):
        return None
    if sdkappid is None or time is None or expire is None or sig is None:
        return None
    if time < 0 or expire < 0:
        return None
    if userbuf is not None and _b64_field(doc, "TLS.userbuf") is None:
        return None
    buf = userbuf if isinstance(userbuf, str) else None
    return _Ticket(identifier, sdkappid, time, expire, sig, buf)


def revoked(issued: int, kicked_at: float | None) -> bool:
    """Whether a UserSig with ``TLS.time`` ``issued`` is revoked by a kick at
    ``kicked_at`` (unix seconds; None: never kicked).  At or before the kick,
    whole seconds: ``issued <= kicked_at`` (``issued`` is a whole second)."""
    return kicked_at is not None and issued <= kicked_at


def verify(usersig: str, sdkappid: int, key: str, identifier: str, now: float,
           kicked_at: float | None = None) -> int:
    """``Code.OK`` (0) if ``usersig`` is valid for this app and user at ``now``,
    and not revoked by the user's last kick at ``kicked_at`` (None: none).

    Otherwise the Tencent code of section 7.4; see the module docstring for
    the order of checks.
    """
    if not usersig:
        return Code.SIG_EMPTY
    doc = decode(usersig)
    ticket = None if doc is None else _parse(doc)
    if ticket is None:
        return Code.SIG_INVALID
    if ticket.sdkappid != sdkappid:
        return Code.SIG_SDKAPPID_MISMATCH
    if ticket.identifier != identifier:
        return Code.SIG_USER_MISMATCH
    content = _content(
        ticket.identifier, ticket.sdkappid, ticket.time, ticket.expire, ticket.userbuf
    )
    if not hmac.compare_digest(_hmac(key, content), ticket.sig):
        return Code.SIG_BAD_SIGNATURE
    if now > ticket.time + ticket.expire or revoked(ticket.time, kicked_at):
        return Code.SIG_EXPIRED
    return Code.OK
