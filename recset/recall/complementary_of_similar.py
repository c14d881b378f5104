"""``complementary_of_similar``: the complements of the items whose text is most like the seed's.

A "Gold iPhone 7 32GB" listed yesterday has no co-purchases yet, while the "Silver iPhone 7
32GB" has plenty; the cases and chargers bought with the silver one suit the gold one too.
For a seed with few complementary candidates of its own (fewer than ``min_complements``,
which includes every catalog item without events), this source looks up the seed's
``n_similar`` nearest items in a text-embedding space (title, aspects, category, type, brand;
see :mod:`recset.recall._text`) and returns *their* complements:

``score(c) = sum_s sim(seed, s) * ochiai(s, c)``

over the similar items ``s``: summing rewards complements that many similar items share
(on the synthetic benchmark it beat the max, which ``aggregate="max"`` selects, by 3-8
points of same-family share at top 10). ``ochiai(a, b) = C[a, b] / sqrt(n_a * n_b)`` with ``C`` the
co-purchase signal and ``n_a`` the number of baskets holding ``a``. A seed with complements
of its own is its own nearest neighbour (similarity 1), so its own complements come first.

Only items that have complements ("donors") are put in the Annoy index: a neighbour without
complements contributes nothing. Every item's neighbour table is computed once at fit time,
so :meth:`ComplementaryOfSimilarRecall.recall_many` is pure numpy. Filtering substitutes
out of the answer is the mixer's job, not this source's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset
from recset.recall._base import (
    Candidates,
    RecallBase,
    SourceConfig,
    register_recall,
)
from recset.recall._text import TextEmbeddingConfig, embed_items
from recset.signals import Signals, csr_gather, run_blocks, topk_rows, topk_workers

_log = logging.getLogger(__name__)

_BATCH = 1024  # seeds per block in recall_many: bounds the (seeds, n_similar, k) temporaries
_ROWS = 1 << 16  # rows per block of the fit's row-wise steps
# neighbours asked of Annoy beyond those kept, re-ranked by their exact similarity
_EXTRA_NEIGHBORS = 8
# most (query, neighbour, dimension) float64 entries of one exact rescoring step
_EXACT_ENTRIES = 1 << 20


def neighbor_table(
    vectors: NDArray[np.float32],
    indexed: NDArray[np.bool_],
    queries: NDArray[np.bool_],
    k: int,
    *,
    metric: Literal["angular", "dot"] = "angular",
    n_trees: int = 20,
    search_k: int = -1,
    seed: int = 0,
    exclude_self: bool = False,
    query_vectors: NDArray[np.float32] | None = None,
    exact: bool = False,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The ``k`` approximate nearest indexed rows of every query row, via Annoy (or the
    exact nearest, with ``exact``).

    Query rows with equal query vectors are searched once (unless ``exclude_self``): the
    search is deterministic, so each gets what its own query would return.

    Annoy computes its distances in float32 with the vector instructions it was compiled for
    (``-march=native`` when built from source: AVX-512 on one machine, AVX2 on another), so
    its similarities and its order of near-ties differ between machines in the last bits.
    The similarities returned here are recomputed from ``vectors`` in float64 (numpy's own
    products and sums, rounded once to float32), and each row's neighbours are the ``k``
    best of Annoy's ``k + 8`` nearest by them, ties to the lower row id: the same on every
    machine whenever Annoy's trees and candidate pool are (its ``search_k`` is fixed, so
    asking for 8 more does not change the pool).

    Parameters
    ----------
    vectors : ndarray of float32, shape (n, d)
    indexed : ndarray of bool, shape (n,)
        Rows put in the index (the possible answers).
    queries : ndarray of bool, shape (n,)
        Rows whose neighbours are wanted; other rows stay padded.
    k : int
        Neighbours per row.
    metric : {"angular", "dot"}
        ``"angular"`` reports cosine similarity (``1 - d**2 / 2`` of Annoy's angular
        distance), ``"dot"`` the inner product.
    n_trees, search_k : int
        Annoy's build and search parameters (``search_k=-1``: ``n_trees * k``).
    seed : int
        Annoy's seed; the index is built with one thread so the trees repeat exactly.
    exclude_self : bool
        Leave a row out of its own neighbours.
    query_vectors : ndarray of float32, shape (n, d), optional
        The vector a row searches with (default: its own row of ``vectors``), for
        asymmetric scores such as a complement projection of the seed.
    exact : bool
        Search every indexed row instead of Annoy's trees (``n_trees``, ``search_k`` and
        ``seed`` unused): a query's pool is every row within a float32 rounding margin of
        its ``k + 8``-th best by a BLAS product, re-ranked exactly as above, so the answer
        is the true ``k`` nearest and the same on every machine. It costs a product of the
        queries with every indexed row: for catalogs of up to a few hundred thousand items.

    Returns
    -------
    idx : ndarray of int32, shape (n, k)
        Row ids, most similar first, padded with ``-1``.
    sim : ndarray of float32, shape (n, k)
        Similarities, padded with ``-inf``.
    """
    from annoy import AnnoyIndex  # heavy: imported only when building

    n, d = vectors.shape
    idx = np.full((n, k), -1, dtype=np.int32)
    sim = np.full((n, k), -np.inf, dtype=np.float32)
    members = np.flatnonzero(indexed).astype(np.int32)
    if k == 0 or len(members) == 0:
        return idx, sim
    t0 = time.perf_counter()
    want = k + 1 if exclude_self else k
    ask = want + _EXTRA_NEIGHBORS
    qv = vectors if query_vectors is None else query_vectors
    if exact:
        pool = _ExactPool(vectors, members, qv, ask, metric)
    else:
        index = AnnoyIndex(d, metric)
        index.set_seed(seed)
        # dense ids 0..m-1 inside the index: Annoy allocates max(id) + 1 slots
        for j, row in enumerate(members.tolist()):
            index.add_item(j, vectors[row])
        index.build(n_trees, n_jobs=1)
        get = index.get_nns_by_vector
        # the pool Annoy inspects is fixed by search_k (-1: n_trees * want, as Annoy's
        # default); the extra neighbours asked within it are only there to be re-ranked
        search_k = n_trees * want if search_k < 0 else search_k
    t1 = time.perf_counter()
    # squared norms in float64 (numpy, not BLAS): the exact rescoring's denominators
    sq_norm = np.empty(n, dtype=np.float64)
    for a in range(0, n, _ROWS):
        part = vectors[a : a + _ROWS].astype(np.float64)
        sq_norm[a : a + _ROWS] = (part * part).sum(axis=1)
    rows_all = np.flatnonzero(queries)
    copy_to = copy_from = np.empty(0, dtype=np.int64)
    if not exclude_self:
        # rows with the same query vector get the same answer (the search is deterministic):
        # search once per distinct vector (colour and size variants often share their text)
        first = first_equal_row(qv, rows_all)
        own = first == rows_all
        copy_to, copy_from = rows_all[~own], first[~own]
        rows_all = rows_all[own]

    def block(a: int, b: int) -> None:
        # Annoy releases the GIL while it searches: blocks of queries run on several threads
        rows = rows_all[a:b]
        if exact:
            ids = pool(rows)
        else:
            ids = np.full((len(rows), ask), -1, dtype=np.int64)
            for j, row in enumerate(rows.tolist()):
                got = get(qv[row], ask, search_k)
                ids[j, : len(got)] = got
        found = np.where(ids >= 0, members[np.maximum(ids, 0)], -1)
        if exclude_self:
            found[found == rows[:, None]] = -1
        # exact similarities a few rows at a time (bounded float64 temporaries)
        sub = max(1, _EXACT_ENTRIES // (ids.shape[1] * max(d, 1)))
        for c in range(0, len(rows), sub):
            f = found[c : c + sub]
            s = exact_similarity(vectors, sq_norm, f, qv[rows[c : c + sub]], metric)
            # padding (-1, -inf) sorts last; ties go to the lower row id
            order = np.lexsort((f, -s), axis=1)[:, :k]
            f, s = np.take_along_axis(f, order, 1), np.take_along_axis(s, order, 1)
            idx[rows[c : c + sub], : order.shape[1]] = f
            sim[rows[c : c + sub], : order.shape[1]] = np.where(f >= 0, s, -np.inf)

    step = 4096
    run_blocks(
        block,
        [(a, min(a + step, len(rows_all))) for a in range(0, len(rows_all), step)],
        topk_workers(),
    )
    idx[copy_to] = idx[copy_from]
    sim[copy_to] = sim[copy_from]
    _log.debug(
        "%s: indexed %d items (%d trees) in %.2fs; %d queries, %d distinct (k=%d) in %.2fs",
        "exact" if exact else "annoy",
        len(members),
        0 if exact else n_trees,
        t1 - t0,
        int(queries.sum()),
        len(rows_all),
        k,
        time.perf_counter() - t1,
    )
    return idx, sim


# the margin, relative to the scale of a query's scores, within which a BLAS float32 product
# may differ between machines: rows this close to a query's pool threshold join the pool
_POOL_MARGIN = 1e-5
# most float32 entries of one (queries x indexed rows) product of the exact search
_POOL_ENTRIES = 1 << 24


class _ExactPool:
    """The exact search's candidate pools (:func:`neighbor_table` with ``exact``).

    A query's pool is every indexed row whose float32 score (a BLAS product: cosine of
    unit vectors for ``"angular"``, the inner product for ``"dot"``) is within
    :data:`_POOL_MARGIN` of the ``ask``-th best, ties included: whichever way another
    machine's BLAS rounds, its pool holds the same true nearest rows, which the float64
    re-ranking then orders the same way.
    """

    def __init__(
        self,
        vectors: NDArray[np.float32],
        members: NDArray[np.int32],
        qv: NDArray[np.float32],
        ask: int,
        metric: Literal["angular", "dot"],
    ) -> None:
        self.qv, self.metric = qv, metric
        self.ask = min(ask, len(members))
        v = vectors[members].astype(np.float32)
        norm = np.linalg.norm(v, axis=1)
        if metric == "angular":
            v = v / np.where(norm > 0, norm, 1.0)[:, None]
            self.scale = 1.0
        else:
            self.scale = float(norm.max(initial=0.0))
        self.v_t = np.ascontiguousarray(v.T)

    def __call__(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """Pools of the query ``rows`` as indexed positions (into ``members``), -1 padded."""
        m = self.v_t.shape[1]
        step = max(1, _POOL_ENTRIES // max(m, 1))
        parts = []
        for a in range(0, len(rows), step):
            q = self.qv[rows[a : a + step]].astype(np.float32)
            q_norm = np.linalg.norm(q, axis=1)
            if self.metric == "angular":
                q = q / np.where(q_norm > 0, q_norm, 1.0)[:, None]
                margin = np.full(len(q), _POOL_MARGIN)
            else:
                margin = _POOL_MARGIN * np.maximum(q_norm * self.scale, 1e-30)
            score = q @ self.v_t  # (b, m)
            # a zero query scores 0 against every row: its pool is the first rows, which
            # the re-ranking's ties to the lower id pick anyway
            score[q_norm == 0] = -np.arange(m, dtype=np.float32)
            kth = np.partition(score, m - self.ask, axis=1)[:, m - self.ask]
            r, c = np.nonzero(score >= (kth - margin)[:, None])
            counts = np.bincount(r, minlength=len(q))
            part = np.full((len(q), int(counts.max(initial=0))), -1, dtype=np.int64)
            part[r, np.arange(len(r)) - np.repeat(np.cumsum(counts) - counts, counts)] = c
            parts.append(part)
        width = max((p.shape[1] for p in parts), default=self.ask)
        out = np.full((len(rows), width), -1, dtype=np.int64)
        at = 0
        for p in parts:
            out[at : at + len(p), : p.shape[1]] = p
            at += len(p)
        return out


def exact_similarity(
    vectors: NDArray[np.float32],
    sq_norm: NDArray[np.float64],
    rows: NDArray[np.integer],
    queries: NDArray[np.float32],
    metric: Literal["angular", "dot"],
) -> NDArray[np.float32]:
    """Similarities of ``vectors[rows]`` (B, m) to the ``queries`` (B, d), computed in float64
    and rounded once to float32: the inner product (``"dot"``) or the cosine (``"angular"``;
    0 where either vector is zero, as Annoy's angular distance of 2 says); ``-inf`` where a
    row id is -1. ``sq_norm`` holds the squared norms of ``vectors``' rows. numpy's
    elementwise products and sums, not BLAS, so the bits do not depend on the CPU's vector
    extensions."""
    ok = rows >= 0
    safe = np.where(ok, rows, 0)
    q = queries.astype(np.float64)
    dots = (vectors[safe].astype(np.float64) * q[:, None, :]).sum(axis=2)
    if metric == "angular":
        den = np.sqrt(sq_norm[safe] * (q * q).sum(axis=1)[:, None])
        dots = np.divide(dots, den, out=np.zeros_like(dots), where=den > 0)
    return np.where(ok, dots, -np.inf).astype(np.float32)


def first_equal_row(
    x: NDArray[np.generic], rows: NDArray[np.integer], *, block: int = 1 << 16
) -> NDArray[np.int64]:
    """For each of ``rows``, the first of ``rows`` whose row of ``x`` equals it.

    Rows are grouped by a 64-bit hash of their bytes, and every row is then compared in full
    with the first of its group, so the answer is exact: a hash collision only leaves a row
    as its own first.

    Parameters
    ----------
    x : ndarray, shape (n, d)
    rows : ndarray of int, shape (m,)
        Row ids into ``x``, in the order that decides which is first.
    block : int
        Rows hashed and compared at a time (bounds the temporaries).

    Returns
    -------
    ndarray of int64, shape (m,)
        ``first[j]`` is ``rows[j]`` itself or an earlier entry of ``rows`` with an equal row.
    """
    if x.ndim != 2:
        raise ValueError(f"first_equal_row: x must be 2-D. Got shape {x.shape} instead.")
    rows = np.asarray(rows, dtype=np.int64)
    m = len(rows)
    if m == 0:
        return rows.copy()
    h = np.empty(m, dtype=np.uint64)
    for a in range(0, m, block):
        h[a : a + block] = _row_hashes(np.ascontiguousarray(x[rows[a : a + block]]))
    # return_index gives each hash's first position (numpy sorts stably for it)
    _, first_pos, inverse = np.unique(h, return_index=True, return_inverse=True)
    first = rows[first_pos[inverse]]
    for a in range(0, m, block):
        r, f = rows[a : a + block], first[a : a + block]
        same = np.all(x[r] == x[f], axis=1)
        first[a : a + block] = np.where(same, f, r)
    return first


def _row_hashes(part: NDArray[np.generic]) -> NDArray[np.uint64]:
    """A 64-bit hash of the bytes of each row of a contiguous 2-D array."""
    row_bytes = part.shape[1] * part.itemsize
    unit = np.uint32 if row_bytes % 4 == 0 else np.uint8
    words = part.view(unit)
    mult = np.random.default_rng(0x5EED).integers(0, 1 << 63, size=words.shape[1], dtype=np.uint64)
    mult |= np.uint64(1)  # odd multipliers
    # integer arithmetic wraps modulo 2**64
    return (words.astype(np.uint64) * mult).sum(axis=1, dtype=np.uint64)


def aggregate_candidates(
    seeds: NDArray[np.int32],
    item: NDArray[np.int32],
    score: NDArray[np.float32],
    n: int,
    *,
    how: Literal["max", "sum"] = "max",
) -> Candidates:
    """Merge duplicate items per row (max or sum of scores) and keep the top ``n``.

    Parameters
    ----------
    seeds : ndarray of int32, shape (B,)
        Each row's seed, never returned as its own candidate.
    item : ndarray of int32, shape (B, m)
        Candidate ids, ``-1`` where empty; may repeat within a row.
    score : ndarray of float32, shape (B, m)
    n : int

    Returns
    -------
    Candidates of shape (B, n); ties broken by the lower item id.
    """
    valid = (item >= 0) & (item != seeds[:, None]) & np.isfinite(score)
    rows, cols = np.nonzero(valid)
    return aggregate_entries(len(seeds), rows, item[rows, cols], score[rows, cols], n, how=how)


def aggregate_entries(
    n_rows: int,
    rows: NDArray[np.integer],
    item: NDArray[np.integer],
    score: NDArray[np.floating],
    n: int,
    *,
    how: Literal["max", "sum"] = "max",
) -> Candidates:
    """:func:`aggregate_candidates` of entries given as flat ``(row, item, score)`` arrays.

    ``rows`` must be non-decreasing; every entry counts (none is the row's seed, none is
    padding). Sums are taken in the order the entries are given.
    """
    out = Candidates.empty(n_rows, n)
    if len(rows) == 0 or n == 0:
        return out
    rows = np.asarray(rows, dtype=np.int64)
    it = np.asarray(item, dtype=np.int64)
    sc = np.asarray(score).astype(np.float64)
    key = rows * (int(it.max()) + 1) + it
    if how == "sum":
        # a stable sort keeps each key's entries in their order, so the sums are those of
        # np.bincount over the entries as given
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.r_[True, key[1:] != key[:-1]]
        agg = np.bincount(np.cumsum(first) - 1, weights=sc[order])
        rows, it, sc = rows[order][first], it[order][first], agg
    else:
        order = np.lexsort((-sc, key))
        key, rows, it, sc = key[order], rows[order], it[order], sc[order]
        first = np.r_[True, key[1:] != key[:-1]]
        rows, it, sc = rows[first], it[first], sc[first]
    # entries are sorted by (row, item) here and lexsort is stable: ties keep the lower item
    order = np.lexsort((-sc, rows))
    rows, it, sc = rows[order], it[order], sc[order]
    counts = np.bincount(rows, minlength=n_rows)
    pos = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = pos < n
    out.item[rows[keep], pos[keep]] = it[keep]
    out.score[rows[keep], pos[keep]] = sc[keep]
    return out


def _topk_csr(
    m: sp.csr_matrix, k: int
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.float32]]:
    """:func:`~recset.signals.topk_rows` of ``m`` as CSR arrays ``(indptr, idx, val)``.

    Rows are taken a block at a time, so no padded ``(n_rows, k)`` table exists: most items
    have far fewer than ``k`` complements.
    """
    n = m.shape[0]
    counts = np.minimum(np.diff(m.indptr), k)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    idx = np.empty(int(indptr[-1]), dtype=np.int32)
    val = np.empty(int(indptr[-1]), dtype=np.float32)
    for a in range(0, n, _ROWS):
        b_idx, b_val = topk_rows(m[a : a + _ROWS], k)
        keep = b_idx >= 0
        idx[indptr[a] : indptr[min(a + _ROWS, n)]] = b_idx[keep]
        val[indptr[a] : indptr[min(a + _ROWS, n)]] = b_val[keep]
    return indptr, idx, val


class ComplementaryOfSimilarConfig(SourceConfig):
    """Config of :class:`ComplementaryOfSimilarRecall`.

    Attributes
    ----------
    signal : {"co_purchase", "co_purchase_only"}
        The complement signal: all co-purchases, or the directed co-purchases of pairs never
        co-viewed (cleaner, sparser).
    min_complements : int
        Answer only for seeds with fewer complements of their own than this (``0``: answer
        for every seed). Items without events always qualify.
    n_similar : int
        Similar items (by text) whose complements are pooled.
    min_similarity : float
        Similar items below this cosine similarity are ignored.
    complements_per_item : int
        Complements kept per similar item (the best by Ochiai score).
    min_pair_count : float
        Co-purchase pairs seen (decayed count) fewer times than this are not complements.
    aggregate : {"max", "sum"}
        How the scores of one candidate proposed by several similar items combine.
    search : {"annoy", "exact"}
        How the similar items are found: Annoy's approximate search (``n_trees``,
        ``search_k``, ``seed``), or every item with complements searched (the true nearest,
        and the same lists on every machine; Annoy's trees depend on the vector
        instructions it was compiled for). Exact search costs a product of the seeds with
        every item with complements: for catalogs of up to a few hundred thousand items.
    n_trees : int
        Trees of the Annoy index (more: a slower build and more memory).
    search_k : int
        Annoy's ``search_k``, the nodes a query inspects (more: better neighbours, slower
        queries; ``-1``: ``n_trees * n_similar``). With 8 trees and 600 the neighbours
        reach the exact search's 20 nearest at least as often as 20 trees and 400 did,
        at the same query cost and under half the build time (docs/benchmarks.md).
    max_candidates : int
        Longest list returned per seed.
    seed : int
        Seed of the Annoy index.
    embedding : TextEmbeddingConfig
        How the item text embeddings are trained.
    """

    signal: Literal["co_purchase", "co_purchase_only"] = "co_purchase"
    min_complements: int = Field(10, ge=0)
    n_similar: int = Field(20, ge=1)
    min_similarity: float = Field(0.3, ge=0.0, le=1.0)
    complements_per_item: int = Field(50, ge=1)
    min_pair_count: float = Field(1.0, ge=0)
    aggregate: Literal["max", "sum"] = "sum"
    search: Literal["annoy", "exact"] = "annoy"
    n_trees: int = Field(8, ge=1)
    search_k: int = Field(600, ge=-1)
    max_candidates: int = Field(200, ge=1)
    seed: int = 0
    embedding: TextEmbeddingConfig = TextEmbeddingConfig()


@register_recall("complementary_of_similar")
class ComplementaryOfSimilarRecall(RecallBase):
    """Complements of the seed's most similar items (by text), for seeds with few of their own.

    Fitted state
    ------------
    neighbors_ : ndarray of int32, shape (n_items, n_similar)
        Most similar items that have complements, most similar first, padded with -1.
    neighbor_sim_ : ndarray of float32, shape (n_items, n_similar)
        Their cosine similarity, padded with -inf.
    complement_indptr_ : ndarray of int64, shape (n_items + 1,)
        Row pointers of the complement lists (CSR): item ``i``'s are entries
        ``complement_indptr_[i]`` to ``complement_indptr_[i + 1] - 1``.
    complement_items_ : ndarray of int32, shape (complement_indptr_[-1],)
        Each item's best available complements by Ochiai score (at most
        ``complements_per_item``), best first, ties by the lower item id.
    complement_scores_ : ndarray of float32, same shape
        Their Ochiai scores.
    n_complements_ : ndarray of int32, shape (n_items,)
        Number of (available) complements of each item before the cut.

    Examples
    --------
    >>> from recset.data import Dataset
    >>> from recset.data.synthetic import SyntheticConfig, generate
    >>> syn = generate(SyntheticConfig(n_items=300, seed=1))
    >>> ds = Dataset.from_frames(syn.catalog, syn.events)
    >>> src = ComplementaryOfSimilarRecall().fit(ds)
    >>> src.recall_many(np.array([0, -1], dtype=np.int32), 5).item.shape
    (2, 5)
    """

    signals = ("co_purchase",)

    Config: ClassVar[type[SourceConfig]] = ComplementaryOfSimilarConfig
    config: ComplementaryOfSimilarConfig
    _state: ClassVar[tuple[str, ...]] = (
        "neighbors_",
        "neighbor_sim_",
        "complement_indptr_",
        "complement_items_",
        "complement_scores_",
        "n_complements_",
    )

    @classmethod
    def _upgrade_state(cls, arrays: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
        """Engines saved before the complements were CSR rows hold them as padded tables
        ``complements_`` / ``complement_score_`` (n_items, complements_per_item; -1 pads the
        end of a row): the same rows, read into the CSR arrays."""
        if "complement_indptr_" in arrays or "complements_" not in arrays:
            return arrays
        items = arrays.pop("complements_")
        scores = arrays.pop("complement_score_", None)
        if scores is None or scores.shape != items.shape or items.ndim != 2:
            arrays["complements_"] = items  # not the older layout: let the load say so
            return arrays
        keep = items >= 0
        indptr = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=indptr[1:])
        arrays["complement_indptr_"] = indptr
        arrays["complement_items_"] = items[keep].astype(np.int32, copy=False)
        arrays["complement_scores_"] = scores[keep].astype(np.float32, copy=False)
        return arrays

    def _complement_matrix(self, dataset: Dataset, signals: Signals) -> sp.csr_matrix:
        """Ochiai-normalised complement scores, csr float32 (n_items, n_items)."""
        cfg = self.config
        n = dataset.n_items
        c = getattr(signals, cfg.signal).tocsr().astype(np.float32, copy=True)
        if cfg.min_pair_count > 0:
            c.data[c.data < cfg.min_pair_count] = 0.0
        # unavailable items are never proposed
        c = (c @ sp.diags(dataset.catalog.available.astype(np.float32))).tocsr()
        c.eliminate_zeros()
        baskets = np.asarray(dataset.baskets.matrix(n).sum(axis=0)).ravel().astype(np.float64)
        rows = np.repeat(np.arange(n), np.diff(c.indptr))
        denom = np.sqrt(np.maximum(baskets[rows] * baskets[c.indices], 1.0))
        c.data = (c.data / denom).astype(np.float32)
        return c

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        """Embed every item's text, index the items with complements, and precompute tables.

        Parameters
        ----------
        dataset : Dataset
        signals : Signals, optional
            Shared signals of ``dataset`` (computed here when omitted).
        fitted : mapping, optional
            Unused.

        Returns
        -------
        self
        """
        cfg = self.config
        signals = self._signals(dataset, signals)
        t0 = time.perf_counter()
        comp = self._complement_matrix(dataset, signals)
        n_comp = np.diff(comp.indptr).astype(np.int32)
        comp_ptr, comp_idx, comp_val = _topk_csr(comp, cfg.complements_per_item)
        del comp
        t1 = time.perf_counter()
        vectors = embed_items(dataset, cfg.embedding)
        t2 = time.perf_counter()
        has_vec = np.zeros(len(vectors), dtype=bool)
        for a in range(0, len(vectors), _ROWS):  # no (n_items, dim) temporary
            has_vec[a : a + _ROWS] = np.any(vectors[a : a + _ROWS] != 0, axis=1)
        donors = has_vec & (n_comp > 0)
        queries = has_vec & ((n_comp < cfg.min_complements) | (cfg.min_complements == 0))
        nb, sim = neighbor_table(
            vectors,
            donors,
            queries,
            cfg.n_similar,
            metric="angular",
            n_trees=cfg.n_trees,
            search_k=cfg.search_k,
            seed=cfg.seed,
            exact=cfg.search == "exact",
        )
        weak = sim < cfg.min_similarity
        nb[weak] = -1
        sim[weak] = -np.inf
        t3 = time.perf_counter()
        self.neighbors_ = nb
        self.neighbor_sim_ = sim
        self.complement_indptr_ = comp_ptr
        self.complement_items_ = comp_idx
        self.complement_scores_ = comp_val
        self.n_complements_ = n_comp
        _log.debug(
            "complementary_of_similar: complements %.2fs, embeddings %.2fs, "
            "annoy + neighbour table %.2fs",
            t1 - t0,
            t2 - t1,
            t3 - t2,
        )
        _log.info(
            "complementary_of_similar: %d donors, %d seeds answered (%d with neighbours)",
            int(donors.sum()),
            int(queries.sum()),
            int((nb[:, 0] >= 0).sum()),
        )
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Complements of each seed's similar items, best first.

        Parameters
        ----------
        seeds : ndarray of int32, shape (B,)
            Dense item ids; ``-1`` (unknown to the dataset) gets an empty row.
        n : int
            Width of the result (at most ``max_candidates`` real entries per row).

        Returns
        -------
        Candidates of shape (B, n)
        """
        self._check_fitted()
        seeds = np.asarray(seeds, dtype=np.int32).ravel()
        cfg = self.config
        out = Candidates.empty(len(seeds), n)
        n_items = len(self.n_complements_)
        answer = (seeds >= 0) & (seeds < n_items)
        if cfg.min_complements > 0:
            safe = np.where(answer, seeds, 0)
            answer &= self.n_complements_[safe] < cfg.min_complements
        rows = np.flatnonzero(answer)
        width = min(n, cfg.max_candidates)
        for start in range(0, len(rows), _BATCH):
            r = rows[start : start + _BATCH]
            s = seeds[r]
            nb = self.neighbors_[s]  # (b, S)
            # every (seed, similar item) pair, then each similar item's complements: flat
            # entries in (seed, similar item, rank) order
            pair_row, pair_col = np.nonzero(nb >= 0)
            similar = nb[pair_row, pair_col]
            at = csr_gather(self.complement_indptr_, similar)
            per_pair = self.complement_indptr_[similar + 1] - self.complement_indptr_[similar]
            entry_row = np.repeat(pair_row, per_pair)
            item = self.complement_items_[at]
            score = np.repeat(self.neighbor_sim_[s][pair_row, pair_col], per_pair)
            score *= self.complement_scores_[at]
            own = item != s[entry_row]  # the seed is never its own candidate
            cand = aggregate_entries(
                len(r), entry_row[own], item[own], score[own], width, how=cfg.aggregate
            )
            out.item[r, :width] = cand.item
            out.score[r, :width] = cand.score
        return out
