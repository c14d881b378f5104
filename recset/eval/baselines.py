"""Baselines for the backtest, fitted on the training part only, scored in batch.

Every baseline is a :class:`~recset.eval.backtest.System` of kind ``"baseline"`` built by a
``NAME_system(train, **params)`` function:

- ``popular`` / ``popular_in_category``: global popularity, and popularity in the seed's
  category (filled up globally);
- ``item_knn``: implicit's ``CosineRecommender`` on the user x item purchase counts;
- ``als``: implicit's ALS item factors (confidence ``1 + alpha * count``), cosine neighbours;
- ``association_rules``: single-antecedent rules ``seed -> b`` over training baskets, ranked by
  confidence (or lift);
- ``sar`` / ``sar_lift``: SAR-style user co-occurrence ``C = U^T U`` with Jaccard or lift
  similarity (microsoft/recommenders ``sar_singlenode.py``);
- ``user_repeat``: the user's own most-bought items, and ``user_repeat+cooc``: the same, ties
  broken by basket co-occurrence with the seed, then the seed's co-purchases. Next-basket
  research (Li et al., "A Next Basket Recommendation Reality Check") shows that repeat
  purchases dominate grocery baskets.

Item-to-item baselines precompute each item's top-:data:`K_LIST` list at fit time and serve
it by seed; the personal ones gather each query's user history in one vectorised pass. No
baseline returns the seed, rows are deduplicated and padded with ``-1``, and ``own`` (the
coverage flag) is True when the row holds ``k`` items of the baseline's own.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import PURCHASE, Dataset, promotion_at, promotion_steps
from recset.errors import ConfigError
from recset.eval._systems import Recommender, System
from recset.eval._systems import popular_system as _popular
from recset.recall import RecallBase
from recset.signals import row_blocks, topk_rows

_log = logging.getLogger(__name__)

K_LIST = 50
"""Candidates kept per item at fit time (the backtest asks for at most 20)."""

_CHUNK = 4096


# -- helpers ---------------------------------------------------------------------------------
def _system(name: str, rec: Recommender, *, personal: bool = False) -> System:
    return System(name, "baseline", rec, personal=personal)


def _compact(
    idx: NDArray[np.integer], keep: NDArray[np.bool_], k: int
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Kept entries of each row shifted left (order kept), cut or padded with -1 to ``k``."""
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    out = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(idx, order, 1), -1)
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])), constant_values=-1)
    out = out.astype(np.int32)
    return out, (out >= 0).sum(axis=1) >= k


def _table_system(name: str, table: NDArray[np.int32]) -> System:
    """A baseline serving a precomputed (n_items, K) neighbour table by seed.

    Rows must already exclude the item itself and be deduplicated; unknown seeds (``-1`` or
    out of range) get an empty row.
    """

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        seeds = np.asarray(seeds)
        ok = (seeds >= 0) & (seeds < len(table))
        rows = table[np.where(ok, seeds, 0)]
        return _compact(rows, ok[:, None] & (rows >= 0), k)

    return _system(name, rec)


def _drop_self(nb: NDArray[np.integer], own: NDArray[np.integer]) -> NDArray[np.int32]:
    """Remove each row's own id (and -1s) from a neighbour table, shifting the rest left."""
    return _compact(nb, (nb >= 0) & (nb != own[:, None]), K_LIST)[0]


def _ranked_rows(
    rows: NDArray[np.integer],
    cols: NDArray[np.integer],
    keys: Sequence[NDArray[np.floating]],
    n: int,
) -> NDArray[np.int32]:
    """Per row of ``n``, the top-:data:`K_LIST` columns by ``keys`` (descending, first key
    first); ties on every key go to the lower column id. ``rows`` in ``[0, n)``."""
    table = np.full((n, K_LIST), -1, dtype=np.int32)
    if len(rows) == 0:
        return table
    rows = np.asarray(rows, dtype=np.int64)
    order = np.lexsort((cols, *(-np.asarray(k, np.float64) for k in reversed(keys)), rows))
    r = rows[order]
    starts = np.searchsorted(r, np.arange(n))
    rank = np.arange(len(r)) - starts[r]
    sel = rank < K_LIST
    table[r[sel], rank[sel]] = np.asarray(cols)[order[sel]]
    return table


def _ranked_table(
    rows: NDArray[np.integer],
    cols: NDArray[np.integer],
    keys: Sequence[NDArray[np.floating]],
    n: int,
) -> NDArray[np.int32]:
    """Per row, the top-:data:`K_LIST` columns by ``keys`` (descending, first key first).

    Ties on every key go to the lower column id. Rows are ranked in blocks of at most
    :data:`COOC_BLOCK_ENTRIES` entries, so the temporaries stay bounded.
    """
    rows = np.asarray(rows)
    if len(rows) == 0:
        return np.full((n, K_LIST), -1, dtype=np.int32)
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], np.asarray(cols)[order]
    keys = [np.asarray(k)[order] for k in keys]
    table = np.full((n, K_LIST), -1, dtype=np.int32)
    counts = np.bincount(rows, minlength=n)
    bounds = np.r_[0, np.cumsum(counts)]
    for a, b in row_blocks(counts, COOC_BLOCK_ENTRIES, n):
        lo, hi = int(bounds[a]), int(bounds[b])
        table[a:b] = _ranked_rows(rows[lo:hi] - a, cols[lo:hi], [k[lo:hi] for k in keys], b - a)
    return table


