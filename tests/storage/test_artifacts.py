"""The one versioned artifact-state format: round trips and refusals that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recset.errors import StorageError
from recset.storage import read_state, write_state


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 20),
    meta=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=4),
    mmap=st.booleans(),
)
def test_round_trip(
    tmp_path_factory: pytest.TempPathFactory, n: int, meta: dict, mmap: bool
) -> None:
    d = tmp_path_factory.mktemp("state")
    arrays = {"a": np.arange(n, dtype=np.int32), "b": np.linspace(0, 1, n).astype(np.float32)}
    write_state(d, "thing", 3, meta=meta, arrays=arrays, mmap=mmap)
    state = read_state(d, "thing", 3)
    assert state.meta == meta
    for k, v in arrays.items():
        assert np.array_equal(state.array(k, d), v) and state.array(k, d).dtype == v.dtype


def test_refusals_name_the_file(tmp_path: Path) -> None:
    write_state(tmp_path, "thing", 1, arrays={"a": np.arange(3)})
    with pytest.raises(StorageError, match=r"thing\.json.*version 1.*reads version 2"):
        read_state(tmp_path, "thing", 2)
    with pytest.raises(StorageError, match=r"other\.json: missing"):
        read_state(tmp_path, "other", 1)
    with pytest.raises(StorageError, match="no array 'z'"):
        read_state(tmp_path, "thing", 1).array("z", tmp_path)
    # a truncated .npz is refused, not a raw zipfile error
    npz = tmp_path / "thing.npz"
    npz.write_bytes(npz.read_bytes()[:40])
    with pytest.raises(StorageError, match="cannot read the arrays"):
        read_state(tmp_path, "thing", 1)
    # a file of an older layout (no kind) and object arrays (pickle) are refused
    (tmp_path / "old.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(StorageError, match="older recset"):
        read_state(tmp_path, "old", 1)
    with pytest.raises(StorageError, match="dtype object"):
        write_state(tmp_path, "bad", 1, arrays={"x": np.array([{}], dtype=object)})
