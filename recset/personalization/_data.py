"""Training data of the neural stage as numpy arrays (no torch here).

Complement edges from the signals, negative sampling (uniform and same-category hard
negatives never co-purchased with the seed), per-user purchase sequences, the
(seed, co-purchased item, user history before the basket) triples, and the contrastive
views (crop / reorder) of padded histories.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import PURCHASE, Dataset
from recset.signals import Signals

_log = logging.getLogger(__name__)


def complement_edges(
    signals: Signals, kind: str = "co_purchase_only", max_neighbors: int | None = None
) -> tuple[NDArray[np.int64], str]:
    """Directed complement edges ``i -> j`` (``j`` was bought after / with ``i``).

    Parameters
    ----------
    signals : Signals
    kind : {"co_purchase_only", "co_purchase_directed"}
        ``co_purchase_only`` falls back to ``co_purchase_directed`` when it has no pair.
    max_neighbors : int, optional
        Keep only each seed's ``max_neighbors`` strongest complements (by the signal's
        count): grocery co-purchase graphs are dense (Complete Journey: 23M pairs), and
        message passing over every pair is neither affordable nor informative.

    Returns
    -------
    edges : ndarray of int64, shape (2, n_edges)
        Row 0 the seed ``i``, row 1 the complement ``j``, sorted by (i, j).
    used : str
        The signal the edges came from.
    """
    m = signals.co_purchase_only if kind == "co_purchase_only" else signals.co_purchase_directed
    used = kind
    if m.nnz == 0 and kind == "co_purchase_only":
        _log.info("neural: co_purchase_only is empty; using co_purchase_directed edges")
        m = signals.co_purchase_directed
        used = "co_purchase_directed"
    m = sp.csr_matrix(m)
    if max_neighbors is not None and m.nnz and np.diff(m.indptr).max() > max_neighbors:
        from recset.signals import topk_rows

        idx, _ = topk_rows(m, max_neighbors, min_value=1e-12)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), max_neighbors)
        keep = idx.ravel() >= 0
        edges = np.vstack([rows[keep], idx.ravel()[keep].astype(np.int64)])
    else:
        coo = m.tocoo()
        edges = np.vstack([coo.row, coo.col]).astype(np.int64)
    order = np.lexsort((edges[1], edges[0]))
    return edges[:, order], used


class PairSet:
    """Membership test for unordered item pairs (e.g. "ever co-purchased"), vectorised."""

    def __init__(self, m: sp.spmatrix, n_items: int) -> None:
        coo = sp.coo_matrix(m)
        a = np.minimum(coo.row, coo.col).astype(np.int64)
        b = np.maximum(coo.row, coo.col).astype(np.int64)
        self.n = n_items
        self.keys = np.unique(a * n_items + b)

    def contains(self, i: NDArray[np.integer], j: NDArray[np.integer]) -> NDArray[np.bool_]:
        i64, j64 = i.astype(np.int64), j.astype(np.int64)
        k = np.minimum(i64, j64) * self.n + np.maximum(i64, j64)
        if self.keys.size == 0:
            return np.zeros(k.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(self.keys, k), self.keys.size - 1)
        return self.keys[pos] == k


class NegativeSampler:
    """Uniform negatives plus hard negatives: same category as the positive, never
    co-purchased with the seed (re-drawn uniformly where the draw fails).

    Parameters
    ----------
    category : ndarray of int32, shape (n_items,)
        Dense category id per item, ``-1`` when unknown.
    bought_together : PairSet
        Pairs that must not be used as negatives.
    hard_share : float
        Share of hard negatives among the ``k`` negatives of each positive.
    """

    def __init__(
        self, category: NDArray[np.int32], bought_together: PairSet, hard_share: float
    ) -> None:
        self.n_items = len(category)
        self.category = category.astype(np.int64)
        order = np.argsort(self.category, kind="stable")
        self.by_cat = order
        cats = self.category[order]
        n_cat = int(self.category.max()) + 1 if len(cats) and self.category.max() >= 0 else 0
        self.start = np.searchsorted(cats, np.arange(n_cat))
        self.size = np.searchsorted(cats, np.arange(n_cat), side="right") - self.start
        self.pairs = bought_together
        self.hard_share = hard_share

    def sample(
        self,
        seeds: NDArray[np.integer],
        positives: NDArray[np.integer],
        k: int,
        rng: np.random.Generator,
    ) -> NDArray[np.int64]:
        """``k`` negatives per (seed, positive), shape (n, k), int64."""
        n = len(seeds)
        neg = rng.integers(0, self.n_items, size=(n, k))
        n_hard = int(round(self.hard_share * k))
        if n_hard and self.size.size:
            c = np.repeat(self.category[positives][:, None], n_hard, axis=1)
            ok = c >= 0
            cc = np.maximum(c, 0)
            size = self.size[cc]
            ok &= size > 1
            off = (rng.random(c.shape) * np.maximum(size, 1)).astype(np.int64)
            hard = self.by_cat[self.start[cc] + np.minimum(off, np.maximum(size - 1, 0))]
            neg[:, :n_hard] = np.where(ok, hard, neg[:, :n_hard])
        s = np.repeat(np.asarray(seeds)[:, None], k, axis=1)
        p = np.repeat(np.asarray(positives)[:, None], k, axis=1)
        bad = (neg == s) | (neg == p) | self.pairs.contains(s, neg)
        if bad.any():
            neg[bad] = rng.integers(0, self.n_items, size=int(bad.sum()))
        return neg


@dataclass(frozen=True)
class Purchases:
    """Every user's purchases in time order, CSR-like by dense user id.

    ``item[indptr[u]:indptr[u+1]]`` were bought by ``u`` at ``timestamp[...]``.
    """

    indptr: NDArray[np.int64]
    item: NDArray[np.int32]
    timestamp: NDArray[np.int64]

    @classmethod
    def of(cls, dataset: Dataset) -> Purchases:
        ev = dataset.events
        sel = np.flatnonzero(ev.event == PURCHASE)
        user, item, ts = ev.user[sel], ev.item[sel], ev.timestamp[sel]
        order = np.lexsort((np.arange(len(sel)), ts, user))  # by user, then time (stable)
        user, item, ts = user[order], item[order], ts[order]
        indptr = np.searchsorted(user, np.arange(dataset.n_users + 1)).astype(np.int64)
        return cls(indptr, item.astype(np.int32), ts.astype(np.int64))

    def last(
        self, users: NDArray[np.integer], before: NDArray[np.int64] | None, h: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The last ``h`` purchases of each user strictly before ``before`` (or overall).

        Returns
        -------
        history : ndarray of int64, shape (n, h)
            Item ids in time order, left-aligned, padded with ``-1``.
        length : ndarray of int64, shape (n,)
        """
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < len(self.indptr) - 1)
        u = np.where(known, users, 0)
        lo = np.where(known, self.indptr[u], 0)
        hi = np.where(known, self.indptr[u + 1], 0)
        if before is not None:
            # per user the timestamps are sorted: count those < before within [lo, hi)
            ts = self.timestamp
            end = lo.copy()
            if len(ts):
                # a global searchsorted per row on its own slice, done on a shifted key
                key = np.asarray(before, dtype=np.int64)
                end = _segment_searchsorted(ts, lo, hi, key)
            hi = np.where(known, end, 0)
        length = np.minimum(hi - lo, h)
        start = hi - length
        idx = start[:, None] + np.arange(h)[None, :]
        valid = np.arange(h)[None, :] < length[:, None]
        hist = np.where(valid, self.item[np.minimum(idx, max(len(self.item) - 1, 0))], -1)
        if len(self.item) == 0:
            hist = np.full((len(users), h), -1, dtype=np.int64)
        return hist.astype(np.int64), length.astype(np.int64)