COOC_BLOCK_ENTRIES = 20_000_000
"""Most products (an upper bound on the pairs) of one row block of a co-occurrence matrix:
``U^T U`` of Complete Journey holds 146 million pairs, computed and consumed block by
block so that no baseline holds it whole beyond its compact copy in
:func:`shared_cooccurrence`."""


class CoBlocks:
    """``m^T m`` without its diagonal, in row blocks (``m`` a 0/1 matrix, rows = users or
    baskets), and the diagonal ``d`` (how many rows hold each item).

    Iterating gives ``(lo, block)``: ``block`` is rows ``lo : lo + block.shape[0]`` of the
    co-occurrence matrix, CSR float64 with sorted indices. The blocks are computed from
    ``m`` on each pass (``keep=False``) or once and kept with float32 counts (``keep=True``,
    exact: a count is at most the number of rows of ``m``, below 2**24).
    """

    def __init__(self, m: sp.csr_matrix, *, keep: bool = False) -> None:
        m = m.tocsr().astype(np.float32)
        m.data[:] = 1.0
        self._mt = m.T.tocsr()  # item x row
        self._m = m
        self.n = m.shape[1]
        self.d = np.asarray(self._mt.sum(axis=1), dtype=np.float64).ravel()
        # the products of item i's row: sum of its rows' sizes (an upper bound on its pairs)
        cost = self._mt @ np.diff(m.indptr).astype(np.float64)
        self._blocks = row_blocks(cost.astype(np.int64), COOC_BLOCK_ENTRIES, self.n)
        exact = m.shape[0] < (1 << 24)
        self._kept: list[tuple[int, sp.csr_matrix]] | None = None
        if keep:
            self._kept = []
            for lo, block in self._compute():
                if exact:
                    block = block.astype(np.float32)
                self._kept.append((lo, block))

    def _compute(self) -> Iterator[tuple[int, sp.csr_matrix]]:
        for a, b in self._blocks:
            block = (self._mt[a:b] @ self._m).tocsr().astype(np.float64)
            r = np.repeat(np.arange(b - a), np.diff(block.indptr))
            block.data[block.indices == r + a] = 0.0
            block.eliminate_zeros()
            block.sort_indices()
            yield a, block

    def __iter__(self) -> Iterator[tuple[int, sp.csr_matrix]]:
        if self._kept is None:
            yield from self._compute()
            return
        for lo, block in self._kept:
            out = block.astype(np.float64)
            out.has_sorted_indices = True
            yield lo, out

    def whole(self) -> sp.csr_matrix:
        """The whole matrix (CSR float64, sorted indices): only for small ones."""
        parts = [block for _, block in self]
        if not parts:
            return sp.csr_matrix((0, self.n), dtype=np.float64)
        c = sp.vstack(parts, format="csr").astype(np.float64)
        c.sort_indices()
        return c


def _cooccurrence(m: sp.csr_matrix) -> tuple[sp.csr_matrix, NDArray[np.float64]]:
    """``m^T m`` of a 0/1 matrix without its diagonal (CSR, float64, sorted indices) and
    the diagonal."""
    blocks = CoBlocks(m)
    return blocks.whole(), blocks.d


_COOC_CACHE: list[dict[tuple[int, str], Any]] = []


@contextmanager
def shared_cooccurrence() -> Iterator[None]:
    """Inside this block, the co-occurrence baselines fitted on one dataset share one
    co-occurrence matrix per kind (users or baskets as rows) instead of each computing it.

    The validation grid (:func:`recset.eval.tune_baselines`) fits them many times on the
    same dataset; on Complete Journey ``U^T U`` holds 146 million pairs and takes 20 CPU
    seconds. The shared copy holds float32 counts in row blocks (8 bytes a pair) and every
    baseline reads it block by block. The matrices are dropped when the block ends.
    """
    _COOC_CACHE.append({})
    try:
        yield
    finally:
        _COOC_CACHE.pop()


def _cached_cooccurrence(train: Dataset, unit: Literal["user", "basket"]) -> CoBlocks:
    """:class:`CoBlocks` of ``train``'s 0/1 user x item (or basket x item) matrix, kept and
    shared inside :func:`shared_cooccurrence`, computed on each pass outside it."""
    cache = _COOC_CACHE[-1] if _COOC_CACHE else None
    key = (id(train), unit)
    if cache is not None and key in cache and cache[key][0]() is train:
        return cache[key][1]
    if unit == "user":
        m = train.interactions("purchase", binary=True).tocsr()
    else:
        m = train.baskets.matrix(train.n_items)
    blocks = CoBlocks(m, keep=cache is not None)
    if cache is not None:
        cache[key] = (weakref.ref(train), blocks)
    return blocks


