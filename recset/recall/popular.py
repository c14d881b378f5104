"""``popular``: the most popular items in the seed's category, then globally.

It always answers (for a seed unknown to the dataset it returns the global list), which makes
it the fallback and cold-start path of the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset
from recset.recall._base import (
    Candidates,
    RecallBase,
    RecallSet,
    SourceConfig,
    compact,
    register_recall,
)
from recset.signals import Signals

_log = logging.getLogger(__name__)


class EventWeights(SourceConfig):
    """How much one event of each type counts towards popularity."""

    purchase: float = Field(1.0, ge=0)
    add_to_cart: float = Field(0.3, ge=0)
    view: float = Field(0.02, ge=0)


class PopularConfig(SourceConfig):
    """Config of :class:`PopularRecall`.

    Attributes
    ----------
    scope : {"category", "global"}
        Rank within the seed's category first (then fill globally), or globally only.
    half_life_days : float
        Half-life of the temporal decay of event counts, in days; ``0`` counts every event
        fully (no decay).
    event_weights : EventWeights
        Weight of each event type in the popularity score.
    max_candidates : int
        Longest list kept per category.
    """

    scope: Literal["category", "global"] = "category"
    half_life_days: float = Field(30.0, ge=0)
    event_weights: EventWeights = EventWeights()
    max_candidates: int = Field(200, ge=1)


@register_recall("popular")
class PopularRecall(RecallBase):
    """Popular items in the seed's category, filled up with globally popular items.

    Fitted state: ``lists_`` (n_categories + 1, L) int32 item ids padded with -1 (the last row
    is the global list), ``scores_`` the matching popularity, ``item_category_`` (n_items,).
    Unavailable items are never listed.
    """

    Config: ClassVar[type[SourceConfig]] = PopularConfig
    config: PopularConfig
    _state: ClassVar[tuple[str, ...]] = ("lists_", "scores_", "item_category_")

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallSet] | None = None,
    ) -> Self:
        cfg = self.config
        pop = np.zeros(dataset.n_items, dtype=np.float64)
        for event in ("purchase", "add_to_cart", "view"):
            w = getattr(cfg.event_weights, event)
            if w > 0:
                pop += w * dataset.item_counts(event, half_life_days=cfg.half_life_days or None)
        popularity = pop.astype(np.float32)
        cat = dataset.catalog.category.copy()
        if cfg.scope == "global":
            cat[:] = -1
        n_cat = dataset.n_categories
        L = cfg.max_candidates
        eligible = np.flatnonzero(dataset.catalog.available & (popularity > 0))
        # global list: by popularity, ties broken by item id for determinism
        order = eligible[np.lexsort((eligible, -popularity[eligible]))]
        glob = order[: L + 1]
        # Row c: category c's items by popularity, then global items outside c, so that a
        # seed's list never runs short; the last row is the global list itself.
        lists = np.full((n_cat + 1, L + 1), -1, dtype=np.int32)
        lists[n_cat, : len(glob)] = glob
        by_cat = order[np.argsort(cat[order], kind="stable")]  # stable: popularity order kept
        cats = cat[by_cat]
        starts = np.searchsorted(cats, np.arange(n_cat))
        ends = np.searchsorted(cats, np.arange(n_cat), side="right")
        for c in range(n_cat):
            members = by_cat[starts[c] : min(ends[c], starts[c] + L + 1)]
            fill = glob[cat[glob] != c][: L + 1 - len(members)]
            row = np.concatenate([members, fill])
            lists[c, : len(row)] = row
        scores = np.where(lists >= 0, popularity[np.maximum(lists, 0)], -np.inf).astype(np.float32)
        self.lists_ = lists
        self.scores_ = scores
        self.item_category_ = cat.astype(np.int32)
        _log.info("popular: %d categories, %d eligible items", n_cat, len(eligible))
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Top ``n`` per seed: its category's popular items, then global ones (seed excluded)."""
        self._check_fitted()
        seeds = np.asarray(seeds, dtype=np.int32)
        glob_row = self.lists_.shape[0] - 1
        known = (seeds >= 0) & (seeds < len(self.item_category_))
        cat = np.where(known, self.item_category_[np.where(known, seeds, 0)], -1)
        if self.config.scope == "global":
            cat[:] = -1
        rows = np.where(cat >= 0, cat, glob_row)
        item, score = self.lists_[rows], self.scores_[rows]
        return compact(item, score, (item >= 0) & (item != seeds[:, None]), n)