def _segment_searchsorted(
    values: NDArray[np.int64],
    lo: NDArray[np.int64],
    hi: NDArray[np.int64],
    key: NDArray[np.int64],
) -> NDArray[np.int64]:
    """For each row, ``lo + searchsorted(values[lo:hi], key, side="left")`` (vectorised
    bisection over the sorted segments)."""
    a, b = lo.copy(), hi.copy()
    while True:
        active = a < b
        if not active.any():
            return a
        mid = (a + b) // 2
        less = np.zeros_like(active)
        less[active] = values[mid[active]] < key[active]
        a = np.where(active & less, mid + 1, a)
        b = np.where(active & ~less, mid, b)


@dataclass(frozen=True)
class Triples:
    """(seed, co-purchased item) pairs of the baskets of a dataset, with their basket.

    ``positive`` was bought in basket ``group`` after ``seed`` (or at the same second).
    ``basket_user`` / ``basket_time`` describe each basket; the user's history for a pair
    is what they bought strictly before ``basket_time`` (the basket's first purchase), so
    the basket itself never leaks into it.
    """

    seed: NDArray[np.int64]
    positive: NDArray[np.int64]
    group: NDArray[np.int64]
    basket_user: NDArray[np.int64]
    basket_time: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.seed)

    @classmethod
    def of(cls, dataset: Dataset, *, max_basket: int = 30, limit: int | None = None) -> Triples:
        """Every ordered pair of every basket of 2..``max_basket`` items; with ``limit``,
        the pairs of the most recent baskets up to about that many pairs."""
        b = dataset.baskets
        sizes = b.sizes()
        groups = np.flatnonzero((sizes >= 2) & (sizes <= max_basket))
        n = sizes[groups]
        n_pairs = n * (n - 1) // 2
        if limit is not None and n_pairs.sum() > limit:
            # baskets are in time order: keep the newest whose pairs fit
            keep_from = np.searchsorted(np.cumsum(n_pairs[::-1]), limit, side="right")
            groups, n, n_pairs = groups[-keep_from:], n[-keep_from:], n_pairs[-keep_from:]
            if keep_from == 0:
                groups, n, n_pairs = groups[:0], n[:0], n_pairs[:0]
        starts = b.indptr[groups]
        g = np.repeat(np.arange(len(groups)), n_pairs)
        within = np.arange(int(n_pairs.sum())) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
        # the within-th pair (i < j) of a group of size s, enumerated row by row
        s = n[g]
        i = np.zeros_like(within)
        j = np.zeros_like(within)
        for size in np.unique(s):
            sel = s == size
            rows = np.arange(size - 1)
            cum = np.cumsum(size - 1 - rows)
            ii = np.searchsorted(cum, within[sel], side="right")
            prev = np.where(ii > 0, cum[np.maximum(ii - 1, 0)], 0)
            i[sel] = ii
            j[sel] = ii + 1 + within[sel] - prev
        return cls(
            seed=b.item[starts[g] + i].astype(np.int64),
            positive=b.item[starts[g] + j].astype(np.int64),
            group=g.astype(np.int64),
            basket_user=b.user[groups].astype(np.int64),
            basket_time=b.timestamp[groups].astype(np.int64),
        )

    def batches(self, size: int, rng: np.random.Generator) -> list[NDArray[np.int64]]:
        """Pair indices in batches of about ``size``, whole baskets at a time, random order
        (so each basket's history is encoded once per batch)."""
        if not len(self):
            return []
        rank = rng.permutation(len(self.basket_user))[self.group]
        order = np.argsort(rank, kind="stable")
        cuts = np.arange(size, len(order), size)
        # move each cut to the next basket boundary
        r = rank[order]
        boundary = np.searchsorted(r, r[cuts], side="right") if len(cuts) else cuts
        boundary = np.unique(boundary[boundary < len(order)])
        return [b for b in np.split(order, boundary) if len(b)]


