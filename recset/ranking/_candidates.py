"""The candidates the ranker scores: the mix's list plus the user's own history."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from recset.pipeline import Candidates
from recset.ranking._builtin_features import CandPop
from recset.ranking._discover_features import (
    POPULAR_CANDIDATES,
    HistCopurchase,
    HistSar,
    history_candidates,
    popular_candidates,
)
from recset.ranking._features import USER_HISTORY, FeatureSpace


def ranking_candidates(
    mixed: Candidates,
    features: FeatureSpace,
    seeds: NDArray[np.int32],
    users: NDArray[np.int32] | None,
    available: NDArray[np.bool_],
) -> Candidates:
    """The candidates a ranker scores: the mix's list ``mixed``, plus the user's history.

    When ``features`` keeps users' histories, each user's most-bought items that the mix did
    not propose are appended, and every candidate from the history carries its purchase
    count and history rank under the pseudo-source ``user_history``. Unknown users (-1) add
    nothing. The seed and unavailable items are never added.
    """
    if USER_HISTORY not in features.sources:
        return mixed
    n_seeds, width = mixed.item.shape
    if users is None:
        users = np.full(n_seeds, -1, dtype=np.int32)
    users = np.asarray(users)
    ok = (users >= 0) & (users < len(features.user_top))
    m = features.user_top.shape[1]
    hist = np.where(ok[:, None], features.user_top[np.where(ok, users, 0)], -1)
    count = np.where(ok[:, None], features.user_top_count[np.where(ok, users, 0)], 0.0)
    hist = np.where(
        (hist >= 0) & (hist != seeds[:, None]) & available[np.maximum(hist, 0)], hist, -1
    )
    # history entries already among the mix's candidates: mark them there
    in_mix = (hist[:, :, None] == mixed.item[:, None, :]) & (hist[:, :, None] >= 0)
    new = (hist >= 0) & ~in_mix.any(axis=2)
    s_hist = len(mixed.sources)
    # the output written once: the mix's slots, then the history's, with one more source
    item = np.empty((n_seeds, width + m), np.int32)
    item[:, :width] = mixed.item
    item[:, width:] = np.where(new, hist, -1)
    score = np.full((n_seeds, width + m), -np.inf, np.float32)
    score[:, :width] = mixed.score
    src_score = np.full((n_seeds, width + m, s_hist + 1), np.nan, np.float32)
    src_score[:, :width, :s_hist] = mixed.source_score
    src_rank = np.full((n_seeds, width + m, s_hist + 1), -1, np.int32)
    src_rank[:, :width, :s_hist] = mixed.source_rank
    r_idx, h_idx, c_idx = np.nonzero(in_mix)
    src_score[r_idx, c_idx, s_hist] = count[r_idx, h_idx]
    src_rank[r_idx, c_idx, s_hist] = h_idx
    src_score[:, width:, s_hist] = np.where(new, count, np.nan)
    src_rank[:, width:, s_hist] = np.where(new, np.arange(m)[None, :], -1)
    return Candidates(
        item=item,
        score=score,
        source_score=src_score,
        source_rank=src_rank,
        sources=(*mixed.sources, USER_HISTORY),
    )


def discovery_candidates(
    mixed: Candidates,
    features: FeatureSpace,
    seeds: NDArray[np.int32],
    users: NDArray[np.int32] | None,
    available: NDArray[np.bool_],
    n_history: int,
    n_sar: int = 0,
) -> Candidates:
    """The candidates of the discovery ranker: never bought by the user.

    The ranker's candidates (:func:`ranking_candidates`) plus, when the features keep
    ``hist_copurchase``, the user's ``n_history`` items most co-bought with the user's own
    purchases (from beyond the seed's co-purchase row), and the :data:`POPULAR_CANDIDATES`
    most-bought items the user never bought (none by default; no source proposed either, so
    their per-source columns are empty), and when the features keep ``hist_sar``, the user's
    ``n_sar`` best never-bought items by personal SAR; then every item the user bought, the
    seed and unavailable items are dropped, the rest keeping their order.
    """
    base = ranking_candidates(mixed, features, seeds, users, available)
    n_seeds = base.n_seeds
    if users is None:
        users = np.full(n_seeds, -1, dtype=np.int32)
    users = np.asarray(users)
    hist = features.feature("hist_copurchase")
    if n_history > 0 and isinstance(hist, HistCopurchase):
        base = _append(base, history_candidates(hist, users, n_history)[0])
    sar = features.feature("hist_sar")
    if n_sar > 0 and isinstance(sar, HistSar):
        base = _append(base, history_candidates(sar, users, n_sar)[0])  # type: ignore[arg-type]
    pop = features.feature("cand_pop")
    if POPULAR_CANDIDATES > 0 and isinstance(pop, CandPop):
        extra = popular_candidates(
            pop.item_pop_, features.bought, users, available, POPULAR_CANDIDATES
        )
        base = _append(base, extra)
    item = base.item
    keep = (
        (item >= 0)
        & (item != np.asarray(seeds)[:, None])
        & available[np.maximum(item, 0)]
        & ~features.bought(users, item)
    )
    order = np.argsort(~keep, axis=1, kind="stable")
    out = base.take(order)
    kept = np.take_along_axis(keep, order, axis=1)
    return Candidates(
        np.where(kept, out.item, -1).astype(np.int32),
        np.where(kept, out.score, -np.inf).astype(np.float32),
        out.source_score,
        out.source_rank,
        out.sources,
    )


def _append(base: Candidates, extra: NDArray[np.int32]) -> Candidates:
    """``base`` with the items of ``extra`` (B, m) it does not hold yet appended, with empty
    per-source columns and a score of -inf."""
    dup = ((extra[:, :, None] == base.item[:, None, :]) & (extra[:, :, None] >= 0)).any(2)
    extra = np.where(dup, -1, extra).astype(np.int32)
    n_seeds, (m, n_src) = base.n_seeds, (extra.shape[1], len(base.sources))
    return Candidates(
        item=np.concatenate([base.item, extra], axis=1),
        score=np.concatenate([base.score, np.full((n_seeds, m), -np.inf, np.float32)], 1),
        source_score=np.concatenate(
            [base.source_score, np.full((n_seeds, m, n_src), np.nan, np.float32)],
            1,  # type: ignore[list-item]
        ),
        source_rank=np.concatenate(
            [base.source_rank, np.full((n_seeds, m, n_src), -1, np.int32)],
            1,  # type: ignore[list-item]
        ),
        sources=base.sources,
    )
