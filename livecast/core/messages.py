"""Message elements (``MsgBody``) and the per-message size limit.

One element format travels unchanged through the WebSocket protocol, the REST
API and the webhooks: Tencent's ``{"MsgType": ..., "MsgContent": {...}}``
(docs/protocol.md, "Message elements"; docs/rest.md,
send_group_msg). Validation is pure and raises ``LivecastError`` for bad remote
input; it never copies or rewrites what it accepts.

Invariants of an accepted body (``validate_msg_body``):

* a non-empty list of at most ``MAX_ELEMENTS`` (32) elements;
* each element an object whose ``MsgType`` is one of ``ELEMENT_TYPES`` and
  whose ``MsgContent`` is an object;
* the known fields of each type (the ``_FIELDS`` table, section 5) have their
  documented type: strings are ``str``; Numbers are ``int`` or finite ``float``
  but never ``bool``; ``TIMFaceElem.Index`` must be an ``int``; ints stay
  within the 64-bit range orjson can encode. A known field that is present
  with ``null`` is a wrong type;
* required fields: ``TIMTextElem.Text``, ``TIMCustomElem.Data``,
  ``TIMFaceElem.Index``, ``TIMLocationElem.Desc``/``Latitude``/``Longitude``;
  media elements (sound, image, file, video) have no required field, only
  typed ones (legacy and v4+ shapes both pass);
* at most one ``TIMCustomElem`` per message (section 5).

Decisions on points the reference leaves open (marked [U] there):

* Unknown fields, in ``MsgContent``, in an element, or in an
  ``ImageInfoArray`` entry, are tolerated (forward compatibility) when they
  are plain JSON values (null, bool, 64-bit int, finite float, str, list,
  object with str keys, nested at most ``_MAX_DEPTH`` deep). They are
  forwarded unchanged and count towards the size.
* ``TIMRelayElem`` and the client-only tip elements are refused (10004): the
  compatibility subset (docs/protocol.md) does not list them.
* Empty strings are accepted (``Text: ""`` included); only the size rule
  bounds lengths. Latitude and longitude are not range-checked.
* Size (section 5, [U]; ``message_size``): the UTF-8 byte length of the
  compact JSON encoding of ``MsgBody`` as ``orjson.dumps`` writes it, plus
  the UTF-8 byte length of ``CloudCustomData``. More than ``MAX_MSG_BYTES``
  (12288) answers 80002; exactly 12288 is accepted.
* ``CloudCustomData`` absent or ``null`` is ``""``; any other non-string is
  10004.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from livecast.errors import Code, LivecastError

MAX_MSG_BYTES = 12 * 1024
MAX_ELEMENTS = 32
_MAX_DEPTH = 32
_MAX_IMAGE_INFOS = 16
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

ELEMENT_TYPES: frozenset[str] = frozenset(
    {
        "TIMTextElem",
        "TIMLocationElem",
        "TIMFaceElem",
        "TIMCustomElem",
        "TIMSoundElem",
        "TIMImageElem",
        "TIMFileElem",
        "TIMVideoFileElem",
    }
)

_Check = Callable[[object], bool]


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and _INT_MIN <= v <= _INT_MAX


def _is_number(v: object) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    return _is_int(v)


def is_json_value(v: object, depth: int = 0) -> bool:
    """True when ``v`` is a plain JSON value that orjson encodes losslessly."""
    if v is None or isinstance(v, (bool, str)):
        return True
    if isinstance(v, (int, float)):
        return _is_number(v)
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(v, list):
        return all(is_json_value(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and is_json_value(x, depth + 1) for k, x in v.items())
    return False


# A field spec: (check of its value, required?)
_Field = tuple[_Check, bool]
_IMAGE_INFO_FIELDS: Mapping[str, _Field] = MappingProxyType(
    {
        "Type": (_is_number, False),
        "Size": (_is_number, False),
        "Width": (_is_number, False),
        "Height": (_is_number, False),
        "URL": (_is_str, False),
    }
)


def _fields_ok(obj: dict[str, Any], fields: Mapping[str, _Field]) -> str | None:
    """The first problem of ``obj`` against ``fields``, or None when it conforms."""
    for name, (check, required) in fields.items():
        if name not in obj:
            if required:
                return f"missing {name}"
        elif not check(obj[name]):
            return f"{name} has a wrong type"
    for name, value in obj.items():
        if name not in fields and not (isinstance(name, str) and is_json_value(value, 1)):
            return f"{name!s:.64} is not a plain JSON value"
    return None


def _is_image_info_array(v: object) -> bool:
    if not isinstance(v, list) or len(v) > _MAX_IMAGE_INFOS:
        return False
    return all(isinstance(x, dict) and _fields_ok(x, _IMAGE_INFO_FIELDS) is None for x in v)


_S: _Field = (_is_str, False)
_N: _Field = (_is_number, False)

# Section 5, one row per MsgType: field name -> (check, required).
_FIELDS: Mapping[str, Mapping[str, _Field]] = MappingProxyType(
    {
        "TIMTextElem": {"Text": (_is_str, True)},
        "TIMLocationElem": {
            "Desc": (_is_str, True),
            "Latitude": (_is_number, True),
            "Longitude": (_is_number, True),
        },
        "TIMFaceElem": {"Index": (_is_int, True), "Data": _S},
        "TIMCustomElem": {"Data": (_is_str, True), "Desc": _S, "Ext": _S, "Sound": _S},
        "TIMSoundElem": {"Url": _S, "UUID": _S, "Size": _N, "Second": _N, "Download_Flag": _N},
        "TIMImageElem": {
            "UUID": _S,
            "ImageFormat": _N,
            "ImageInfoArray": (_is_image_info_array, False),
        },
        "TIMFileElem": {
            "Url": _S,
            "UUID": _S,
            "FileSize": _N,
            "FileName": _S,
            "Download_Flag": _N,
        },
        "TIMVideoFileElem": {
            **{k: _S for k in ("VideoUrl", "VideoUUID", "VideoFormat")},
            **{k: _N for k in ("VideoSize", "VideoSecond", "VideoDownloadFlag")},
            **{k: _S for k in ("ThumbUrl", "ThumbUUID", "ThumbFormat")},
            **{k: _N for k in ("ThumbSize", "ThumbWidth", "ThumbHeight", "ThumbDownloadFlag")},
        },
    }
)
assert frozenset(_FIELDS) == ELEMENT_TYPES


_CUSTOM_FIELDS = frozenset(_FIELDS["TIMCustomElem"])


def plain_element(elem: object) -> int:
    """1 for a text element (``Text`` alone), 2 for a custom one (``Data``
    and any of its other fields, all strings), 0 for anything else (left to
    ``validate_msg_body``): the elements a chat or a gift sends, which that
    check accepts as they are."""
    if elem.__class__ is not dict or len(elem) != 2:
        return 0
    kind = elem.get("MsgType")
    content = elem.get("MsgContent")
    if content.__class__ is not dict:
        return 0
    if kind == "TIMTextElem":
        return 1 if len(content) == 1 and content.get("Text").__class__ is str else 0
    if kind == "TIMCustomElem" and content.get("Data").__class__ is str:
        for name, value in content.items():
            if name not in _CUSTOM_FIELDS or value.__class__ is not str:
                return 0
        return 2
    return 0


def _bad(info: str) -> LivecastError:
    return LivecastError(Code.BAD_PARAMETER, info)


def _validate_element(i: int, elem: object) -> str:
    """Check one element; return its MsgType."""
    if not isinstance(elem, dict):
        raise _bad(f"MsgBody[{i}] is not an object")
    msg_type = elem.get("MsgType")
    if not isinstance(msg_type, str) or msg_type not in ELEMENT_TYPES:
        raise _bad(f"MsgBody[{i}].MsgType is not a supported element type")
    content = elem.get("MsgContent")
    if not isinstance(content, dict):
        raise _bad(f"MsgBody[{i}].MsgContent is not an object")
    problem = _fields_ok(content, _FIELDS[msg_type])
    if problem is None and len(elem) > 2:  # fields beside MsgType and MsgContent
        extra = {k: v for k, v in elem.items() if k not in ("MsgType", "MsgContent")}
        problem = _fields_ok(extra, {})
    if problem is not None:
        raise _bad(f"MsgBody[{i}] ({msg_type}): {problem}")
    return msg_type


def validate_msg_body(body: object) -> list[dict[str, Any]]:
    """Check ``MsgBody``; return it unchanged (the same list and elements).

    Raises ``LivecastError(10004)`` when it is malformed (module docstring).
    """
    if not isinstance(body, list) or not body:
        raise _bad("MsgBody must be a non-empty array")
    if len(body) > MAX_ELEMENTS:
        raise _bad(f"MsgBody has more than {MAX_ELEMENTS} elements")
    customs = 0
    for i, elem in enumerate(body):
        if _validate_element(i, elem) == "TIMCustomElem":
            customs += 1
    if customs > 1:
        raise _bad("at most one TIMCustomElem per message")
    return body


def validate_cloud_custom_data(v: object) -> str:
    """``CloudCustomData``: a string; absent (None) means ``""``; else 10004."""
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _bad("CloudCustomData must be a string")
    return v


def message_size(body: list[dict[str, Any]], cloud_custom_data: str) -> int:
    """Bytes of compact JSON ``MsgBody`` plus UTF-8 bytes of ``CloudCustomData``.

    Raises ``LivecastError(10004)`` if either cannot be encoded (e.g. a lone
    surrogate in a string handed over by Python code rather than parsed JSON).
    """
    try:
        return len(orjson.dumps(body)) + len(cloud_custom_data.encode("utf-8"))
    except (orjson.JSONEncodeError, UnicodeEncodeError) as exc:
        raise _bad("message is not encodable as UTF-8 JSON") from exc


def check_size(body: list[dict[str, Any]], cloud_custom_data: str) -> None:
    """Raise ``LivecastError(80002)`` when the message exceeds ``MAX_MSG_BYTES``."""
    size = message_size(body, cloud_custom_data)
    if size > MAX_MSG_BYTES:
        raise LivecastError(Code.MSG_TOO_LONG, f"message is {size} bytes, over {MAX_MSG_BYTES}")
