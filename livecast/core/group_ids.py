"""Group identifiers: custom ids chosen by the business backend, generated ids.

Reference: docs/rest.md, create_group (``GroupId``) and Error codes (10015).

Invariants:
- every valid group id is a ``str`` of 1..48 printable ASCII characters
  (0x20-0x7E), so its length in characters equals its length in bytes;
- a custom id never starts with ``@TGS#``; a generated id always does, so the
  two kinds never collide;
- ``new_group_id`` is a pure function of its inputs (the edge supplies the
  randomness as ``salt``); generated ids look like Tencent's AVChatRoom ids
  (``@TGS#a`` followed by upper-case base32 letters and digits).
"""

from __future__ import annotations

import base64
import hashlib

from livecast.errors import Code, LivecastError

GROUP_ID_MAX_BYTES = 48
GENERATED_PREFIX = "@TGS#"
# "a" after the prefix marks an AVChatRoom id, as Tencent's own ids do.
_AVCHATROOM_MARK = "a"
_DIGEST_BYTES = 10  # 80 bits -> 16 base32 characters, no padding


def is_valid_group_id(group_id: object) -> bool:
    """True for any id livecast can hold: custom or generated (section 2.1)."""
    if not isinstance(group_id, str) or not 1 <= len(group_id) <= GROUP_ID_MAX_BYTES:
        return False
    # printable ASCII is exactly 0x20-0x7E; two C calls instead of a loop per character
    return group_id.isascii() and group_id.isprintable()


def validate_custom_group_id(group_id: object) -> str:
    """Return ``group_id`` if it is a valid custom id, else raise 10015."""
    if not isinstance(group_id, str):
        raise LivecastError(Code.INVALID_GROUP_ID, "GroupId must be a string")
    if not is_valid_group_id(group_id):
        raise LivecastError(
            Code.INVALID_GROUP_ID,
            f"GroupId must be 1..{GROUP_ID_MAX_BYTES} printable ASCII characters (0x20-0x7E)",
        )
    if group_id.startswith(GENERATED_PREFIX):
        raise LivecastError(
            Code.INVALID_GROUP_ID, f"a custom GroupId must not start with {GENERATED_PREFIX}"
        )
    return group_id


def new_group_id(counter: int, salt: bytes) -> str:
    """A server-assigned id: ``@TGS#a`` + 16 base32 characters.

    Deterministic in ``(counter, salt)``; distinct counters under one salt give
    distinct ids except with probability ~2**-80. The caller still checks the
    id is free (10021) before using it.
    """
    if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
        raise ValueError("counter must be a non-negative int")
    if not isinstance(salt, bytes | bytearray):
        raise TypeError("salt must be bytes")
    h = hashlib.blake2b(digest_size=_DIGEST_BYTES, person=b"livecast-gid")
    h.update(len(salt).to_bytes(8, "big"))
    h.update(salt)
    h.update(counter.to_bytes((counter.bit_length() + 8) // 8, "big"))
    digest = h.digest()
    return GENERATED_PREFIX + _AVCHATROOM_MARK + base64.b32encode(digest).decode("ascii")
