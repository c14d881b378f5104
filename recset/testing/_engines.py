"""Assertions that two engines serve the same: for tests comparing two ways of building one
engine (an append against a full rebuild, a Spark build against the in-process one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recset.engine import Engine


def assert_same_lists(got: Engine, want: Engine, *, rtol: float = 1e-5) -> None:
    """The same precomputed lists: items and ties in the same order, scores within ``rtol``."""
    a, b = got.mixer.lists, want.mixer.lists
    assert a is not None and b is not None and a.item.size > 0
    np.testing.assert_array_equal(a.item, b.item)
    np.testing.assert_allclose(a.score, b.score, rtol=rtol)
    for name in ("ptr", "pos", "src", "src_rank"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.src_score, b.src_score, rtol=rtol)


def assert_same_source_state(got: Engine, want: Engine, *, rtol: float = 1e-5) -> None:
    """Every source of ``want`` fitted to the same arrays in ``got`` (floats within ``rtol``)."""
    for name, src in want.mixer.sources.items():
        for attr in type(src)._state:
            x, y = getattr(src, attr), getattr(got.mixer.sources[name], attr)
            if x.dtype.kind == "f":
                np.testing.assert_allclose(y, x, rtol=rtol, err_msg=f"{name}.{attr}")
            else:
                np.testing.assert_array_equal(y, x, err_msg=f"{name}.{attr}")