def augment(
    history: NDArray[np.int64],
    length: NDArray[np.int64],
    rng: np.random.Generator,
    *,
    crop_ratio: float,
    reorder_ratio: float,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """One contrastive view of each padded history: a random crop or a random reorder.

    Each row independently (probability 1/2 each) becomes either a *crop* (the
    ``ceil(crop_ratio * n)`` consecutive purchases starting at a random offset) or a
    *reorder* (a random span of ``ceil(reorder_ratio * n)`` consecutive purchases shuffled
    in place). A view is never empty when the history is not, and never longer than it.

    Parameters
    ----------
    history : ndarray of int64, shape (B, H)
        Left-aligned item ids, padded with ``-1``.
    length : ndarray of int64, shape (B,)
    rng : numpy.random.Generator

    Returns
    -------
    view : ndarray of int64, shape (B, H)
    view_length : ndarray of int64, shape (B,)
    """
    bsz, h = history.shape
    length = np.asarray(length, dtype=np.int64)
    pos = np.arange(h)[None, :]
    crop = rng.random(bsz) < 0.5
    # crop
    c_len = np.clip(np.ceil(crop_ratio * length).astype(np.int64), np.minimum(length, 1), length)
    c_start = (rng.random(bsz) * (length - c_len + 1)).astype(np.int64)
    c_idx = np.minimum(c_start[:, None] + pos, h - 1)
    cropped = np.where(pos < c_len[:, None], np.take_along_axis(history, c_idx, axis=1), -1)
    # reorder: keys are the positions, except inside the span where they are random within
    # [start, start + span), so a stable sort shuffles the span and keeps the rest in place
    r_len = np.clip(np.ceil(reorder_ratio * length).astype(np.int64), np.minimum(length, 1), length)
    r_start = (rng.random(bsz) * (length - r_len + 1)).astype(np.int64)
    in_span = (pos >= r_start[:, None]) & (pos < (r_start + r_len)[:, None])
    keys = np.where(in_span, r_start[:, None] + rng.random((bsz, h)) * r_len[:, None], pos)
    keys = np.where(pos < length[:, None], keys, h + pos)  # padding stays at the end
    order = np.argsort(keys, axis=1, kind="stable")
    reordered = np.take_along_axis(history, order, axis=1)
    view = np.where(crop[:, None], cropped, reordered)
    view_len = np.where(crop, c_len, length)
    return view.astype(np.int64), view_len.astype(np.int64)