def _check_choice(owner: str, param: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"The {param!r} parameter of {owner} must be one of {list(allowed)}. "
            f"Got {value!r} instead."
        )


def _check_min(owner: str, param: str, value: float, low: float) -> None:
    if not value >= low:
        raise ConfigError(
            f"The {param!r} parameter of {owner} must be a number in [{low}, inf). "
            f"Got {value!r} instead."
        )


# -- fill and hiding -------------------------------------------------------------------------
def popularity(train: Dataset) -> NDArray[np.float64]:
    """Training purchases per item: the tie-breaker of every baseline's own list."""
    return train.item_counts("purchase").astype(np.float64)


def with_fill(system: System, fill: RecallBase) -> System:
    """``system`` with its short rows filled from ``fill`` (a fitted recall source).

    The fill is what the recset systems get: the engine's fallback source (``popular``:
    popular items of the seed's scope, then globally popular ones), in its order, skipping
    the seed and items already in the row. ``own`` is kept from ``system`` (its coverage
    before the fill).
    """

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int, *when: Any
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        seeds = np.asarray(seeds, dtype=np.int32)
        items, own = system.recommend(seeds, users, k, *when)
        short = (items >= 0).sum(axis=1) < k
        if not short.any():
            return items, own
        # the row holds at most k items and the fill skips only the seed, so 2k + 1 suffice
        extra = fill.recall_many(seeds[short], 2 * k + 1).item  # type: ignore[attr-defined]
        both = np.concatenate([items[short], extra], axis=1)
        out = items.copy()
        out[short] = _first_distinct(both, seeds[short], k)
        return out, own

    return replace(system, recommend=rec)


def _first_distinct(
    rows: NDArray[np.integer], seeds: NDArray[np.integer], k: int
) -> NDArray[np.int32]:
    """Per row, the first ``k`` distinct ids other than -1 and the row's seed, in order."""
    big = np.iinfo(np.int32).max
    order = np.argsort(np.where(rows >= 0, rows, big), axis=1, kind="stable")
    s = np.take_along_axis(rows, order, axis=1)
    dup_sorted = np.zeros(rows.shape, dtype=bool)
    dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
    dup = np.empty_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    keep = (rows >= 0) & ~dup & (rows != np.asarray(seeds)[:, None])
    return _compact(rows, keep, k)[0]


def hide_bought(system: System, train: Dataset, name: str | None = None) -> System:
    """``system`` without the items the query's user bought in ``train`` (a personal system).

    The inner system is asked for ``k`` plus the longest history of the batch (at most 500)
    items, so a row keeps ``k`` items after hiding whenever the inner list is long enough.
    The discovery comparison puts a list that hides the user's purchases against baselines
    wrapped in this.
    """
    bought = train.interactions("purchase", binary=True).tocsr()
    bought.sort_indices()
    keys = _pair_keys(bought)
    sizes = np.diff(bought.indptr)

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int, *when: Any
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        users = np.asarray(users)
        ok = (users >= 0) & (users < bought.shape[0])
        longest = int(sizes[users[ok]].max()) if ok.any() else 0
        items, own = system.recommend(seeds, users, k + min(longest, 500), *when)
        q = np.repeat(np.where(ok, users, 0), items.shape[1])
        seen = _lookup(bought, keys, q, np.maximum(items, 0).ravel()).reshape(items.shape) > 0
        seen &= ok[:, None]
        return _compact(items, (items >= 0) & ~seen, k)[0], own

    return System(name or f"{system.name}/new", system.kind, rec, personal=True, timed=system.timed)


# -- popularity ------------------------------------------------------------------------------
def popular_system(train: Dataset, *, half_life_days: float = 30.0) -> System:
    """The globally most-bought items (seed excluded); wraps the backtest's popularity.

    Parameters
    ----------
    half_life_days : float
        Half-life of the decay of purchase counts (0: no decay).
    """
    return _popular(train, "popular", "global", half_life_days=half_life_days)


def popular_in_category_system(train: Dataset, *, half_life_days: float = 30.0) -> System:
    """The most-bought items of the seed's category, filled up with global ones."""
    return _popular(train, "popular_in_category", "category", half_life_days=half_life_days)


# -- implicit --------------------------------------------------------------------------------
def _similar_items_system(name: str, model: object, known: NDArray[np.bool_]) -> System:
    """A baseline serving ``model.similar_items`` among the ``known`` items, by seed.

    The neighbours of each distinct seed of a call are computed then (a backtest asks about
    the seeds of its queries only). Unknown items (never bought in training) get an empty
    row and are never candidates (their factors are untrained).
    """
    ids = np.flatnonzero(known).astype(np.int32)

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        uniq, inv = np.unique(np.asarray(seeds), return_inverse=True)
        table = np.full((len(uniq), K_LIST), -1, dtype=np.int32)
        ok = (uniq >= 0) & (uniq < len(known))
        ok[ok] = known[uniq[ok]]
        asked = uniq[ok].astype(np.int32)
        n = min(K_LIST + 1, len(ids))
        pos = np.flatnonzero(ok)
        for start in range(0, len(asked), _CHUNK):
            chunk = asked[start : start + _CHUNK]
            nb, _ = model.similar_items(chunk, N=n, items=ids)  # type: ignore[attr-defined]
            table[pos[start : start + _CHUNK]] = _drop_self(np.asarray(nb, np.int64), chunk)
        rows = table[inv]
        return _compact(rows, rows >= 0, k)

    return _system(name, rec)


