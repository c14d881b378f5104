"""Shared machinery of the behaviour-based pair sources (co_purchase, co_view, ...).

A pair source scores (seed, candidate) pairs from how often they occur in the same group
(basket, session or user history), normalised with the Ochiai coefficient
``C[a, b] / sqrt(n_a * n_b)`` (cosine on binary group vectors), keeps pairs above a minimum
support and similarity, and stores the top candidates of every seed.

At product level, items of one ``product_id`` are pooled into one unit before counting, and
every candidate product is served as its representative item: its most viewed available item
(then most bought), as in the marketplace design (shared/seeds/recall-sets-at-marketplace-scale).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset
from recset.progress import available_memory
from recset.recall._base import Candidates, RecallBase, SourceConfig, compact
from recset.signals import (
    TOPK_BLOCK_ENTRIES,
    Signals,
    csr_gather,
    row_blocks,
    run_blocks,
    topk_rows,
    topk_workers,
)

_log = logging.getLogger(__name__)


class PairConfig(SourceConfig):
    """Settings shared by the pair sources.

    Attributes
    ----------
    level : {"auto", "item", "product"}
        Count at item level, at product level (items pooled by ``product_id``), or product
        level when the catalog has multi-item products ("auto").
    min_support : float
        Pairs seen in fewer (decayed) groups than this are dropped.
    similarity : {"ochiai", "confidence", "asymmetric_cosine"}
        ``ochiai``: ``C[a,b] / sqrt(n_a n_b)`` (cosine of binary group vectors; favours
        specific pairs); ``confidence``: ``C[a,b] / n_a``, the share of the seed's groups that
        also hold the candidate (favours popular candidates: "frequently bought together");
        ``asymmetric_cosine``: ``C[a,b] / (n_a^alpha n_b^(1-alpha))``, between the two.
    alpha : float
        Exponent of ``asymmetric_cosine`` (0.5 is Ochiai, 1 is confidence).
    min_similarity : float
        Pairs with a lower similarity are dropped.
    max_candidates : int
        Candidates kept per seed.
    """

    level: Literal["auto", "item", "product"] = "auto"
    min_support: float = Field(1.0, ge=0)
    similarity: Literal["ochiai", "confidence", "asymmetric_cosine"] = "confidence"
    alpha: float = Field(0.5, ge=0, le=1)
    min_similarity: float = Field(0.0, ge=0, le=1)
    max_candidates: int = Field(100, ge=1, le=10_000)


def asymmetric_cosine(
    counts: sp.csr_matrix, occurrences: NDArray[np.floating], alpha: float
) -> sp.csr_matrix:
    """``counts[a, b] / (occ[a]**alpha * occ[b]**(1 - alpha))`` on the pattern of ``counts``."""
    occ = np.asarray(occurrences, dtype=np.float64)
    pos = occ > 0
    left = np.zeros(len(occ))
    right = np.zeros(len(occ))
    left[pos] = occ[pos] ** -alpha
    right[pos] = occ[pos] ** -(1.0 - alpha)
    out = (sp.diags(left.astype(np.float32)) @ counts @ sp.diags(right.astype(np.float32))).tocsr()
    out = out.astype(np.float32)
    np.minimum(out.data, 1.0, out=out.data)
    return out


def ochiai(counts: sp.csr_matrix, occurrences: NDArray[np.floating]) -> sp.csr_matrix:
    """``counts[a, b] / sqrt(occ[a] * occ[b])`` on the sparsity pattern of ``counts``."""
    inv = np.zeros(len(occurrences), dtype=np.float32)
    pos = occurrences > 0
    inv[pos] = 1.0 / np.sqrt(occurrences[pos]).astype(np.float32)
    d = sp.diags(inv)
    out = (d @ counts @ d).tocsr().astype(np.float32)
    # rounding can push a self-normalised value a hair above 1
    np.minimum(out.data, 1.0, out=out.data)
    return out


def units_of(dataset: Dataset, level: str) -> tuple[NDArray[np.int32], int]:
    """Map items to counting units: their product (level "product") or themselves.

    Returns ``(unit_of_item (n_items,), n_units)``. Items without a product are units of
    their own. ``level="auto"`` pools by product when some product has several items.
    """
    n = dataset.n_items
    prod = dataset.catalog.product
    if level == "auto":
        has = prod[prod >= 0]
        level = "product" if len(has) and np.bincount(has).max() > 1 else "item"
    if level == "item" or not (prod >= 0).any():
        return np.arange(n, dtype=np.int32), n
    n_prod = len(dataset.products)
    solo = prod < 0
    unit = prod.astype(np.int64).copy()
    unit[solo] = n_prod + np.arange(int(solo.sum()))
    # renumber densely (products with no item in this catalog disappear)
    uniq, dense = np.unique(unit, return_inverse=True)
    return dense.astype(np.int32), len(uniq)


def representatives(
    unit_of_item: NDArray[np.int32],
    n_units: int,
    views: NDArray[np.floating],
    purchases: NDArray[np.floating],
    available: NDArray[np.bool_],
) -> NDArray[np.int32]:
    """The item that stands for each unit: available first, then most viewed, most bought."""
    n = len(unit_of_item)
    order = np.lexsort((np.arange(n), -purchases, -views, ~available, unit_of_item))
    u_sorted = unit_of_item[order]
    first = np.r_[True, u_sorted[1:] != u_sorted[:-1]]
    rep = np.full(n_units, -1, dtype=np.int32)
    rep[u_sorted[first]] = order[first]
    return rep


class PairRecall(RecallBase):
    """Base of the pair sources: subclasses say which counts to read in :meth:`_counts`.

    Fitted state: ``unit_of_item_`` (n_items,), ``rep_`` (n_units,) representative item of each
    unit, and each unit's similar units best first as CSR rows (most units have far fewer than
    ``max_candidates``): ``indptr_`` (n_units + 1,), ``neighbors_`` (unit ids) and ``scores_``
    (similarities), both of shape (indptr_[-1],).
    """

    Config: ClassVar[type[SourceConfig]] = PairConfig
    config: PairConfig
    basis = "behaviour"
    _state: ClassVar[tuple[str, ...]] = (
        "unit_of_item_",
        "rep_",
        "indptr_",
        "neighbors_",
        "scores_",
    )
    #: whether the source may count at product level
    product_level: ClassVar[bool] = True

    def _groups(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]] | None:
        """(group x unit binary matrix, group weights) when the counts are ``G^T diag(w) G``:
        the similarity is then computed in row blocks (see :func:`pair_topk`). None: the
        source gives its counts in :meth:`_counts`."""
        return None

    def _counts(
        self, signals: Signals, unit_of_item: NDArray[np.int32], n_units: int
    ) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
        """(unit x unit counts with zero diagonal, occurrences per unit)."""
        raise NotImplementedError

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        sig = self._signals(dataset, signals)
        unit, n_units = self.units(dataset)
        cfg = self.config
        alpha = self.alpha
        min_value = self.min_value
        groups = self._groups(sig, unit, n_units)
        if groups is not None:
            neighbors, scores = pair_topk(
                *groups,
                cfg.max_candidates,
                alpha=alpha,
                min_support=cfg.min_support,
                min_value=min_value,
                max_memory=sig.max_memory,
            )
        else:
            counts, occ = self._counts(sig, unit, n_units)
            if cfg.min_support > 0:
                counts = counts.multiply(counts >= cfg.min_support).tocsr()
            if cfg.similarity == "ochiai":
                sim = ochiai(counts, occ)
            else:
                sim = asymmetric_cosine(counts, occ, alpha)
            del counts
            neighbors, scores = topk_rows(sim, cfg.max_candidates, min_value=min_value)
        return self.fit_topk(dataset, neighbors, scores, sig)

    @property
    def alpha(self) -> float:
        """Exponent of the seed's occurrences in the similarity (see :class:`PairConfig`)."""
        return {"ochiai": 0.5, "confidence": 1.0}.get(self.config.similarity, self.config.alpha)

    @property
    def min_value(self) -> float:
        """The lowest similarity kept."""
        return max(self.config.min_similarity, 1e-12)

    def units(self, dataset: Dataset) -> tuple[NDArray[np.int32], int]:
        """``(unit_of_item, n_units)`` this source counts in (see :func:`units_of`)."""
        return units_of(dataset, self.config.level if self.product_level else "item")

    def fit_topk(
        self,
        dataset: Dataset,
        neighbors: NDArray[np.int32],
        scores: NDArray[np.float32],
        signals: Signals | None = None,
    ) -> Self:
        """Set the fitted state from each unit's top candidates computed elsewhere.

        ``neighbors`` (int32, padded with -1) and ``scores`` (float32) have shape
        ``(n_units, k)``, best first, units as :meth:`units` numbers them: what :meth:`fit`
        computes, or the same rows computed on Spark (``recset.spark``).
        """
        sig = self._signals(dataset, signals)
        unit, n_units = self.units(dataset)
        if neighbors.shape != scores.shape or neighbors.shape[0] != n_units:
            raise ValueError(
                f"{self.name}: the top-k rows must have shape ({n_units}, k) for both arrays. "
                f"Got {neighbors.shape} and {scores.shape} instead."
            )
        self.unit_of_item_ = unit
        self.rep_ = representatives(
            unit, n_units, sig.item_views, sig.item_purchases, dataset.catalog.available
        )
        # rows are padded at their end: the valid entries, row by row, are the CSR data
        valid = neighbors >= 0
        self.indptr_ = np.r_[0, np.cumsum(valid.sum(axis=1))].astype(np.int64)
        self.neighbors_ = neighbors[valid]
        self.scores_ = scores[valid]
        del neighbors, scores, valid
        _log.info(
            "%s: %d units, %d pairs kept, %.1f%% of units with a candidate",
            self.name,
            n_units,
            len(self.neighbors_),
            100.0 * float((np.diff(self.indptr_) > 0).mean()) if n_units else 0.0,
        )
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        self._check_fitted()
        seeds = np.asarray(seeds, dtype=np.int32)
        known = (seeds >= 0) & (seeds < len(self.unit_of_item_))
        rows = self.unit_of_item_[np.where(known, seeds, 0)]
        counts = self.indptr_[rows + 1] - self.indptr_[rows]
        width = max(int(counts.max()) if len(counts) else 0, 1)
        at = csr_gather(self.indptr_, rows)
        r = np.repeat(np.arange(len(rows)), counts)
        c = np.arange(len(at)) - np.repeat(np.cumsum(counts) - counts, counts)
        nb = np.full((len(rows), width), -1, dtype=np.int32)
        sc = np.full((len(rows), width), -np.inf, dtype=np.float32)
        nb[r, c] = self.neighbors_[at]
        sc[r, c] = self.scores_[at]
        item = np.where(nb >= 0, self.rep_[np.maximum(nb, 0)], -1)
        item[~known] = -1
        score = np.where(item >= 0, sc, -np.inf).astype(np.float32)
        return compact(item, score, (item >= 0) & (item != seeds[:, None]), n)


