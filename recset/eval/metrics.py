"""Ranking metrics over batches of queries, vectorised with numpy.

A query has one seed, a set of target items J and a ranked list of recommendations. Hit@k is 1
when any target is among the first k recommendations (the definition of the personalized-CPR
paper, shared/seeds/personalized-complementary-recommendation.txt).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from recset.data import Targets
from recset.errors import DataError

KS: tuple[int, ...] = (1, 3, 5, 10, 20)


def hit_matrix(recs: NDArray[np.integer], targets: Targets) -> NDArray[np.bool_]:
    """(n_queries, K) bool: recommendation j of query q is a target of q.

    ``recs`` is (n_queries, K), padded with -1 (never a hit). A target counts once: a repeated
    recommendation of the same id is a hit only at its first position.
    """
    recs = np.asarray(recs, dtype=np.int64)
    if recs.shape[0] != targets.n_queries:
        raise DataError(
            f"recs has {recs.shape[0]} rows but there are {targets.n_queries} target sets"
        )
    width = int(max(recs.max(initial=0), targets.item.max(initial=0))) + 2
    q = np.arange(recs.shape[0], dtype=np.int64)[:, None]
    rec_keys = q * width + np.where(recs >= 0, recs, width - 1)
    tgt_keys = targets.query_of_entry() * width + targets.item
    hits = np.isin(rec_keys, tgt_keys) & (recs >= 0)
    # only the first occurrence of an id in a row may hit
    order = np.argsort(recs, axis=1, kind="stable")
    s = np.take_along_axis(recs, order, axis=1)
    first = np.ones_like(s, dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    first_mask = np.empty_like(first)
    np.put_along_axis(first_mask, order, first, axis=1)
    return hits & first_mask


def per_query(
    hits: NDArray[np.bool_], n_targets: NDArray[np.integer], k: int
) -> dict[str, NDArray[np.float64]]:
    """Per-query hit@k, ndcg@k, recall@k and reciprocal rank (over all K columns)."""
    h = hits[:, :k]
    n_t = np.asarray(n_targets, dtype=np.float64)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (h * discounts[:k]).sum(axis=1)
    ideal_n = np.minimum(n_t, k).astype(np.int64)
    cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = cum[np.minimum(ideal_n, len(discounts))]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
    return {
        "hit": h.any(axis=1).astype(np.float64),
        "ndcg": np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0),
        "recall": np.divide(h.sum(axis=1), n_t, out=np.zeros_like(dcg), where=n_t > 0),
        "rr": np.where(first >= 0, 1.0 / np.maximum(first + 1.0, 1.0), 0.0),
    }


def summarize(
    hits: NDArray[np.bool_], targets: Targets, ks: tuple[int, ...] = KS
) -> dict[str, float]:
    """Mean hit@k for every k, ndcg@10, recall@10 and MRR over queries with >= 1 target."""
    n_t = targets.sizes()
    valid = n_t > 0
    out: dict[str, float] = {}
    if not valid.any():
        return out
    for k in ks:
        out[f"hit@{k}"] = float(per_query(hits[valid], n_t[valid], k)["hit"].mean())
    pq = per_query(hits[valid], n_t[valid], 10)
    out["ndcg@10"] = float(pq["ndcg"].mean())
    out["recall@10"] = float(pq["recall"].mean())
    out["mrr"] = float(pq["rr"].mean())
    return out