def item_knn_system(train: Dataset, *, unit: Literal["user", "basket"] = "user") -> System:
    """Item-kNN: cosine between items' 0/1 purchase vectors (implicit's ``CosineRecommender``).

    Parameters
    ----------
    unit : {"user", "basket"}
        The rows of the 0/1 matrix: users (who bought the item) or baskets (which held it).

    Each item keeps its :data:`K_LIST` nearest items, ties by popularity, then the lower id.
    """
    from implicit.nearest_neighbours import CosineRecommender

    _check_choice("item_knn_system", "unit", unit, ("user", "basket"))
    if unit == "user":
        m = train.interactions("purchase", binary=True).tocsr().astype(np.float32)
    else:
        m = train.baskets.matrix(train.n_items)
    model = CosineRecommender(K=K_LIST + 1)  # +1: the item is its own nearest neighbour
    with warnings.catch_warnings():
        # implicit 0.7 converts to COO internally and then warns that it expected CSR
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(m, show_progress=False)
    sim = model.similarity.tocoo()
    ok = (sim.row != sim.col) & (sim.data > 0)
    r, c, v = sim.row[ok], sim.col[ok], sim.data[ok].astype(np.float64)
    # cosine values of equal pairs differ in the last bits: round before ranking on them
    table = _ranked_table(r, c, (np.round(v, 9), popularity(train)[c]), train.n_items)
    return _table_system("item_knn", table)


def als_system(
    train: Dataset,
    *,
    factors: int = 32,
    iterations: int = 15,
    regularization: float = 0.05,
    alpha: float = 10.0,
    num_threads: int = 2,
) -> System:
    """Item neighbours by cosine of implicit's ALS item factors (CPU, ``random_state=0``).

    Parameters
    ----------
    alpha : float
        Confidence ``c_ui = 1 + alpha * count`` (Hu, Koren and Volinsky). implicit reads the
        matrix values as the confidence itself (its solver weighs a positive by ``value - 1``
        on top of the unobserved baseline of 1), so the matrix passed holds
        ``1 + alpha * count``.

    Items never bought in training keep their random initial factors (shrunk towards 0 by
    the regularisation), which would make meaningless neighbours: they get an empty row and
    are never recommended.
    """
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    _check_min("als_system", "factors", factors, 1)
    _check_min("als_system", "iterations", iterations, 1)
    _check_min("als_system", "alpha", alpha, 0.0)
    ui = train.interactions("purchase").tocsr()
    conf = ui.copy()
    conf.data = (1.0 + alpha * conf.data).astype(np.float32)
    # implicit's own threads do the work; a BLAS thread pool on top only contends (and
    # implicit warns about it)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=regularization,
            random_state=0,
            num_threads=num_threads,
            use_gpu=False,
        )
        model.fit(conf, show_progress=False)
    known = np.diff(ui.tocsc().indptr) > 0
    system = _similar_items_system("als", model, known)
    inner = system.recommend

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        with threadpool_limits(1, "blas"):
            return inner(seeds, users, k)

    return replace(system, recommend=rec)


# -- co-occurrence ---------------------------------------------------------------------------
def association_rules_system(
    train: Dataset,
    *,
    metric: Literal["confidence", "lift"] = "confidence",
    min_support: int = 2,
    min_confidence: float = 0.01,
) -> System:
    """Single-antecedent association rules ``seed -> b`` over the training baskets.

    With ``n_a`` the baskets holding ``a``, ``n_ab`` those holding both and ``N`` all
    baskets: confidence ``P(b | a) = n_ab / n_a``, lift ``P(b | a) / P(b)``. Consequents are
    ranked by ``metric``, ties by the other one, then by popularity, then the lower item id.

    Parameters
    ----------
    metric : {"confidence", "lift"}
    min_support : int
        Rules seen in fewer baskets than this are dropped.
    min_confidence : float
        Rules with a lower confidence are dropped.
    """
    owner = "association_rules_system"
    _check_choice(owner, "metric", metric, ("confidence", "lift"))
    _check_min(owner, "min_support", min_support, 1)
    _check_min(owner, "min_confidence", min_confidence, 0.0)
    blocks = _cached_cooccurrence(train, "basket")
    n, n_baskets, pop_all = blocks.d, max(len(train.baskets), 1), popularity(train)
    table = np.full((train.n_items, K_LIST), -1, dtype=np.int32)
    for lo, block in blocks:
        coo = block.tocoo()
        row = coo.row + lo
        conf = coo.data / n[row]
        lift = conf * n_baskets / n[coo.col]
        ok = (coo.data >= min_support) & (conf >= min_confidence)
        pop = pop_all[coo.col[ok]]
        keys = (conf[ok], lift[ok], pop) if metric == "confidence" else (lift[ok], conf[ok], pop)
        table[lo : lo + block.shape[0]] = _ranked_rows(
            coo.row[ok], coo.col[ok], keys, block.shape[0]
        )
    return _table_system("association_rules", table)


