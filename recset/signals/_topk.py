"""Row-wise top-k of a sparse matrix, CSR row gathering and sorted-key lookups, vectorised."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray


def topk_rows(
    m: sp.csr_matrix, k: int, *, min_value: float | None = None
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The ``k`` largest entries of every row of ``m``.

    Returns ``(idx, val)`` of shape ``(n_rows, k)``: column ids padded with ``-1`` and values
    padded with ``-inf``, best first; ties are broken by the lower column id. Entries below
    ``min_value`` (when given) are dropped.
    """
    m = m.tocsr()
    n = m.shape[0]
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    if m.nnz == 0 or k == 0:
        return idx, val
    rows = np.repeat(np.arange(n), np.diff(m.indptr))
    data, cols = m.data, m.indices
    if min_value is not None:
        ok = data >= min_value
        rows, data, cols = rows[ok], data[ok], cols[ok]
    order = np.lexsort((cols, -data, rows))
    rows, data, cols = rows[order], data[order], cols[order]
    counts = np.bincount(rows, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pos = np.arange(len(rows)) - starts[rows]
    keep = pos < k
    idx[rows[keep], pos[keep]] = cols[keep]
    val[rows[keep], pos[keep]] = data[keep]
    return idx, val


def csr_gather(indptr: NDArray[np.int64], rows: NDArray[np.integer]) -> NDArray[np.int64]:
    """Positions ``indptr[r]..indptr[r+1]-1`` of every row ``r`` of ``rows``, concatenated."""
    rows = np.asarray(rows, dtype=np.int64)
    lo = indptr[rows]
    counts = indptr[rows + 1] - lo
    total = int(counts.sum())
    return np.repeat(lo, counts) + np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def pair_lookup(
    keys_sorted: NDArray[np.int64], values: NDArray[np.floating], query: NDArray[np.int64]
) -> NDArray[np.float64]:
    """``values[k]`` for each query key present in ``keys_sorted``, NaN where absent.

    Parameters
    ----------
    keys_sorted : ndarray of int64, shape (m,)
        Sorted, unique keys (e.g. ``user * n_items + item``).
    values : ndarray, shape (m,)
        The value of each key.
    query : ndarray of int64, shape (q,)
        Keys to look up.

    Returns
    -------
    ndarray of float64, shape (q,)
    """
    pos = np.searchsorted(keys_sorted, query)
    pos_c = np.minimum(pos, max(len(keys_sorted) - 1, 0))
    found = (
        (len(keys_sorted) > 0) & (keys_sorted[pos_c] == query)
        if len(keys_sorted)
        else (np.zeros(len(query), dtype=bool))
    )
    out = np.full(len(query), np.nan)
    if len(keys_sorted):
        out[found] = values[pos_c[found]]
    return out
