"""``substitutes``: the filter that drops candidates of the seed's own kind.

A second camera is no complement to a camera. The filter drops a candidate of the seed's own
product (always) and of the seed's own product type (or leaf category, ``by = "category"``),
except in kinds that people do buy several of at once: when the mean number of distinct items
of that kind per basket that holds one is at least ``keep_if_items_per_basket`` (yogurts,
trading cards), the kind's substitutes are kept. The threshold mirrors the seed-category
heuristic of related categories; a category's config can also turn the filter off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset
from recset.recall._base import Candidates, RecallBase, SourceConfig, register_recall
from recset.recall._cooccurrence import units_of
from recset.signals import Signals

_log = logging.getLogger(__name__)


class SubstitutesConfig(SourceConfig):
    """Config of :class:`SubstitutesFilter`.

    Attributes
    ----------
    by : {"product_type", "category"}
        What makes two items substitutes (items without a product type fall back to their
        category).
    keep_if_items_per_basket : float
        Kinds with at least this many distinct items per basket (that holds one) keep their
        substitutes; ``0`` keeps all, a large value drops all.
    """

    by: Literal["product_type", "category"] = "product_type"
    keep_if_items_per_basket: float = Field(1.3, ge=0)


@register_recall("substitutes")
class SubstitutesFilter(RecallBase):
    """Drops same-product and same-kind candidates (a filter; it recalls nothing).

    Fitted state: ``kind_`` (n_items,) kind id per item (-1 unknown), ``unit_`` (n_items,)
    product unit, ``drop_kind_`` (n_kinds,) bool, ``items_per_basket_`` (n_kinds,).
    """

    is_filter = True

    Config: ClassVar[type[SourceConfig]] = SubstitutesConfig
    config: SubstitutesConfig
    _state: ClassVar[tuple[str, ...]] = ("kind_", "unit_", "drop_kind_", "items_per_basket_")

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        sig = self._signals(dataset, signals)
        cat = dataset.catalog
        n_types = dataset.n_product_types
        if self.config.by == "product_type":
            # kinds: product types, then categories for items without a type
            kind = np.where(
                cat.product_type >= 0,
                cat.product_type,
                np.where(cat.category >= 0, n_types + cat.category, -1),
            )
        else:
            kind = cat.category.copy()
        kind = kind.astype(np.int32)
        n_kinds = int(kind.max()) + 1 if (kind >= 0).any() else 0
        b = sig.baskets
        entry_kind = kind[b.item]
        g = np.repeat(np.arange(len(b)), b.sizes())
        ok = entry_kind >= 0
        # distinct items of each kind per basket, over baskets holding the kind
        key = g[ok].astype(np.int64) * max(n_kinds, 1) + entry_kind[ok]
        uniq, counts = np.unique(key, return_counts=True)
        k_of = (uniq % max(n_kinds, 1)).astype(np.int64)
        baskets_with = np.bincount(k_of, minlength=n_kinds)
        items_in = np.bincount(k_of, weights=counts, minlength=n_kinds)
        per_basket = np.divide(items_in, baskets_with, out=np.ones(n_kinds), where=baskets_with > 0)
        self.kind_ = kind
        self.unit_ = units_of(dataset, "product")[0]
        self.items_per_basket_ = per_basket.astype(np.float32)
        self.drop_kind_ = per_basket < self.config.keep_if_items_per_basket
        _log.info(
            "substitutes: %d of %d kinds drop their substitutes",
            int(self.drop_kind_.sum()),
            n_kinds,
        )
        return self

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Filter mask (n_seeds, m): False for the seed's own product and droppable kind."""
        self._check_fitted()
        seeds = np.asarray(seeds)
        n = len(self.kind_)
        s_ok = (seeds >= 0) & (seeds < n)
        s = np.maximum(seeds, 0)
        c = np.maximum(items, 0)
        s_kind = np.where(s_ok, self.kind_[s], -1)[:, None]
        c_kind = np.where(items >= 0, self.kind_[c], -1)
        # index -1 (no kind) reads the appended False: a catalog without product types or
        # categories has no kinds at all, and then nothing is dropped for its kind
        droppable = np.append(self.drop_kind_, False)[s_kind]
        same_kind = (s_kind == c_kind) & droppable
        same_unit = np.where(s_ok, self.unit_[s], -1)[:, None] == np.where(
            items >= 0, self.unit_[c], -2
        )
        return ~(same_kind | same_unit)

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """A filter proposes nothing: all rows are empty."""
        self._check_fitted()
        return Candidates.empty(len(seeds), n)