def _sar_blocks(
    train: Dataset, similarity: Literal["jaccard", "lift"], threshold: int
) -> Iterator[tuple[int, sp.csr_matrix]]:
    """:func:`sar_similarity` in row blocks ``(lo, block)`` (CSR float64, sorted indices)."""
    _check_choice("sar_similarity", "similarity", similarity, ("jaccard", "lift"))
    _check_min("sar_similarity", "threshold", threshold, 1)
    blocks = _cached_cooccurrence(train, "user")
    d = blocks.d
    for lo, block in blocks:
        coo = block.tocoo()
        ok = coo.data >= threshold
        r, cl, v = coo.row[ok], coo.col[ok], coo.data[ok]
        if similarity == "lift":
            val = v / (d[r + lo] * d[cl])
        else:
            val = v / (d[r + lo] + d[cl] - v)
        out = sp.csr_matrix((val, (r, cl)), shape=block.shape)
        out.sort_indices()
        yield lo, out


def sar_similarity(
    train: Dataset,
    similarity: Literal["jaccard", "lift"] = "jaccard",
    *,
    threshold: int = 1,
) -> sp.csr_matrix:
    """SAR item-item similarity from user co-occurrence, shape (n_items, n_items), float64.

    ``C = U^T U`` on the binary user x item purchase matrix (users, not baskets); pairs with
    ``C_ab < threshold`` are dropped. Jaccard: ``C_ab / (C_aa + C_bb - C_ab)``; lift:
    ``C_ab / (C_aa * C_bb)``. The diagonal is left out. The baselines themselves read it in
    row blocks and keep only what they need (each row's best items).
    """
    parts = [block for _, block in _sar_blocks(train, similarity, threshold)]
    if not parts:
        return sp.csr_matrix((train.n_items, train.n_items), dtype=np.float64)
    return sp.vstack(parts, format="csr")


def sar_system(
    train: Dataset, *, similarity: Literal["jaccard", "lift"] = "jaccard", threshold: int = 1
) -> System:
    """SAR-style item-to-item: the seed's most similar items by :func:`sar_similarity`.

    Named ``"sar"`` (Jaccard) or ``"sar_lift"``; ties go to the more popular item, then the
    lower item id. The similarity is ranked block by block (:data:`COOC_BLOCK_ENTRIES`).
    """
    pop = popularity(train)
    table = np.full((train.n_items, K_LIST), -1, dtype=np.int32)
    for lo, block in _sar_blocks(train, similarity, threshold):
        coo = block.tocoo()
        keys = (np.round(coo.data, 12), pop[coo.col])
        table[lo : lo + block.shape[0]] = _ranked_rows(coo.row, coo.col, keys, block.shape[0])
    return _table_system("sar" if similarity == "jaccard" else "sar_lift", table)


