"""Dense integer ids for external identifiers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from recset.errors import DataError

_FEW = 32
"""Up to this many ids, :meth:`IdMap.index` looks them up one by one."""


class IdMap:
    """A bijection between external string ids and dense ``int32`` indices ``0..n-1``.

    The order of first appearance is kept, so an ``IdMap`` built from a catalog keeps the
    catalog's row order. Unknown ids map to ``-1`` (``missing="negative"``) or raise
    ``KeyError`` (``missing="error"``).

    Examples
    --------
    >>> m = IdMap(["a", "b", "c"])
    >>> m.index(["c", "x"]).tolist()
    [2, -1]
    >>> m.ids(np.array([0, 2])).tolist()
    ['a', 'c']
    """

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str]) -> None:
        # str() per value, not numpy's fixed-width astype(str), which drops trailing NULs
        index = pd.Index([v if isinstance(v, str) else str(v) for v in ids], dtype=object)
        if not index.is_unique:
            dup = index[index.duplicated()][:5].tolist()
            raise DataError(f"IdMap ids must be unique; duplicated: {dup}")
        self._ids: NDArray[np.object_] = index.to_numpy(dtype=object)
        self._index = index

    @classmethod
    def from_values(cls, values: Sequence[str] | NDArray[np.object_] | pd.Series) -> IdMap:
        """Build from a column that may repeat ids and hold nulls (nulls are skipped)."""
        s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
        s = s.astype("string").dropna()
        return cls(pd.unique(s.to_numpy(dtype=object)))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external: object) -> bool:
        return external in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    def __hash__(self) -> int:  # pragma: no cover - IdMaps are not dict keys
        return hash(tuple(self._ids[:16]))

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    def index(
        self,
        external: Sequence[object] | NDArray[np.object_] | pd.Series,
        *,
        missing: Literal["negative", "error"] = "negative",
    ) -> NDArray[np.int32]:
        """Dense indices of ``external`` ids, shape ``(len(external),)``, dtype ``int32``."""
        if not isinstance(external, pd.Series) and len(external) <= _FEW:
            # a request's few ids: hash lookups, without building a Series (about 1 ms)
            out = np.fromiter((self._one(v) for v in external), np.int32, len(external))
            if missing == "error" and (out < 0).any():
                bad = [v for v, i in zip(external, out, strict=True) if i < 0]
                raise KeyError(f"unknown ids (first {len(bad[:5])} of {len(bad)}): {bad[:5]}")
            return out
        values = external if isinstance(external, pd.Series) else pd.Series(external, dtype=object)
        keys = values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")
        out = self._index.get_indexer(keys.to_numpy(dtype=object, na_value=None)).astype(np.int32)
        if missing == "error" and (out < 0).any():
            bad = values[out < 0].head(5).tolist()
            raise KeyError(f"unknown ids (first {len(bad)} of {(out < 0).sum()}): {bad}")
        return out

    def _one(self, value: object) -> int:
        """:meth:`index` of one value: a null is unknown, a non-string is looked up as str()."""
        if not isinstance(value, str):
            if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
                return -1
            value = str(value)
        return self.index_one(value)

    def index_one(self, external: object) -> int:
        """Dense index of one id, or ``-1`` when unknown."""
        try:
            loc = self._index.get_loc(str(external))
        except KeyError:
            return -1
        return int(loc)  # type: ignore[arg-type]

    def ids(self, idx: Sequence[int] | NDArray[np.integer]) -> NDArray[np.object_]:
        """External ids of dense indices; ``-1`` gives ``None``."""
        arr = np.asarray(idx, dtype=np.int64)
        out = np.empty(arr.shape, dtype=object)
        ok = (arr >= 0) & (arr < len(self._ids))
        out[ok] = self._ids[arr[ok]]
        out[~ok] = None
        return out

    def id_of(self, idx: int) -> str:
        """External id of one dense index (raises ``IndexError`` when out of range)."""
        if not 0 <= idx < len(self._ids):
            raise IndexError(f"index {idx} out of range for IdMap of size {len(self._ids)}")
        return str(self._ids[idx])

    @property
    def values(self) -> NDArray[np.object_]:
        """All external ids in index order (a read-only view)."""
        v = self._ids.view()
        v.flags.writeable = False
        return v
