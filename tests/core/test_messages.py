"""livecast.core.messages: element validation (reference section 5) and size (80002)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livecast.core.messages import (
    ELEMENT_TYPES,
    MAX_ELEMENTS,
    MAX_MSG_BYTES,
    check_size,
    message_size,
    validate_cloud_custom_data,
    validate_msg_body,
)
from livecast.errors import Code, LivecastError
from tests.strategies import json_values


def elem(msg_type: str, **content: Any) -> dict[str, Any]:
    return {"MsgType": msg_type, "MsgContent": content}


VALID_ELEMENTS = [
    elem("TIMTextElem", Text="hello"),
    elem("TIMTextElem", Text=""),
    elem("TIMLocationElem", Desc="office", Latitude=22.5, Longitude=113),
    elem("TIMFaceElem", Index=1, Data="smile"),
    elem("TIMFaceElem", Index=0),
    elem("TIMCustomElem", Data='{"gift":1}', Desc="gift", Ext="x", Sound="s.mp3"),
    elem("TIMCustomElem", Data=""),
    elem("TIMSoundElem", Url="https://a/s.mp3", UUID="u", Size=1024, Second=3, Download_Flag=2),
    elem("TIMSoundElem", UUID="u", Size=1024, Second=3),
    elem("TIMSoundElem"),
    elem(
        "TIMImageElem",
        UUID="img",
        ImageFormat=1,
        ImageInfoArray=[
            {"Type": 1, "Size": 1000, "Width": 100, "Height": 80, "URL": "https://a/1.jpg"},
            {"Type": 3, "URL": "https://a/3.jpg"},
        ],
    ),
    elem("TIMFileElem", Url="https://a/f", UUID="f", FileSize=9, FileName="f.txt", Download_Flag=2),
    elem(
        "TIMVideoFileElem",
        VideoUrl="https://a/v.mp4",
        VideoUUID="v",
        VideoSize=100,
        VideoSecond=5,
        VideoFormat="mp4",
        VideoDownloadFlag=2,
        ThumbUrl="https://a/t.jpg",
        ThumbUUID="t",
        ThumbSize=10,
        ThumbWidth=64,
        ThumbHeight=48,
        ThumbFormat="JPG",
        ThumbDownloadFlag=2,
    ),
]


def refused(body: object) -> LivecastError:
    with pytest.raises(LivecastError) as info:
        validate_msg_body(body)
    assert info.value.code == Code.BAD_PARAMETER
    return info.value


def test_element_types_are_the_compat_subset() -> None:
    assert {
        "TIMTextElem",
        "TIMLocationElem",
        "TIMFaceElem",
        "TIMCustomElem",
        "TIMSoundElem",
        "TIMImageElem",
        "TIMFileElem",
        "TIMVideoFileElem",
    } == ELEMENT_TYPES


@pytest.mark.parametrize("element", VALID_ELEMENTS, ids=lambda e: e["MsgType"])
def test_valid_element_accepted_and_returned_unchanged(element: dict[str, Any]) -> None:
    body = [element]
    before = orjson.dumps(body)
    result = validate_msg_body(body)
    assert result is body
    assert result[0] is element
    assert orjson.dumps(result) == before


def test_every_element_type_together_with_one_custom() -> None:
    body = [e for e in VALID_ELEMENTS if e["MsgType"] != "TIMCustomElem"] + [VALID_ELEMENTS[5]]
    assert validate_msg_body(body) is body


@pytest.mark.parametrize(
    "element",
    [
        elem("TIMTextElem"),
        elem("TIMTextElem", Text=5),
        elem("TIMTextElem", Text=None),
        elem("TIMTextElem", Text=["a"]),
        elem("TIMCustomElem"),
        elem("TIMCustomElem", Data={"a": 1}),
        elem("TIMCustomElem", Data="x", Desc=1),
        elem("TIMCustomElem", Data="x", Ext=None),
        elem("TIMCustomElem", Data="x", Sound=True),
        elem("TIMFaceElem"),
        elem("TIMFaceElem", Index=1.5),
        elem("TIMFaceElem", Index=1.0),
        elem("TIMFaceElem", Index=True),
        elem("TIMFaceElem", Index="1"),
        elem("TIMFaceElem", Index=1, Data=2),
        elem("TIMLocationElem", Latitude=1, Longitude=2),
        elem("TIMLocationElem", Desc="d", Longitude=2),
        elem("TIMLocationElem", Desc="d", Latitude=1),
        elem("TIMLocationElem", Desc="d", Latitude=True, Longitude=2),
        elem("TIMLocationElem", Desc="d", Latitude="1", Longitude=2),
        elem("TIMLocationElem", Desc="d", Latitude=float("nan"), Longitude=2),
        elem("TIMLocationElem", Desc="d", Latitude=1, Longitude=float("inf")),
        elem("TIMLocationElem", Desc=None, Latitude=1, Longitude=2),
        elem("TIMSoundElem", Url=1),
        elem("TIMSoundElem", Size="1024"),
        elem("TIMSoundElem", Second=False),
        elem("TIMImageElem", ImageFormat="jpg"),
        elem("TIMImageElem", ImageInfoArray={"Type": 1}),
        elem("TIMImageElem", ImageInfoArray=["x"]),
        elem("TIMImageElem", ImageInfoArray=[{"URL": 5}]),
        elem("TIMImageElem", ImageInfoArray=[{"Width": "100"}]),
        elem("TIMFileElem", FileName=7),
        elem("TIMFileElem", FileSize=[1]),
        elem("TIMVideoFileElem", VideoSecond="5"),
        elem("TIMVideoFileElem", ThumbFormat=3),
        elem("TIMTextElem", Text="x", Extra=2**64),
        elem("TIMTextElem", Text="x", Extra=object()),
        elem("TIMTextElem", Text="x", Extra={1: "non-string key"}),
    ],
)
def test_malformed_element_refused(element: dict[str, Any]) -> None:
    refused([element])


@pytest.mark.parametrize(
    "body",
    [
        None,
        "text",
        {"MsgType": "TIMTextElem", "MsgContent": {"Text": "x"}},
        [],
        ["x"],
        [None],
        [{"MsgContent": {"Text": "x"}}],
        [{"MsgType": "TIMTextElem"}],
        [{"MsgType": "TIMTextElem", "MsgContent": "x"}],
        [{"MsgType": "TIMTextElem", "MsgContent": None}],
        [{"MsgType": "TIMUnknownElem", "MsgContent": {}}],
        [{"MsgType": 1, "MsgContent": {}}],
        [elem("TIMRelayElem", Title="t", MsgNum=1)],
        [elem("TIMGroupTipElem")],
    ],
)
def test_malformed_body_refused(body: object) -> None:
    refused(body)


def test_two_custom_elements_refused() -> None:
    err = refused([elem("TIMCustomElem", Data="a"), elem("TIMCustomElem", Data="b")])
    assert "TIMCustomElem" in err.info


def test_two_custom_elements_refused_even_when_apart() -> None:
    text = elem("TIMTextElem", Text="hi")
    refused([elem("TIMCustomElem", Data="a"), text, elem("TIMCustomElem", Data="b")])


def test_element_count_capped() -> None:
    text = elem("TIMTextElem", Text="x")
    assert len(validate_msg_body([text] * MAX_ELEMENTS)) == MAX_ELEMENTS
    refused([text] * (MAX_ELEMENTS + 1))


def test_unknown_fields_tolerated_when_plain_json() -> None:
    extra: dict[str, Any] = {
        "n": None,
        "b": True,
        "i": -3,
        "f": 1.5,
        "s": "x",
        "l": [1, [2]],
        "o": {"k": {}},
    }
    body = [
        {"MsgType": "TIMTextElem", "MsgContent": {"Text": "x", "Future": extra}, "Tag": [1]},
        elem("TIMImageElem", ImageInfoArray=[{"Type": 1, "Future": extra}]),
    ]
    assert validate_msg_body(body) is body


def test_deeply_nested_unknown_field_refused() -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    refused([elem("TIMTextElem", Text="x", Future=deep)])
    shallow: Any = "leaf"
    for _ in range(10):
        shallow = [shallow]
    validate_msg_body([elem("TIMTextElem", Text="x", Future=shallow)])


def test_cloud_custom_data() -> None:
    assert validate_cloud_custom_data(None) == ""
    assert validate_cloud_custom_data("") == ""
    assert validate_cloud_custom_data('{"level":3}') == '{"level":3}'
    bad: object
    for bad in (1, 1.5, True, [], {}, b"x"):
        with pytest.raises(LivecastError) as info:
            validate_cloud_custom_data(bad)
        assert info.value.code == Code.BAD_PARAMETER


def text_body(nbytes: int, cloud: str = "") -> list[dict[str, Any]]:
    """A one-text-element body whose message_size is exactly ``nbytes``."""
    overhead = message_size([elem("TIMTextElem", Text="")], cloud)
    return [elem("TIMTextElem", Text="a" * (nbytes - overhead))]


def test_size_is_compact_json_plus_cloud_custom_data() -> None:
    body = [elem("TIMTextElem", Text="héllo")]
    expected = len(b'[{"MsgType":"TIMTextElem","MsgContent":{"Text":"h\xc3\xa9llo"}}]')
    assert message_size(body, "") == expected
    assert message_size(body, "ü€") == expected + 5


def test_size_exactly_at_limit_accepted_one_more_refused() -> None:
    at_limit = text_body(MAX_MSG_BYTES)
    assert message_size(at_limit, "") == 12288
    check_size(at_limit, "")
    over = text_body(MAX_MSG_BYTES + 1)
    assert message_size(over, "") == 12289
    with pytest.raises(LivecastError) as info:
        check_size(over, "")
    assert info.value.code == Code.MSG_TOO_LONG


def test_cloud_custom_data_counts_toward_size() -> None:
    body = text_body(MAX_MSG_BYTES - 10)
    check_size(body, "x" * 10)
    with pytest.raises(LivecastError) as info:
        check_size(body, "€" * 4)  # 12 bytes
    assert info.value.code == Code.MSG_TOO_LONG


def test_unencodable_strings_are_bad_parameter_not_a_crash() -> None:
    with pytest.raises(LivecastError) as info:
        message_size([elem("TIMTextElem", Text="\ud800")], "")
    assert info.value.code == Code.BAD_PARAMETER
    with pytest.raises(LivecastError) as info:
        message_size([elem("TIMTextElem", Text="x")], "\udfff")
    assert info.value.code == Code.BAD_PARAMETER



element_like = st.fixed_dictionaries(
    {
        "MsgType": st.sampled_from(sorted(ELEMENT_TYPES)) | st.text(max_size=12),
        "MsgContent": st.dictionaries(
            st.sampled_from(["Text", "Data", "Index", "Desc", "Latitude", "Longitude", "Url"])
            | st.text(max_size=8),
            json_values,
            max_size=5,
        )
        | json_values,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(element_like, max_size=4) | json_values)
def test_validation_never_raises_anything_but_10004(body: Any) -> None:
    try:
        result = validate_msg_body(body)
    except LivecastError as exc:
        assert exc.code == Code.BAD_PARAMETER
        return
    assert result is body
    assert message_size(result, "") == len(orjson.dumps(body))


@settings(deadline=None)
@given(
    st.lists(
        st.builds(
            lambda text, extra: {"MsgType": "TIMTextElem", "MsgContent": {"Text": text, **extra}},
            st.text(max_size=50),
            st.dictionaries(st.text(max_size=8).filter(lambda k: k != "Text"), json_values),
        ),
        min_size=1,
        max_size=MAX_ELEMENTS,
    )
)
def test_text_elements_with_unknown_json_fields_accepted(body: list[dict[str, Any]]) -> None:
    assert validate_msg_body(body) is body