def sar_personal_system(
    train: Dataset,
    *,
    similarity: Literal["jaccard", "lift"] = "jaccard",
    threshold: int = 1,
    half_life_days: float = 30.0,
    seed_weight: float = 1.0,
    neighbours: int = 100,
) -> System:
    """Personal SAR: time-decayed user affinity times item similarity, plus the seed.

    The score of item ``j`` for user ``u`` and seed ``s`` is
    ``sum_i A[u, i] S[i, j] + seed_weight * S[s, j]``: ``A`` holds the user's purchases,
    each decayed by ``half_life_days`` to the end of training (0: no decay), scaled so the
    user's strongest affinity is 1; ``S`` is :func:`sar_similarity` cut to each item's
    ``neighbours`` most similar items. The seed is never returned; the user's own items
    may be (hide them with :func:`hide_bought`).
    """
    owner = "sar_personal_system"
    _check_min(owner, "half_life_days", half_life_days, 0.0)
    _check_min(owner, "seed_weight", seed_weight, 0.0)
    _check_min(owner, "neighbours", neighbours, 1)
    n = train.n_items
    idx = np.full((n, neighbours), -1, dtype=np.int32)
    val = np.full((n, neighbours), -np.inf, dtype=np.float32)
    for lo, block in _sar_blocks(train, similarity, threshold):
        hi = lo + block.shape[0]
        idx[lo:hi], val[lo:hi] = topk_rows(block, neighbours)
    rows = np.repeat(np.arange(n), neighbours)
    ok = idx.ravel() >= 0
    s = sp.csr_matrix(
        (val.ravel()[ok].astype(np.float64), (rows[ok], idx.ravel()[ok])), shape=(n, n)
    )
    a = train.interactions("purchase", half_life_days=half_life_days or None).tocsr()
    a = a.astype(np.float64)
    peak = np.zeros(a.shape[0])
    has = np.diff(a.indptr) > 0
    peak[has] = np.maximum.reduceat(a.data, a.indptr[:-1][has]) if a.nnz else 0.0
    a = sp.diags(np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)) @ a
    a = a.tocsr()
    a.sort_indices()
    s_keys = _pair_keys(s)
    pop = popularity(train)
    user_chunk = 256

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        seeds, users = np.asarray(seeds), np.asarray(users)
        out = np.full((len(seeds), k), -1, dtype=np.int32)
        uok = (users >= 0) & (users < a.shape[0])
        uniq, inv = np.unique(np.where(uok, users, -1), return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + user_chunk, user_chunk))
        for c, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            if lo >= hi:
                continue
            rows = order[lo:hi]
            block = uniq[c * user_chunk : (c + 1) * user_chunk]
            out[rows] = _sar_rows(seeds[rows], inv[rows] - c * user_chunk, block, k)
        return out, (out >= 0).sum(axis=1) >= k

    def _sar_rows(
        seeds: NDArray[np.integer], urow: NDArray[np.integer], block: NDArray, k: int
    ) -> NDArray[np.int32]:
        """The top k of ``U[u] + seed_weight * S[seed]`` per query, ``U = A @ S`` computed
        once per distinct user of the block (``urow``: the query's row in ``block``).

        Exact: an item outside both the user's k + 1 best (by score, popularity, id) and the
        seed's row cannot beat k of those best (scores are >= 0), so the candidates are the
        user's k + 1 best plus the seed's row.
        """
        m = len(seeds)
        sel = block >= 0
        pick = sp.csr_matrix(
            (np.ones(sel.sum()), (np.flatnonzero(sel), block[sel])),
            shape=(len(block), a.shape[0]),
        )
        u = ((pick @ a) @ s).tocsr()
        u.sum_duplicates()
        u.sort_indices()
        u.data = np.round(u.data, 12)
        u_keys = _pair_keys(u)
        # each user's k + 1 best (score, then popularity, then the lower id)
        ur = np.repeat(np.arange(u.shape[0]), np.diff(u.indptr))
        uo = np.lexsort((u.indices, -pop[u.indices], -u.data, ur))
        rank = np.arange(len(uo)) - u.indptr[ur[uo]]
        best = uo[rank <= k]
        best_row, best_item = ur[best], u.indices[best]
        # queries x their user's best, and queries x their seed's row
        starts = np.searchsorted(best_row, np.arange(len(block)))
        ends = np.searchsorted(best_row, np.arange(len(block)), side="right")
        n_best = (ends - starts)[urow]
        q1 = np.repeat(np.arange(m), n_best)
        pos1 = np.arange(int(n_best.sum())) - np.repeat(np.cumsum(n_best) - n_best, n_best)
        j1 = best_item[starts[urow][q1] + pos1]
        sq, sj, _ = _gather_rows(s, np.where((seeds >= 0) & (seeds < n), seeds, -1))
        q = np.r_[q1, sq].astype(np.int64)
        j = np.r_[j1, sj].astype(np.int32)
        score = _lookup(u, u_keys, urow[q], j) + seed_weight * _lookup(
            s, s_keys, np.maximum(seeds[q], 0), j
        ) * (seeds[q] >= 0)
        keep = (score > 0) & (j != seeds[q])
        v = np.round(score[keep], 12)
        return _ragged_topk(q[keep], j[keep], (-v, -pop[j[keep]]), m, k)[0]

    return _system("sar_personal", rec, personal=True)