def unit_groups(
    signals: Signals, kind: str, unit_of_item: NDArray[np.int32], n_units: int
) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
    """Group x unit binary matrix (items pooled into units) and the group weights."""
    g, w = signals.group_matrix(kind)
    if n_units != len(unit_of_item) or not np.array_equal(
        unit_of_item, np.arange(len(unit_of_item))
    ):
        pool = sp.csr_matrix(
            (np.ones(len(unit_of_item), np.float32), (np.arange(len(unit_of_item)), unit_of_item)),
            shape=(len(unit_of_item), n_units),
        )
        g = (g @ pool).tocsr()
        g.data[:] = 1.0
    return g, w


def cooccurrence_counts(
    g: sp.csr_matrix, w: NDArray[np.float32]
) -> tuple[sp.csr_matrix, NDArray[np.float32]]:
    """``G^T diag(w) G`` with a zero diagonal, and the weighted occurrence of each column."""
    usable = w * (np.diff(g.indptr) >= 2)
    weighted = (sp.diags(usable.astype(np.float32)) @ g).tocsr()
    counts = (g.T @ weighted).tocsr().astype(np.float32)
    counts.setdiag(0)
    counts.eliminate_zeros()
    occ = np.asarray(g.T @ w, dtype=np.float32).ravel()
    return counts, occ


