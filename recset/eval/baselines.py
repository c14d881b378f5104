"""Baselines for the backtest, fitted on the training part only, scored in batch.

Every baseline is a :class:`~recset.eval.backtest.System` of kind ``"baseline"``: popularity
(global and in the seed's category), item-kNN cosine and ALS item similarity (implicit),
association rules over baskets, SAR-style co-occurrence (Jaccard, lift), and two personal
ones, ``user_repeat`` (the user's own most-bought items) and ``user_repeat+cooc`` (repeat
count, ties broken by co-occurrence with the seed, then the seed's co-purchases): next-basket
research (Li et al., "A Next Basket Recommendation Reality Check") shows that repeat
purchases dominate grocery baskets.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import PURCHASE, Dataset
from recset.signals import topk_rows

if TYPE_CHECKING:
    from recset.eval.backtest import System

_log = logging.getLogger(__name__)

K_LIST = 50  # candidates kept per item / user at fit time (the backtest asks for <= 20)


def _system(name: str, rec: Callable, personal: bool = False) -> System:  # type: ignore[type-arg]
    from recset.eval.backtest import System

    return System(name, "baseline", rec, personal=personal)


def _table_system(name: str, table: NDArray[np.int32]) -> System:
    """A baseline that serves a precomputed (n_items, K) table of neighbours by seed."""

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        ok = (seeds >= 0) & (seeds < len(table))
        rows = np.where(ok[:, None], table[np.where(ok, seeds, 0), :k], -1)
        return rows.astype(np.int32), (rows >= 0).sum(axis=1) >= k

    return _system(name, rec)


def _drop_self(idx: NDArray[np.int32]) -> NDArray[np.int32]:
    """Remove each row's own id from a neighbour table, shifting the rest left."""
    own = idx == np.arange(len(idx))[:, None]
    keep = (idx >= 0) & ~own
    order = np.argsort(~keep, axis=1, kind="stable")
    return np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(idx, order, 1), -1)


def popular(train: Dataset) -> System:
    from recset.eval.backtest import popular_system

    return popular_system(train, "popular", "global")


def popular_in_category(train: Dataset) -> System:
    from recset.eval.backtest import popular_system

    return popular_system(train, "popular_in_category", "category")


def _neighbors_from_implicit(
    model: object, n_items: int, known: NDArray[np.bool_]
) -> NDArray[np.int32]:
    table = np.full((n_items, K_LIST), -1, dtype=np.int32)
    ids = np.flatnonzero(known).astype(np.int32)
    for start in range(0, len(ids), 4096):
        chunk = ids[start : start + 4096]
        nb, _ = model.similar_items(chunk, N=K_LIST + 1)  # type: ignore[attr-defined]
        table[chunk] = _drop_self_rows(np.asarray(nb, dtype=np.int32), chunk)
    return table


def _drop_self_rows(nb: NDArray[np.int32], own: NDArray[np.int32]) -> NDArray[np.int32]:
    keep = (nb >= 0) & (nb != own[:, None])
    order = np.argsort(~keep, axis=1, kind="stable")
    out = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(nb, order, 1), -1)
    return out[:, :K_LIST]


def item_knn(train: Dataset) -> System:
    """implicit's ``CosineRecommender`` on the user x item purchase matrix."""
    from implicit.nearest_neighbours import CosineRecommender

    ui = train.interactions("purchase").tocsr()
    model = CosineRecommender(K=K_LIST + 1)
    with warnings.catch_warnings():
        # implicit 0.7 normalises to a COO matrix internally and then warns about it
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(ui, show_progress=False)
    known = np.asarray(ui.sum(axis=0)).ravel() > 0
    return _table_system("item_knn", _neighbors_from_implicit(model, train.n_items, known))