# -- personal --------------------------------------------------------------------------------
def _user_history(train: Dataset) -> sp.csr_matrix:
    """User x item ``count + 0.5 * recency`` of training purchases (float64, sorted indices).

    ``recency`` in [0, 1) is the normalised time of the user's last purchase of the item, so
    ``floor`` gives the count back and the fraction breaks count ties (later first).
    """
    ev = train.events
    buy = ev.event == PURCHASE
    n_items = train.n_items
    key = ev.user[buy].astype(np.int64) * n_items + ev.item[buy]
    keys, inv = np.unique(key, return_inverse=True)
    count = np.bincount(inv, minlength=len(keys)).astype(np.float64)
    last = np.zeros(len(keys), dtype=np.float64)
    np.maximum.at(last, inv, ev.timestamp[buy].astype(np.float64))
    t0, t1 = train.time_range
    recency = (last - t0) / (t1 - t0 + 1.0)
    m = sp.csr_matrix(
        (count + 0.5 * recency, (keys // n_items, keys % n_items)),
        shape=(train.n_users, n_items),
    )
    m.sort_indices()
    return m


def _gather_rows(
    m: sp.csr_matrix, rows: NDArray[np.integer]
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.float64]]:
    """The entries of ``m[rows]`` as flat (query, column, value) arrays; ``-1`` rows empty."""
    ok = (rows >= 0) & (rows < m.shape[0])
    safe = np.where(ok, rows, 0)
    start = m.indptr[safe]
    lens = np.where(ok, m.indptr[safe + 1] - start, 0)
    q = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    offset = np.cumsum(lens) - lens
    pos = np.arange(int(lens.sum()), dtype=np.int64) - offset[q] + start[q]
    return q, m.indices[pos].astype(np.int32), m.data[pos]


def _pair_keys(m: sp.csr_matrix) -> NDArray[np.int64]:
    """Sorted ``row * n_cols + col`` keys of ``m``'s entries (``m`` with sorted indices)."""
    keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * m.shape[1]
    return keys + m.indices


def _lookup(
    m: sp.csr_matrix,
    keys: NDArray[np.int64],
    row: NDArray[np.integer],
    col: NDArray[np.integer],
) -> NDArray[np.float64]:
    """``m[row[i], col[i]]`` for every i, vectorised (``keys`` from :func:`_pair_keys`)."""
    out = np.zeros(len(row), dtype=np.float64)
    if len(keys) == 0 or len(row) == 0:
        return out
    q = row.astype(np.int64) * m.shape[1] + col
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    hit = keys[pos] == q
    out[hit] = m.data[pos[hit]]
    return out


def _ragged_topk(
    q: NDArray[np.int64],
    item: NDArray[np.int32],
    sort_keys: Sequence[NDArray[np.float64]],
    n: int,
    k: int,
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Per query, the first ``k`` distinct items after sorting by ``sort_keys`` (ascending,
    first key first, then the lower item id): (n, k) padded with -1, and rows full."""
    out = np.full((n, k), -1, dtype=np.int32)
    if len(q):
        order = np.lexsort((item, *reversed(sort_keys), q))
        q, item = q[order], item[order]
        # keep an item's first (best) entry per query
        _, first = np.unique(q * (int(item.max()) + 1) + item, return_index=True)
        first.sort()
        q, item = q[first], item[first]
        starts = np.searchsorted(q, np.arange(n))
        rank = np.arange(len(q)) - starts[q]
        sel = rank < k
        out[q[sel], rank[sel]] = item[sel]
    return out, (out >= 0).sum(axis=1) >= k


def user_repeat_system(train: Dataset) -> System:
    """The user's own most-bought items (ties: most recently bought first), seed excluded.

    Personal: a user without training purchases gets an empty row.
    """
    hist = _user_history(train)

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        q, item, score = _gather_rows(hist, np.asarray(users))
        keep = item != np.asarray(seeds)[q]
        return _ragged_topk(q[keep], item[keep], (-score[keep],), len(seeds), k)

    return _system("user_repeat", rec, personal=True)


def user_repeat_cooc_system(train: Dataset) -> System:
    """Repeat counts first, then the seed's co-purchases.

    The user's items are ranked by purchase count, ties by the number of training baskets
    holding both the item and the seed, then by recency; when fewer than ``k`` remain, the
    seed's most co-purchased items (by basket count) fill the row. A user without history
    gets the seed's co-purchases only.
    """
    hist = _user_history(train)
    cooc, _ = _cooccurrence(train.baskets.matrix(train.n_items))
    cooc_keys = _pair_keys(cooc)
    fill = topk_rows(cooc, K_LIST, min_value=1.0)[0]

    def rec(
        seeds: NDArray[np.int32], users: NDArray[np.int32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        seeds = np.asarray(seeds)
        n = len(seeds)
        q, item, score = _gather_rows(hist, np.asarray(users))
        count = np.floor(score)
        s = seeds[q]
        co = _lookup(cooc, cooc_keys, np.maximum(s, 0), item)
        co[s < 0] = 0.0
        # the seed's co-purchases after the history, in their list order
        ok = (seeds >= 0) & (seeds < len(fill))
        f = np.where(ok[:, None], fill[np.where(ok, seeds, 0)], -1)
        fq, fpos = np.nonzero(f >= 0)
        q_all = np.r_[q, fq]
        item_all = np.r_[item, f[fq, fpos]].astype(np.int32)
        group = np.r_[np.zeros(len(q)), np.ones(len(fq))]
        keys = (
            group,
            np.r_[-count, np.zeros(len(fq))],
            np.r_[-co, fpos.astype(np.float64)],
            np.r_[-(score - count), np.zeros(len(fq))],
        )
        keep = item_all != seeds[q_all]
        return _ragged_topk(q_all[keep], item_all[keep], tuple(x[keep] for x in keys), n, k)

    return _system("user_repeat+cooc", rec, personal=True)


# -- the promotion calendar -------------------------------------------------------------------
def promoted_system(train: Dataset) -> System:
    """The items on promotion at the query's time (the dataset's promotion calendar), most
    bought first (training purchases; ties to the lower id), seed excluded.

    A "what's on offer" list: the calendar-aware baseline that recset's ``cand_promo``
    features are compared with. The promoted set only changes where a promotion starts or
    ends, so each distinct period's list is computed once. Asked without times, it uses now.
    """
    promotions = train.promotions
    if promotions is None:
        raise ConfigError(
            f"baseline 'promoted' needs a promotion calendar, and dataset {train.name!r} has "
            "none (promotions.parquet in the dataset directory; docs/data-format.md)"
        )
    keys, reach, _, origin = promotion_steps(promotions, train.n_items)
    pop = popularity(train)
    pool = np.unique(promotions.item).astype(np.int64)
    pool = pool[np.lexsort((pool, -pop[pool]))]  # most bought first, ties to the lower id
    changes = np.unique(np.r_[promotions.start, promotions.end])
    lists: dict[int, NDArray[np.int64]] = {}

    def active(period: int) -> NDArray[np.int64]:
        if period not in lists:
            on = (
                promotion_at(keys, reach, origin, pool, np.full(len(pool), changes[period - 1])) > 0
                if period > 0
                else np.zeros(len(pool), bool)
            )
            lists[period] = pool[on][: K_LIST + 1]
        return lists[period]

    def rec(
        seeds: NDArray[np.int32],
        users: NDArray[np.int32],
        k: int,
        when: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
        seeds = np.asarray(seeds, dtype=np.int32)
        t = np.full(len(seeds), int(time.time())) if when is None else np.asarray(when)
        period = np.searchsorted(changes, t, side="right")
        out = np.full((len(seeds), k), -1, dtype=np.int32)
        for p in np.unique(period).tolist():
            rows = np.flatnonzero(period == p)
            items = active(p)
            table = np.broadcast_to(items[: k + 1], (len(rows), min(len(items), k + 1)))
            keep = table != seeds[rows, None]
            out[rows] = _compact(table, keep, k)[0]
        return out, (out >= 0).sum(axis=1) >= k

    return System("promoted", "baseline", rec, timed=True)


# -- registry ---------------------------------------------------------------------------------
BASELINES: dict[str, Callable[..., System]] = {
    "popular": popular_system,
    "popular_in_category": popular_in_category_system,
    "item_knn": item_knn_system,
    "als": als_system,
    "association_rules": association_rules_system,
    "sar": sar_system,
    "sar_lift": partial(sar_system, similarity="lift"),
    "sar_personal": sar_personal_system,
    "user_repeat": user_repeat_system,
    "user_repeat+cooc": user_repeat_cooc_system,
    "promoted": promoted_system,
}
"""Every baseline by the name it has in metrics.json: ``make(train, **params)``."""


def _grid(**axes: Sequence[Any]) -> tuple[dict[str, Any], ...]:
    """Every combination of the axes' values, the first axis varying slowest."""
    return tuple(dict(zip(axes, v, strict=True)) for v in itertools.product(*axes.values()))


GRIDS: dict[str, tuple[dict[str, Any], ...]] = {
    "popular": _grid(half_life_days=(0.0, 30.0, 90.0)),
    "popular_in_category": _grid(half_life_days=(0.0, 30.0, 90.0)),
    "item_knn": _grid(unit=("user", "basket")),
    "als": _grid(factors=(16, 32, 64), regularization=(0.01, 0.1), alpha=(1.0, 10.0)),
    "association_rules": _grid(metric=("confidence", "lift"), min_support=(1, 2, 5, 10)),
    "sar": _grid(threshold=(1, 2, 5, 10)),
    "sar_lift": _grid(threshold=(1, 2, 5, 10, 20)),
    # the seed's own row always counts (seed_weight 1): every query has a seed, and a list
    # that ignores it is the personal-only variant, not SAR for a seed
    "sar_personal": _grid(
        similarity=("jaccard", "lift"), threshold=(3, 10), half_life_days=(0.0, 30.0)
    ),
    "user_repeat": ({},),
    "user_repeat+cooc": ({},),
    "promoted": ({},),
}
"""The hyper-parameter values tried for each baseline on the validation window (the first
combination that scores best wins; see :func:`recset.eval.tune_baselines`). Kept small: the
grid runs before every backtest; the co-occurrence baselines share one co-occurrence
matrix per fit dataset (:func:`_cached_cooccurrence`)."""


def baseline_systems(
    train: Dataset,
    names: Sequence[str] | None = None,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    fill: RecallBase | None = None,
) -> list[System]:
    """Fit the named baselines (default: all of :data:`BASELINES`) on ``train``.

    Parameters
    ----------
    params : mapping, optional
        Hyper-parameters per baseline name (default: each factory's defaults); recorded on
        the system as ``params``.
    fill : RecallBase, optional
        A recall source fitted on ``train`` that fills short rows (:func:`with_fill`); the
        backtest passes the engine's fallback source.

    Raises
    ------
    ConfigError
        When a name is not in :data:`BASELINES`.
    """
    names = list(BASELINES) if names is None else list(names)
    bad = [n for n in names if n not in BASELINES]
    if bad:
        raise ConfigError(
            f"The 'names' parameter of baseline_systems must hold names from "
            f"{sorted(BASELINES)}. Got unknown {bad} instead."
        )
    params = params or {}
    out = []
    for name in names:
        t0 = time.perf_counter()
        chosen = dict(params.get(name, {}))
        system = BASELINES[name](train, **chosen)
        system = replace(system, name=name, params=chosen)
        out.append(system if fill is None else with_fill(system, fill))
        _log.debug("fitted baseline %s in %.2fs", name, time.perf_counter() - t0)
    return out
