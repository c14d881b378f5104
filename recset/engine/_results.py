"""What the engine returns to a host: recommendations with their reasons, on external ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from recset.data import IdMap
from recset.pipeline import Candidates


@dataclass(frozen=True)
class Reason:
    """Why an item was recommended: a source that proposed it, its score and 0-based rank there."""

    source: str
    score: float
    rank: int


@dataclass(frozen=True)
class Recommendation:
    """One recommended item (external id), its final score and the reasons behind it."""

    item_id: str
    score: float
    reasons: tuple[Reason, ...]


def row_recommendations(
    batch: Candidates, row: int, k: int, exclude: NDArray[np.int32], items: IdMap
) -> list[Recommendation]:
    """The first ``k`` items of ``batch`` row ``row`` not in ``exclude``, with reasons."""
    item = batch.item[row]
    ok = item >= 0
    if len(exclude):
        ok &= ~np.isin(item, exclude)
    valid = np.flatnonzero(ok)[:k]
    # the row's few served entries converted to Python values at once, not one by one
    served, scores = item[valid].tolist(), batch.score[row, valid].tolist()
    if batch.source_rank is None or batch.source_score is None:
        return [Recommendation(items.id_of(i), v, ()) for i, v in zip(served, scores, strict=True)]
    names = batch.sources
    ranks = batch.source_rank[row, valid].tolist()
    values = batch.source_score[row, valid].tolist()
    return [
        Recommendation(
            items.id_of(i),
            v,
            tuple(Reason(names[s], sv[s], r) for s, r in enumerate(rk) if r >= 0),
        )
        for i, v, rk, sv in zip(served, scores, ranks, values, strict=True)
    ]


def merge_basket(lists: list[list[Recommendation]], rrf_k: float, k: int) -> list[Recommendation]:
    """One list from the seeds' lists of a cart: an item's score is the sum over the lists
    of ``1 / (rrf_k + rank + 1)``; its reasons are those of its best-ranked occurrence."""
    score: dict[str, float] = {}
    best: dict[str, tuple[int, Recommendation]] = {}
    for recs in lists:
        for rank, rec in enumerate(recs):
            score[rec.item_id] = score.get(rec.item_id, 0.0) + 1.0 / (rrf_k + rank + 1.0)
            if rec.item_id not in best or rank < best[rec.item_id][0]:
                best[rec.item_id] = (rank, rec)
    order = sorted(score, key=lambda i: (-score[i], best[i][0]))[:k]
    return [Recommendation(i, score[i], best[i][1].reasons) for i in order]