def als(train: Dataset, *, factors: int = 64, iterations: int = 15, alpha: float = 10.0) -> System:
    """implicit's ALS on the user x item purchases (confidence 1 + alpha * count)."""
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    ui = train.interactions("purchase").tocsr()
    # implicit's own threads do the work; a BLAS thread pool on top only contends
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=0.05,
            random_state=0,
            num_threads=2,
        )
        model.fit((ui * alpha).astype(np.float32).tocsr(), show_progress=False)
    # items never bought in training have untrained factors: they neither query nor answer
    known = np.asarray(ui.sum(axis=0)).ravel() > 0
    table = _neighbors_from_implicit(model, train.n_items, known)
    table = np.where(known[np.maximum(table, 0)] & (table >= 0), table, -1)
    return _table_system("als", _drop_self(table))


def _basket_counts(train: Dataset) -> tuple[sp.csr_matrix, NDArray[np.float64]]:
    b = train.baskets.matrix(train.n_items)
    c = (b.T @ b).tocsr()
    n = c.diagonal().astype(np.float64)
    c.setdiag(0)
    c.eliminate_zeros()
    return c, n


def association_rules(
    train: Dataset, *, metric: str = "confidence", min_support: int = 2
) -> System:
    """Single-antecedent rules ``seed -> b`` over training baskets.

    Ranked by confidence ``P(b | seed) = n_ab / n_seed`` (``metric="lift"``: by
    ``P(b | seed) / P(b)``); pairs seen in fewer than ``min_support`` baskets are dropped.
    """
    c, n = _basket_counts(train)
    c = c.multiply(c >= min_support).tocsr()
    coo = c.tocoo()
    conf = coo.data / n[coo.row]
    if metric == "lift":
        n_baskets = max(len(train.baskets), 1)
        val = conf / (n[coo.col] / n_baskets)
        val = val + 1e-9 * conf  # ties by confidence
    else:
        val = conf + 1e-9 * (coo.data / np.maximum(n[coo.col], 1))  # ties by lift-ish
    m = sp.csr_matrix((val, (coo.row, coo.col)), shape=c.shape)
    idx, _ = topk_rows(m, K_LIST, min_value=1e-12)
    return _table_system("association_rules", idx)


def sar(train: Dataset, *, similarity: str = "jaccard") -> System:
    """SAR-style item similarity from user co-occurrence ``C = U^T U`` (Jaccard or lift)."""
    u = train.interactions("purchase", binary=True).tocsr()
    c = (u.T @ u).tocsr().astype(np.float64)
    d = c.diagonal()
    c.setdiag(0)
    c.eliminate_zeros()
    coo = c.tocoo()
    if similarity == "lift":
        val = coo.data / (d[coo.row] * d[coo.col])
    else:
        val = coo.data / (d[coo.row] + d[coo.col] - coo.data)
    idx, _ = topk_rows(
        sp.csr_matrix((val, (coo.row, coo.col)), shape=c.shape), K_LIST, min_value=1e-12
    )
    return _table_system("sar" if similarity == "jaccard" else "sar_lift", idx)


