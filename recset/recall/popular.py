"""``popular``: popular items in the seed's related categories, then globally.

It always answers (for a seed unknown to the dataset it returns the global list), which makes
it the fallback and cold-start path of the engine. With ``match_aspect`` (e.g. ``"brand"``)
items sharing that aspect with the seed come first: the "popular in category + important
aspect" variant of shared/seeds/recall-sets-at-marketplace-scale.txt.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset, aspect_values
from recset.recall._base import (
    Candidates,
    RecallBase,
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
    scope : {"related_categories", "category", "global"}
        Where popular items are taken from first: the seed's related categories (needs the
        ``related_categories`` source; its own category only when that source includes it),
        the seed's own category, or everywhere. Lists are always filled up with globally
        popular items, so the source always answers.
    match_aspect : str or None
        Put items that share this aspect with the seed first: ``"brand"``, ``"product_type"``
        or a key of the catalog's ``aspects`` JSON (e.g. ``"color"``).
    half_life_days : float
        Half-life of the temporal decay of event counts, in days; ``0`` counts every event
        fully (no decay).
    event_weights : EventWeights
        Weight of each event type in the popularity score.
    max_candidates : int
        Longest list kept per category.
    """

    scope: Literal["related_categories", "category", "global"] = "category"
    match_aspect: str | None = None
    half_life_days: float = Field(30.0, ge=0)
    event_weights: EventWeights = EventWeights()
    max_candidates: int = Field(200, ge=1)


EVENTS = ("purchase", "add_to_cart", "view")
"""The event types popularity counts, in the order of their weights."""


def aspect_codes(dataset: Dataset, key: str) -> NDArray[np.int32]:
    """Dense codes (n_items,) of one aspect's values, -1 where an item has none."""
    c = dataset.catalog
    if key == "brand":
        return c.brand.astype(np.int32)
    if key == "product_type":
        return c.product_type.astype(np.int32)
    values = aspect_values(c.aspects, key).tolist()
    codes, _ = _factorize(values)
    return codes


def _factorize(values: list[object]) -> tuple[NDArray[np.int32], list[str]]:
    import pandas as pd

    s = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes.astype(np.int32), [str(u) for u in uniques]


