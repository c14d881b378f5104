import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recset.data import IdMap
from recset.errors import DataError


@given(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=50))
def test_round_trip(ids: list[str]) -> None:
    m = IdMap(ids)
    idx = m.index(ids)
    assert idx.dtype == np.int32
    assert idx.tolist() == list(range(len(ids)))
    assert m.ids(idx).tolist() == ids
    for i, x in enumerate(ids):
        assert m.index_one(x) == i
        assert m.id_of(i) == x


@given(
    st.lists(st.text(min_size=1, max_size=5), unique=True, min_size=1, max_size=20),
    st.lists(st.text(min_size=1, max_size=5), max_size=20),
)
def test_unknown_ids_are_negative(known: list[str], queried: list[str]) -> None:
    m = IdMap(known)
    idx = m.index(queried)
    for q, i in zip(queried, idx, strict=True):
        assert (i == -1) == (q not in known)
    assert m.ids(np.array([-1])).tolist() == [None]


def test_missing_error_and_duplicates() -> None:
    m = IdMap(["a", "b"])
    with pytest.raises(KeyError, match="zz"):
        m.index(["a", "zz"], missing="error")
    with pytest.raises(DataError, match="unique"):
        IdMap(["a", "a"])
    assert len(IdMap.from_values(["x", None, "y", "x"])) == 2


def test_values_are_read_only() -> None:
    m = IdMap(["a"])
    with pytest.raises(ValueError):
        m.values[0] = "b"


_MIXED = st.one_of(
    st.text(max_size=4),
    st.none(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=False, width=32),
)


@given(
    st.lists(st.text(max_size=4), unique=True, max_size=20),
    st.lists(_MIXED, max_size=40),
)
def test_few_ids_looked_up_one_by_one_match_the_vectorised_path(
    known: list[str], queried: list[object]
) -> None:
    m = IdMap(dict.fromkeys([*known, "1", "0.5", "nan"]))
    vectorised = m.index(pd.Series(queried, dtype=object))
    assert m.index(queried).tolist() == vectorised.tolist()  # <= 32 ids: one by one
    assert m.index(queried * 3).tolist() == vectorised.tolist() * 3  # the Series path