def _user_history(train: Dataset) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Each user's top items by purchase count, ties by most recent purchase: (n_users, K)."""
    ev = train.events
    buy = ev.event == PURCHASE
    n_items = train.n_items
    key = ev.user[buy].astype(np.int64) * n_items + ev.item[buy]
    keys, inv = np.unique(key, return_inverse=True)
    count = np.bincount(inv).astype(np.float64)
    last = np.zeros(len(keys))
    np.maximum.at(last, inv, ev.timestamp[buy].astype(np.float64))
    t0, t1 = train.time_range
    recency = (last - t0) / max(t1 - t0, 1)  # in [0, 1]: a tie-break below one purchase
    m = sp.csr_matrix(
        (count + 0.5 * recency, ((keys // n_items), (keys % n_items))),
        shape=(train.n_users, n_items),
    )
    idx, val = topk_rows(m, K_LIST, min_value=1e-12)
    return idx, np.floor(np.where(idx >= 0, val, 0.0))


def user_repeat(train: Dataset) -> System:
    """The user's own most-bought items (ties: most recent first), the seed excluded."""
    hist, _ = _user_history(train)

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        ok = (users >= 0) & (users < len(hist))
        rows = np.where(ok[:, None], hist[np.where(ok, users, 0)], -1)
        keep = (rows >= 0) & (rows != seeds[:, None])
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        out = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(rows, order, 1), -1)
        return out.astype(np.int32), (out >= 0).sum(axis=1) >= k

    return _system("user_repeat", rec, personal=True)


def user_repeat_cooc(train: Dataset) -> System:
    """Repeat count first, ties broken by basket co-occurrence with the seed; then the
    seed's most co-purchased items fill the list."""
    hist, counts = _user_history(train)
    c, _ = _basket_counts(train)
    n_items = train.n_items
    coo = c.tocoo()
    keys = coo.row.astype(np.int64) * n_items + coo.col
    order = np.argsort(keys)
    keys, vals = keys[order], coo.data[order].astype(np.float64)
    co_idx, _ = topk_rows(c, K_LIST, min_value=1e-12)

    def cooc(seed: NDArray[np.int64], item: NDArray[np.int64]) -> NDArray[np.float64]:
        q = seed * n_items + item
        pos = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
        hit = (len(keys) > 0) & (keys[pos] == q) if len(keys) else np.zeros(q.shape, bool)
        return np.where(hit, vals[pos] if len(keys) else 0.0, 0.0)

    def rec(seeds: NDArray[np.int32], users: NDArray[np.int32], k: int):  # noqa: ANN202
        ok = (users >= 0) & (users < len(hist))
        rows = np.where(ok[:, None], hist[np.where(ok, users, 0)], -1)
        cnt = np.where(ok[:, None], counts[np.where(ok, users, 0)], 0.0)
        s = np.maximum(seeds, 0).astype(np.int64)[:, None]
        co = cooc(np.broadcast_to(s, rows.shape), np.maximum(rows, 0).astype(np.int64))
        valid = (rows >= 0) & (rows != seeds[:, None])
        # repeat count, then co-occurrence with the seed, then the history order (recency)
        score = np.where(valid, cnt * 1e6 + np.minimum(co, 999_999.0), -np.inf)
        srt = np.argsort(-score, axis=1, kind="stable")
        rows = np.take_along_axis(rows, srt, 1)
        valid = np.take_along_axis(valid, srt, 1)
        fill = np.where((seeds >= 0)[:, None], co_idx[np.maximum(seeds, 0)], -1)
        both = np.concatenate([np.where(valid, rows, -1), fill], axis=1)
        keep = (both >= 0) & (both != seeds[:, None]) & _first(both)
        srt = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        out = np.where(np.take_along_axis(keep, srt, 1), np.take_along_axis(both, srt, 1), -1)
        return out.astype(np.int32), (out >= 0).sum(axis=1) >= k

    return _system("user_repeat+cooc", rec, personal=True)


def _first(item: NDArray[np.int32]) -> NDArray[np.bool_]:
    order = np.argsort(item, axis=1, kind="stable")
    s = np.take_along_axis(item, order, axis=1)
    first = np.ones_like(s, dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    out = np.empty_like(first)
    np.put_along_axis(out, order, first, axis=1)
    return out


BASELINES: dict[str, Callable[[Dataset], System]] = {
    "popular": popular,
    "popular_in_category": popular_in_category,
    "item_knn": item_knn,
    "als": als,
    "association_rules": association_rules,
    "sar": sar,
    "user_repeat": user_repeat,
    "user_repeat+cooc": user_repeat_cooc,
}
"""Every baseline by the name it has in metrics.json."""


def baseline_systems(train: Dataset, names: Sequence[str] | None = None) -> list[System]:
    """Fit the named baselines (default: all) on ``train``."""
    out = []
    for name in names if names is not None else BASELINES:
        if name not in BASELINES:
            from recset.errors import ConfigError

            raise ConfigError(f"unknown baseline {name!r}; allowed: {sorted(BASELINES)}")
        out.append(BASELINES[name](train))
    return out
