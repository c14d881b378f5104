"""Cart queries: the first items of a test basket (time order) are the cart, the rest its
targets, and a system answers a cart the way :meth:`recset.engine.Engine.recommend_basket` does.

Every cart item is a seed; each seed's list (cart items left out, ``k + len(cart)`` long) gives
an item ``1 / (rrf_k + rank + 1)``; an item's cart score is the sum over the lists, ties broken
by its best rank, then by first appearance. Any system (the engine's stages or a baseline) is
served this way, so all of them see the same carts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recset.data import Dataset, Queries, Targets

CART_BINS: tuple[tuple[str, int, int], ...] = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4", 4, 4),
    ("5+", 5, 1 << 30),
)


@dataclass(frozen=True)
class Carts:
    """Cart items of each query: query ``q`` has ``item[indptr[q]:indptr[q+1]]`` (time order)."""

    indptr: NDArray[np.int64]
    item: NDArray[np.int32]

    def sizes(self) -> NDArray[np.int64]:
        return np.diff(self.indptr)

    def query_of_entry(self) -> NDArray[np.int64]:
        return np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int64), self.sizes())

    def take(self, rows: NDArray[np.integer]) -> Carts:
        rows = np.asarray(rows, dtype=np.int64)
        sizes = self.sizes()[rows]
        starts = self.indptr[rows]
        idx = np.repeat(starts - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())
        return Carts(np.r_[0, np.cumsum(sizes)].astype(np.int64), self.item[idx])


def prefix_queries(test: Dataset) -> tuple[Queries, Carts]:
    """One query per (test basket, cart size c in 1..n-1): the basket's first ``c`` items (in
    the order they were added) are the cart, the other ``n - c`` its targets.

    The query's ``seed`` is the cart's last-added item (its category is the query's).
    """
    b = test.baskets
    sizes = b.sizes()
    multi = np.flatnonzero(sizes >= 2)
    n_carts = sizes[multi] - 1
    q_basket = np.repeat(multi, n_carts)
    cart_size = np.arange(int(n_carts.sum())) - np.repeat(np.cumsum(n_carts) - n_carts, n_carts) + 1
    start = b.indptr[q_basket]
    size = sizes[q_basket]
    # carts: items [start, start + c); targets: [start + c, start + n)
    c_idx = np.repeat(start, cart_size) + (
        np.arange(int(cart_size.sum())) - np.repeat(np.cumsum(cart_size) - cart_size, cart_size)
    )
    t_size = size - cart_size
    t_idx = np.repeat(start + cart_size, t_size) + (
        np.arange(int(t_size.sum())) - np.repeat(np.cumsum(t_size) - t_size, t_size)
    )
    carts = Carts(np.r_[0, np.cumsum(cart_size)].astype(np.int64), b.item[c_idx].astype(np.int32))
    queries = Queries(
        seed=b.item[start + cart_size - 1].astype(np.int32),
        user=b.user[q_basket].astype(np.int32),
        basket=q_basket.astype(np.int64),
        targets=Targets(
            np.r_[0, np.cumsum(t_size)].astype(np.int64), b.item[t_idx].astype(np.int64)
        ),
        time=b.timestamp[q_basket].astype(np.int64),
    )
    return queries, carts


Lists = Callable[
    [NDArray[np.int32], NDArray[np.int32], int, NDArray[np.int64] | None], NDArray[np.int32]
]


def cart_recommendations(
    lists: Lists,
    queries: Queries,
    carts: Carts,
    k: int,
    rrf_k: float,
) -> NDArray[np.int32]:
    """(n_queries, k) cart recommendations from per-seed ``lists(seeds, users, width)``.

    ``lists`` answers one row per cart entry (its item as the seed, the query's user); its
    fourth argument is the entries' query times (``queries.time``, or None when unknown).
    """
    q_of = carts.query_of_entry()
    sizes = carts.sizes()
    # as recommend_basket: each seed's list is asked k + 2 len(cart) long (the cart is left
    # out of k + len(cart)), one call per cart size since lists need not be prefixes
    width = k + 2 * int(sizes.max(initial=0))
    rows = np.full((len(q_of), width), -1, dtype=np.int32)
    users = queries.user[q_of].astype(np.int32)
    times = None if queries.time is None else queries.time[q_of]
    for size in np.unique(sizes[sizes > 0]).tolist():
        e = np.flatnonzero(sizes[q_of] == size)
        w = k + 2 * size
        rows[e, :w] = lists(carts.item[e], users[e], w, None if times is None else times[e])[:, :w]
    n_items = int(max(rows.max(initial=0), carts.item.max(initial=0))) + 2
    # leave out every item of the entry's own cart, then re-rank what is left
    cart_keys = q_of * n_items + carts.item
    entry_q = np.repeat(q_of[:, None], rows.shape[1], axis=1)
    in_cart = np.isin(entry_q * n_items + rows, cart_keys)
    keep = (rows >= 0) & ~in_cart
    rank = np.cumsum(keep, axis=1) - 1
    keep &= rank < (k + carts.sizes()[q_of])[:, None]
    e, col = np.nonzero(keep)
    q, item, r = q_of[e], rows[e, col].astype(np.int64), rank[e, col]
    first_seen = e.astype(np.int64) * rows.shape[1] + r  # list order, then rank
    key = q * n_items + item
    uniq, inv = np.unique(key, return_inverse=True)
    score = np.bincount(inv, weights=1.0 / (rrf_k + r + 1.0), minlength=len(uniq))
    best = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(best, inv, r.astype(np.int64))
    first = np.full(len(uniq), np.iinfo(np.int64).max)
    np.minimum.at(first, inv, first_seen)
    u_q, u_item = uniq // n_items, uniq % n_items
    order = np.lexsort((first, best, -score, u_q))
    u_q, u_item = u_q[order], u_item[order]
    counts = np.bincount(u_q, minlength=len(queries))
    pos = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.full((len(queries), k), -1, dtype=np.int32)
    ok = pos < k
    out[u_q[ok], pos[ok]] = u_item[ok]
    return out


def cart_bins(sizes: NDArray[np.integer]) -> dict[str, NDArray[np.bool_]]:
    """Query masks of the cart-size bins (1, 2, 3, 4, 5+), empty bins left out."""
    out = {}
    for label, lo, hi in CART_BINS:
        sel = (sizes >= lo) & (sizes <= hi)
        if sel.any():
            out[label] = sel
    return out
