"""Row-wise top-k of a sparse matrix, CSR row gathering and sorted-key lookups, vectorised."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

# most stored entries of one row block of topk_rows (each costs about 40 bytes while sorted)
TOPK_BLOCK_ENTRIES = 1 << 23


def topk_workers() -> int:
    """Threads for block-parallel work (numpy sorts and scipy products release the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def row_blocks(cost: NDArray[np.integer], max_cost: int, max_rows: int) -> list[tuple[int, int]]:
    """Consecutive row ranges ``[a, b)`` of summed ``cost`` <= ``max_cost`` (a row above it
    alone gets its own block) and at most ``max_rows`` rows."""
    n = len(cost)
    if n == 0:
        return []
    cum = np.cumsum(np.asarray(cost, dtype=np.int64))
    out = []
    a = 0
    while a < n:
        base = cum[a - 1] if a else 0
        b = int(np.searchsorted(cum, base + max_cost, side="right"))
        b = min(max(b, a + 1), a + max_rows, n)
        out.append((a, b))
        a = b
    return out


def run_blocks(fn: Callable[[int, int], None], blocks: list[tuple[int, int]], workers: int) -> None:
    """Call ``fn(a, b)`` for every block, on ``workers`` threads when there are several."""
    if workers <= 1 or len(blocks) <= 1:
        for a, b in blocks:
            fn(a, b)
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(blocks))) as pool:
        for f in [pool.submit(fn, a, b) for a, b in blocks]:
            f.result()


def topk_rows(
    m: sp.csr_matrix,
    k: int,
    *,
    min_value: float | None = None,
    max_entries: int = TOPK_BLOCK_ENTRIES,
    workers: int | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The ``k`` largest entries of every row of ``m``.

    Returns ``(idx, val)`` of shape ``(n_rows, k)``: column ids padded with ``-1`` and values
    padded with ``-inf``, best first; ties are broken by the lower column id. Entries below
    ``min_value`` (when given) are dropped.

    Rows are sorted in blocks of at most ``max_entries`` stored entries (so the temporaries
    stay bounded), on ``workers`` threads (default :func:`topk_workers`). For float32 values
    a block is one sort of 64-bit keys (row, value, column); other dtypes, NaNs or very wide
    matrices take a lexicographic sort.
    """
    m = m.tocsr()
    n, n_cols = m.shape
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    if m.nnz == 0 or k == 0:
        return idx, val
    col_bits = max(int(n_cols - 1).bit_length(), 1)
    fast = m.dtype == np.float32 and col_bits <= 30 and not np.isnan(m.data).any()
    max_rows = 1 << (32 - col_bits) if fast else n
    blocks = row_blocks(np.diff(m.indptr), max_entries, max_rows)

    def block(a: int, b: int) -> None:
        lo, hi = int(m.indptr[a]), int(m.indptr[b])
        rows = np.repeat(np.arange(b - a), np.diff(m.indptr[a : b + 1]))
        data, cols = m.data[lo:hi], m.indices[lo:hi]
        if min_value is not None:
            ok = data >= min_value
            rows, data, cols = rows[ok], data[ok], cols[ok]
        if fast:
            rows, data, cols = _sorted_by_key(rows, data, cols, col_bits)
        else:
            order = np.lexsort((cols, -data, rows))
            rows, data, cols = rows[order], data[order], cols[order]
        counts = np.bincount(rows, minlength=b - a)
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        pos = np.arange(len(rows)) - starts[rows]
        keep = pos < k
        idx[a + rows[keep], pos[keep]] = cols[keep]
        val[a + rows[keep], pos[keep]] = data[keep]

    run_blocks(block, blocks, topk_workers() if workers is None else workers)
    return idx, val


def _sorted_by_key(
    rows: NDArray[np.int64], data: NDArray[np.float32], cols: NDArray[np.int32], col_bits: int
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.int32]]:
    """(rows, data, cols) by row, then value descending, then column: one uint64 sort.

    The key is ``row << (32 + col_bits) | descending(value) << col_bits | col``, where
    ``descending`` maps float32 bits to a uint32 that falls as the value rises.
    """
    bits = (data + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    neg = (bits >> np.uint32(31)).astype(bool)
    ordered = np.where(neg, ~bits, bits | np.uint32(0x80000000))  # rises with the value
    desc = (np.uint32(0xFFFFFFFF) - ordered).astype(np.uint64)
    key = (
        (rows.astype(np.uint64) << np.uint64(32 + col_bits))
        | (desc << np.uint64(col_bits))
        | cols.astype(np.uint64)
    )
    key.sort()
    rows_s = (key >> np.uint64(32 + col_bits)).astype(np.int64)
    cols_s = (key & np.uint64((1 << col_bits) - 1)).astype(np.int32)
    ordered_s = np.uint32(0xFFFFFFFF) - (
        (key >> np.uint64(col_bits)) & np.uint64(0xFFFFFFFF)
    ).astype(np.uint32)
    back = np.where(ordered_s >> np.uint32(31), ordered_s & np.uint32(0x7FFFFFFF), ~ordered_s)
    return rows_s, back.astype(np.uint32).view(np.float32), cols_s


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