@register_recall("popular")
class PopularRecall(RecallBase):
    """Popular items of the seed's scope, filled up with globally popular items.

    Fitted state: ``lists_`` (n_categories + 1, L) int32 item ids padded with -1 (row ``c``:
    the scope of a seed in category ``c``; the last row is the global list), ``scores_`` the
    matching popularity, ``item_category_`` (n_items,), ``match_`` (n_items,) aspect codes
    (all -1 without ``match_aspect``). Unavailable items are never listed.
    """

    Config: ClassVar[type[SourceConfig]] = PopularConfig
    config: PopularConfig
    basis = "popularity"

    @classmethod
    def requirements(cls, config: SourceConfig) -> tuple[str, ...]:
        """``related_categories`` when scoped by it, else nothing."""
        scope = getattr(config, "scope", "")
        return ("related_categories",) if scope == "related_categories" else ()

    _state: ClassVar[tuple[str, ...]] = ("lists_", "scores_", "item_category_", "match_")

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        counts = {
            e: dataset.item_counts(e, half_life_days=self.config.half_life_days or None)
            for e in EVENTS
        }
        return self.fit_counts(dataset, counts, fitted=fitted)

    def popularity(self, counts: Mapping[str, NDArray[np.float32]]) -> NDArray[np.float32]:
        """The weighted sum of the (decayed) per-item counts of each event type."""
        pop = np.zeros(len(next(iter(counts.values()))), dtype=np.float64)
        for event in EVENTS:
            w = getattr(self.config.event_weights, event)
            if w > 0:
                pop += w * counts[event]
        return pop.astype(np.float32)

    def fit_counts(
        self,
        dataset: Dataset,
        counts: Mapping[str, NDArray[np.float32]],
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        """Fit from per-item (decayed) counts of each event type (:data:`EVENTS`) instead of
        the dataset's events (which are not read): what an incremental build keeps."""
        cfg = self.config
        popularity = self.popularity(counts)
        cat = dataset.catalog.category.copy()
        if cfg.scope == "global":
            cat[:] = -1
        n_cat = dataset.n_categories
        L = cfg.max_candidates
        eligible = np.flatnonzero(dataset.catalog.available & (popularity > 0))
        # global order: by popularity, ties broken by item id for determinism
        order = eligible[np.lexsort((eligible, -popularity[eligible]))]
        glob = order[: L + 1]
        by_cat = order[np.argsort(cat[order], kind="stable")]  # stable: popularity order kept
        cats = cat[by_cat]
        starts = np.searchsorted(cats, np.arange(n_cat))
        ends = np.searchsorted(cats, np.arange(n_cat), side="right")
        top = [by_cat[starts[c] : min(ends[c], starts[c] + L + 1)] for c in range(n_cat)]
        related = self._dependency(fitted, "related_categories")
        if cfg.scope == "related_categories" and related is None:
            _log.warning(
                "popular: scope 'related_categories' without that source; using 'category'"
            )
        # Row c: popular items of c's scope, then global items outside it, so that a seed's
        # list never runs short; the last row is the global list itself.
        lists = np.full((n_cat + 1, L + 1), -1, dtype=np.int32)
        lists[n_cat, : len(glob)] = glob
        for c in range(n_cat if cfg.scope != "global" else 0):
            if cfg.scope == "related_categories" and related is not None:
                scope = related.related(c)  # type: ignore[attr-defined]
                members = np.concatenate([top[s] for s in scope]) if len(scope) else glob[:0]
                members = members[np.argsort(-popularity[members], kind="stable")][: L + 1]
            else:
                members = top[c]
            fill = glob[~np.isin(glob, members)][: L + 1 - len(members)]
            row = np.concatenate([members, fill])
            lists[c, : len(row)] = row
        scores = np.where(lists >= 0, popularity[np.maximum(lists, 0)], -np.inf).astype(np.float32)
        self.lists_ = lists
        self.scores_ = scores
        self.item_category_ = cat.astype(np.int32)
        self.match_ = (
            aspect_codes(dataset, cfg.match_aspect)
            if cfg.match_aspect
            else np.full(dataset.n_items, -1, dtype=np.int32)
        )
        _log.info("popular: %d categories, %d eligible items", n_cat, len(eligible))
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Top ``n`` per seed from its scope, then global ones (seed excluded).

        At most ``config.max_candidates`` items per seed, whatever ``n``.
        """
        self._check_fitted()
        seeds = np.asarray(seeds, dtype=np.int32)
        glob_row = self.lists_.shape[0] - 1
        known = (seeds >= 0) & (seeds < len(self.item_category_))
        safe = np.where(known, seeds, 0)
        cat = np.where(known, self.item_category_[safe], -1)
        rows = np.where(cat >= 0, cat, glob_row)
        item, score = self.lists_[rows], self.scores_[rows]
        keep = (item >= 0) & (item != seeds[:, None])
        # lists hold max_candidates + 1 items so that dropping the seed leaves max_candidates;
        # when the seed is not in its list the extra one must go too (before the
        # match_aspect reordering, which reorders the list but does not change it)
        keep &= np.cumsum(keep, axis=1) <= self.config.max_candidates
        if self.config.match_aspect:
            seed_code = np.where(known, self.match_[safe], -1)
            same = (self.match_[np.maximum(item, 0)] == seed_code[:, None]) & (
                seed_code[:, None] >= 0
            )
            # matching items first, popularity order kept within each group
            order = np.argsort(~(same & keep), axis=1, kind="stable")
            item = np.take_along_axis(item, order, axis=1)
            score = np.take_along_axis(score, order, axis=1)
            keep = np.take_along_axis(keep, order, axis=1)
        return compact(item, score, keep, n)