def pair_topk(
    g: sp.csr_matrix,
    w: NDArray[np.float32],
    k: int,
    *,
    alpha: float = 0.5,
    min_support: float = 0.0,
    min_value: float = 1e-12,
    max_memory: int | None = None,
    block_pairs: int | None = None,
    workers: int | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Top-``k`` similar units of every unit, computed a block of rows at a time.

    The counts are those of :func:`cooccurrence_counts` (``G^T diag(w) G`` over groups of
    two or more units, zero diagonal), pairs below ``min_support`` are dropped, and the
    similarity is ``counts[a, b] / (occ[a]**alpha * occ[b]**(1 - alpha))`` capped at 1
    (``alpha=0.5``: Ochiai, as :func:`ochiai`; 1: confidence), with the same float32
    arithmetic, so the answer is :func:`~recset.signals.topk_rows` of the full matrix. The
    full unit x unit matrix never exists: each block of rows is multiplied, normalised and
    cut to its top ``k`` on its own (on :func:`~recset.signals.topk_workers` threads), its
    size bounded by the number of pairs the block can produce: ``block_pairs``, else what
    ``max_memory`` leaves free (about 64 bytes a pair), else
    :data:`~recset.signals.TOPK_BLOCK_ENTRIES`.

    Returns
    -------
    idx : ndarray of int32, shape (n_units, k)
        Unit ids, best first, padded with -1 (ties: the lower id).
    val : ndarray of float32, shape (n_units, k)
        Similarities, padded with -inf.
    """
    g = g.tocsr()
    n = g.shape[1]
    idx = np.full((n, k), -1, dtype=np.int32)
    val = np.full((n, k), -np.inf, dtype=np.float32)
    usable = w * (np.diff(g.indptr) >= 2)
    gw = (sp.diags(usable.astype(np.float32)) @ g).tocsr()
    occ = np.asarray(g.T @ w, dtype=np.float32).ravel()
    gt = g.T.tocsr()
    if gt.nnz == 0 or k == 0:
        return idx, val
    left, right = similarity_scales(occ, alpha)
    # pairs each row can produce (an upper bound on its product's stored entries)
    sizes = np.diff(gw.indptr) * (usable > 0)
    cost = np.asarray(gt @ sizes.astype(np.float64)).ravel().astype(np.int64) + 1
    workers = topk_workers() if workers is None else workers
    budget = available_memory(max_memory)
    if block_pairs is not None:
        max_pairs = block_pairs
    elif budget is None:
        max_pairs = TOPK_BLOCK_ENTRIES
    else:  # ~64 bytes per pair while a block is multiplied, normalised and sorted
        max_pairs = max(budget // 2 // workers // 64, 1 << 16)
    col_bits = max(int(n - 1).bit_length(), 1)
    blocks = row_blocks(cost, int(max_pairs), 1 << max(32 - col_bits, 0))

    def block(a: int, b: int) -> None:
        c = (gt[a:b] @ gw).tocsr()
        rows = np.arange(a, b, dtype=np.int64)
        bi, bv = rows_topk(c, rows, left, right, k, min_support=min_support, min_value=min_value)
        idx[a:b] = bi
        val[a:b] = bv

    run_blocks(block, blocks, workers)
    return idx, val


def similarity_scales(
    occ: NDArray[np.float32], alpha: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(left, right) float32 factors of ``counts[a, b] * left[a] * right[b]``: the
    asymmetric cosine ``counts / (occ[a]**alpha * occ[b]**(1 - alpha))`` (0 where occ is 0)."""
    n = len(occ)
    pos = occ > 0
    left = np.zeros(n, dtype=np.float32)
    right = np.zeros(n, dtype=np.float32)
    if alpha == 0.5:
        left[pos] = 1.0 / np.sqrt(occ[pos]).astype(np.float32)
        return left, left
    occ64 = occ.astype(np.float64)
    left[pos] = (occ64[pos] ** -alpha).astype(np.float32)
    right[pos] = (occ64[pos] ** -(1.0 - alpha)).astype(np.float32)
    return left, right


def rows_topk(
    counts: sp.csr_matrix,
    rows: NDArray[np.int64],
    left: NDArray[np.float32],
    right: NDArray[np.float32],
    k: int,
    *,
    min_support: float,
    min_value: float,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Top-``k`` similarities of some rows of a count matrix.

    ``counts`` holds the count rows of units ``rows`` (shape (len(rows), n_units)); pairs
    below ``min_support`` (when positive) and the diagonal are dropped, the rest scaled by
    ``left[row] * right[col]`` in float32 and capped at 1, as :func:`pair_topk` does.
    """
    c = counts.tocsr()
    n = c.shape[1]
    data = c.data.astype(np.float32, copy=False)
    local = np.repeat(np.arange(len(rows)), np.diff(c.indptr))
    keep = c.indices != rows[local]
    if min_support > 0:
        keep &= data >= min_support
    data = data[keep]
    r, cols = local[keep], c.indices[keep]
    data = data * left[rows[r]] * right[cols]
    np.minimum(data, 1.0, out=data)
    per_row = np.bincount(r, minlength=len(rows))
    m = sp.csr_matrix((data, cols, np.r_[0, np.cumsum(per_row)]), shape=(len(rows), n))
    return topk_rows(m, k, min_value=min_value, max_entries=1 << 62, workers=1)
