"""The ranking stages of the serving pipeline: the LightGBM ranker, and the explore share.

:class:`RankerStage` scores the mix's candidates (plus the user's own history when the ranker
keeps it) and orders each row by score; :class:`ExploreStage` then keeps a share of every
prefix of the list for items the user never bought.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recset.errors import ConfigError
from recset.pipeline import Candidates, Request, Stage, register_stage
from recset.ranking._candidates import discovery_candidates, ranking_candidates
from recset.ranking._features import FeatureSpace
from recset.ranking._ranker import Ranker


def _reserve_share(
    order: NDArray[np.intp],
    valid: NDArray[np.bool_],
    novel: NDArray[np.bool_],
    k: int,
    share: float,
) -> NDArray[np.intp]:
    """Reorder ranked columns so that every prefix of the top ``k`` holds novel items.

    ``order`` (B, N) are column indices best first; ``valid`` and ``novel`` (B, N) flag, in
    that ranked order, the real candidates and those the user never bought. Position ``p``
    (0-based) takes the best remaining novel candidate when fewer than
    ``floor(share * (p + 1))`` novel items are placed so far, else the best remaining one;
    so a list cut at any length ``m`` holds ``floor(share * m)`` novel items when the row
    has them. Returns (B, N) columns: the top ``k`` so chosen, then the rest in order.
    """
    n_rows, n = order.shape
    k = min(k, n)
    rows = np.arange(n_rows)
    left = valid.copy()
    novel_left = novel & valid
    taken = np.zeros((n_rows, n), dtype=bool)
    picks = np.empty((n_rows, k), dtype=np.intp)
    placed = np.zeros(n_rows, dtype=np.int64)
    for p in range(k):
        want = (placed < np.floor(share * (p + 1) + 1e-9)) & novel_left.any(axis=1)
        pool = np.where(want[:, None], novel_left, left)
        # rows with nothing left take a padded (invalid) column, the first not yet taken
        col = np.where(pool.any(axis=1), np.argmax(pool, axis=1), np.argmax(~taken, axis=1))
        picks[:, p] = col
        taken[rows, col] = True
        left[rows, col] = False
        placed += novel_left[rows, col]
        novel_left[rows, col] = False
    rest = np.argsort(taken, axis=1, kind="stable")[:, : n - k]
    return np.take_along_axis(order, np.concatenate([picks, rest], axis=1), 1)


def _ranked(candidates: Candidates, score: NDArray[np.float64]) -> Candidates:
    """``candidates`` ordered by ``score`` (padding -inf last; ties keep their order)."""
    order = np.argsort(-score, axis=1, kind="stable")
    return candidates.take(order, score)


def _scored(ranker: Ranker, request: Request, mixed: Candidates, mode: str) -> Candidates:
    """``mixed`` ordered by the score of ``mode``'s models (``"complete"``: the ranker;
    ``"discover"``: the discovery models), computing only the feature columns their trees
    split on; padding is never scored."""
    X = ranker.features.transform(
        request.seeds, request.users, mixed, request.when, columns=ranker.used_columns(mode)
    )
    valid = mixed.item.ravel() >= 0
    flat = np.full(len(valid), -np.inf)
    if valid.any():
        score = ranker.score if mode == "complete" else ranker.score_new
        flat[valid] = score(X[valid])
    return _ranked(mixed, flat.reshape(mixed.item.shape))


@register_stage("ranker")
class RankerStage(Stage):
    """Scores the mix's top ``ranker.config.candidates`` (and the user's history) with the
    LightGBM ranker and orders each row by that score.

    Parameters
    ----------
    ranker : Ranker
    available : ndarray of bool, shape (n_items,)
        Items that may be served (history items that are not are never added).
    """

    def __init__(self, ranker: Ranker, available: NDArray[np.bool_]) -> None:
        self.ranker = ranker
        self.available = available

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> RankerStage | None:
        ranker = parts.get("ranker")
        return None if ranker is None else cls(ranker, parts["mixer"].available)

    def width(self, k: int) -> int:
        return max(k, self.ranker.config.candidates)

    def run(self, request: Request, candidates: Candidates) -> Candidates:
        features = self.ranker.features
        mixed = ranking_candidates(
            candidates, features, request.seeds, request.users, self.available
        )
        return _scored(self.ranker, request, mixed, "complete")

    def __repr__(self) -> str:
        return f"RankerStage(features={len(self.ranker.feature_names)})"


@register_stage("discover")
class DiscoverStage(Stage):
    """Serves ``mode="discover"``: complements the user has never bought.

    Scores the discovery candidates (:func:`~recset.ranking._candidates.discovery_candidates`:
    the ranker's candidates and the items most co-bought with the user's history, minus the
    user's purchases) with the ranker's discovery model. An anonymous or unknown user has no
    history: every candidate is new and the list is the discovery model's order of them.
    The engine builds it for discover mode only (it is not a configurable stage).
    """

    def __init__(self, ranker: Ranker, available: NDArray[np.bool_]) -> None:
        if ranker.discover_booster is None:
            raise ConfigError(
                "discover mode needs a ranker trained with `[ranker] discover = true` "
                "(`recset train-ranker`)"
            )
        self.ranker = ranker
        self.available = available

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> DiscoverStage | None:
        ranker = parts.get("ranker")
        if ranker is None or ranker.discover_booster is None:
            return None
        return cls(ranker, parts["mixer"].available)

    def width(self, k: int) -> int:
        return max(k, self.ranker.config.discover_mix)

    def run(self, request: Request, candidates: Candidates) -> Candidates:
        features = self.ranker.features
        mixed = discovery_candidates(
            candidates,
            features,
            request.seeds,
            request.users,
            self.available,
            self.ranker.config.discover_candidates,
            self.ranker.config.discover_sar,
        )
        return _scored(self.ranker, request, mixed, "discover")

    def __repr__(self) -> str:
        return f"DiscoverStage(features={len(self.ranker.feature_names)})"


@register_stage("explore")
class ExploreStage(Stage):
    """For a known user, every prefix of length ``m`` of the list holds at least
    ``floor(share * m)`` items the user never bought (when the row has that many).

    Built from the ranker (its ``explore_share`` and the purchase history its features keep);
    skipped when the share is 0.
    """

    def __init__(self, features: FeatureSpace, share: float) -> None:
        self.features = features
        self.share = float(share)

    @classmethod
    def create(cls, parts: Mapping[str, Any]) -> ExploreStage | None:
        ranker = parts.get("ranker")
        if ranker is None or ranker.config.explore_share <= 0:
            return None
        return cls(ranker.features, ranker.config.explore_share)

    def run(self, request: Request, candidates: Candidates) -> Candidates:
        item = candidates.item
        novel = ~self.features.bought(request.users, item)
        valid = item >= 0
        order = np.broadcast_to(np.arange(item.shape[1]), item.shape)
        order = _reserve_share(order, valid, novel, request.k, self.share)
        return candidates.take(order).falling()

    def __repr__(self) -> str:
        return f"ExploreStage(share={self.share})"
