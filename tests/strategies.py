"""Hypothesis strategies shared by the fuzz and property tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def json_trees(scalars: st.SearchStrategy[Any], max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """JSON-like values: ``scalars`` nested in lists and objects (4 items at most)."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=max_leaves,
    )


# what orjson can encode: 64-bit integers, finite floats
json_values = json_trees(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20))
