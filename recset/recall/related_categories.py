"""``related_categories``: categories bought by the same users, the scope of every other source.

Cosine similarity between the columns of the binary user x category purchase matrix gives each
category its top-K related categories above a threshold. Whether the seed's own category is
related depends on ``d``, the mean number of purchases per buyer in that category: where
people buy many items of one category (trading cards, groceries) the own category is
included; where one is enough (cameras) it is not (shared/seeds/recall-sets-at-marketplace-scale).

As a filter it keeps a candidate only when its category is related to the seed's. It proposes
no candidates of its own; ``popular`` with ``scope = "related_categories"`` recalls popular
items of the related categories.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Literal, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pydantic import Field

from recset.data import PURCHASE, Dataset
from recset.recall._base import Candidates, RecallBase, SourceConfig, register_recall
from recset.recall._cooccurrence import ochiai
from recset.signals import Signals, topk_rows

_log = logging.getLogger(__name__)


class RelatedCategoriesConfig(SourceConfig):
    """Config of :class:`RelatedCategories`.

    Attributes
    ----------
    similarity : {"cosine", "phi"}
        ``cosine`` of the binary buyer vectors, or the ``phi`` coefficient (their Pearson
        correlation), which subtracts the overlap expected by chance: a category that nearly
        every user buys from (milk, batteries) is then related only where buyers of the seed
        category buy it more than everyone else does.
    k : int
        Related categories kept per category (the seed's own category not counted).
    min_similarity : float
        Cosine similarity below which a category is not related.
    min_buyers : int
        Categories bought by fewer users get no related categories (too little evidence) and
        are not scoped by the filter.
    own_category_min_purchases : float
        The seed's own category is related when its mean number of purchases per buyer is at
        least this; 0 always includes it.
    """

    similarity: Literal["cosine", "phi"] = "phi"
    k: int = Field(10, ge=1, le=1000)
    min_similarity: float = Field(0.1, ge=0, le=1)
    min_buyers: int = Field(3, ge=1)
    own_category_min_purchases: float = Field(1.5, ge=0)


@register_recall("related_categories")
class RelatedCategories(RecallBase):
    """Related categories by cosine CF on user x category purchases; a scoping filter.

    Fitted state: ``related_`` (n_categories, k) category ids padded with -1, ``similarity_``
    the matching cosines, ``include_own_`` (n_categories,) bool, ``purchases_per_buyer_``
    (n_categories,), ``scoped_`` (n_categories,) bool (enough evidence to filter),
    ``item_category_`` (n_items,).
    """

    is_filter = True
    basis = "category"

    Config: ClassVar[type[SourceConfig]] = RelatedCategoriesConfig
    config: RelatedCategoriesConfig
    _state: ClassVar[tuple[str, ...]] = (
        "related_",
        "similarity_",
        "include_own_",
        "purchases_per_buyer_",
        "scoped_",
        "item_category_",
    )

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        sig = self._signals(dataset, signals)
        uc = sig.user_category  # binary users x categories
        buyers = np.asarray(uc.sum(axis=0), dtype=np.float64).ravel()
        cat = dataset.catalog.category
        ev = dataset.events
        bought = (ev.event == PURCHASE) & (cat[ev.item] >= 0)
        purchases = np.bincount(cat[ev.item[bought]], minlength=dataset.n_categories)
        both = (uc.T @ uc).tocsr().astype(np.float32)
        return self.fit_counts(dataset, both, buyers, purchases, n_users=uc.shape[0])

    def fit_counts(
        self,
        dataset: Dataset,
        both: sp.csr_matrix,
        buyers: NDArray[np.float64],
        purchases: NDArray[np.int64],
        *,
        n_users: int,
    ) -> Self:
        """Fit from the counts the similarity is made of instead of the events (which are
        not read; ``recset.spark`` counts them on Spark): ``both[c, d]`` the users who bought
        from both categories (float32; its diagonal is ignored), ``buyers[c]`` the users who
        bought from ``c``, ``purchases[c]`` its purchase events, ``n_users`` every user."""
        cfg = self.config
        cat = dataset.catalog.category
        buyers = np.asarray(buyers, dtype=np.float64)
        per_buyer = np.divide(purchases, buyers, out=np.zeros_like(buyers), where=buyers > 0)
        both = both.tocsr().astype(np.float32)
        if cfg.similarity == "cosine":
            sim = ochiai(both, buyers.astype(np.float32))
        else:
            sim = _phi(both, buyers, float(n_users))
        sim.setdiag(0)
        sim.eliminate_zeros()
        scoped = buyers >= cfg.min_buyers
        sim = sp.diags(scoped.astype(np.float32)) @ sim  # no related list without evidence
        related, similarity = topk_rows(sim.tocsr(), cfg.k, min_value=max(cfg.min_similarity, 1e-9))
        self.related_ = related
        self.similarity_ = similarity
        self.include_own_ = per_buyer >= cfg.own_category_min_purchases
        self.purchases_per_buyer_ = per_buyer.astype(np.float32)
        self.scoped_ = scoped
        self.item_category_ = cat.astype(np.int32)
        _log.info(
            "related_categories: %d categories, %.1f related on average, own included in %d",
            dataset.n_categories,
            float((related >= 0).sum(axis=1).mean()) if len(related) else 0.0,
            int(self.include_own_.sum()),
        )
        return self

    def related(self, category: int) -> NDArray[np.int32]:
        """Related categories of one category (own first when included), best first."""
        self._check_fitted()
        rel = self.related_[category]
        rel = rel[rel >= 0]
        if self.include_own_[category]:
            rel = np.r_[np.int32(category), rel].astype(np.int32)
        return rel

    def allowed_matrix(self) -> sp.csr_matrix:
        """Boolean (n_categories, n_categories): ``[s, c]`` true when ``c`` is in scope of ``s``."""
        self._check_fitted()
        n = len(self.related_)
        rows = np.repeat(np.arange(n), self.related_.shape[1])
        cols = self.related_.ravel()
        ok = cols >= 0
        own = np.flatnonzero(self.include_own_)
        r = np.r_[rows[ok], own]
        c = np.r_[cols[ok], own]
        return sp.csr_matrix((np.ones(len(r), dtype=bool), (r, c)), shape=(n, n))

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Filter mask (n_seeds, m): the candidate's category is related to the seed's.

        Seeds that are unknown, have no category, or whose category has too little evidence
        are not scoped; candidates without a category are kept.
        """
        self._check_fitted()
        n_items = len(self.item_category_)
        seeds = np.asarray(seeds)
        s_cat = np.where(
            (seeds >= 0) & (seeds < n_items), self.item_category_[np.maximum(seeds, 0)], -1
        )
        c_cat = np.where(items >= 0, self.item_category_[np.maximum(items, 0)], -1)
        free = (s_cat < 0) | ~self.scoped_[np.maximum(s_cat, 0)]
        n_cat = len(self.related_)
        allowed = self.allowed_matrix()
        keys = s_cat.astype(np.int64)[:, None] * n_cat + c_cat
        coo = allowed.tocoo()
        allowed_keys = coo.row.astype(np.int64) * n_cat + coo.col
        inside = np.isin(keys, allowed_keys)
        return free[:, None] | (c_cat < 0) | inside

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """No candidates of its own (see the module docstring): all rows are empty."""
        self._check_fitted()
        return Candidates.empty(len(seeds), n)


def _phi(both: sp.csr_matrix, n: NDArray[np.float64], total: float) -> sp.csr_matrix:
    """Phi coefficient of binary columns on the pattern of ``both``; negatives dropped."""
    coo = both.tocoo()
    a, b = n[coo.row], n[coo.col]
    denom = np.sqrt(a * b * np.maximum(total - a, 0) * np.maximum(total - b, 0))
    phi = np.divide(total * coo.data - a * b, denom, out=np.zeros(len(a)), where=denom > 0)
    keep = phi > 0
    return sp.csr_matrix(
        (phi[keep].astype(np.float32), (coo.row[keep], coo.col[keep])), shape=both.shape
    )
