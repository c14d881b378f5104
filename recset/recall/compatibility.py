"""``compatibility``: aspect-pair rules, as a recall set and as a filter.

A rule pairs a seed aspect with a candidate aspect, e.g. ``model`` -> ``compatible_model``:
a candidate is compatible with a seed when the candidate's ``compatible_model`` equals the
seed's ``model`` (shared/seeds/recall-sets-at-marketplace-scale.txt, "Compatibility").

- As a **recall set** it proposes, for a seed with a value of a rule's seed aspect, the items
  whose candidate aspect has that value, most popular first. It needs no behaviour data, so it
  answers for new items too.
- As a **filter** it removes a candidate that carries a rule's aspect with a value different
  from the seed's, in either direction (a case for model Y is wrong for a phone of model X,
  and a phone of model Y is wrong for a case made for X). Where either side lacks the aspect,
  nothing is known and the candidate is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field

from recset.data import Dataset, decode_aspects
from recset.recall._base import (
    Candidates,
    RecallBase,
    SourceConfig,
    compact,
    register_recall,
)
from recset.signals import Signals

_log = logging.getLogger(__name__)


class AspectRule(SourceConfig):
    """A rule: the candidate's ``candidate`` aspect must equal the seed's ``seed`` aspect."""

    seed: str = "model"
    candidate: str = "compatible_model"


class CompatibilityConfig(SourceConfig):
    """Config of :class:`CompatibilityRecall`.

    Attributes
    ----------
    rules : list of AspectRule
        Default: ``model -> compatible_model`` (accessories for the seed device) and
        ``compatible_model -> compatible_model`` (other accessories for the same device).
    max_candidates : int
        Candidates kept per aspect value.
    view_weight : float
        Weight of a view against a purchase in the popularity that orders the candidates.
    """

    rules: list[AspectRule] = Field(
        default_factory=lambda: [
            AspectRule(seed="model", candidate="compatible_model"),
            AspectRule(seed="compatible_model", candidate="compatible_model"),
        ],
        min_length=1,
    )
    max_candidates: int = Field(100, ge=1, le=10_000)
    view_weight: float = Field(0.05, ge=0)


def _aspect_table(aspects: NDArray[np.object_], keys: list[str]) -> dict[str, list[object]]:
    cols: dict[str, list[object]] = {k: [] for k in keys}
    for raw in aspects:
        d = decode_aspects(raw)
        for k in keys:
            v = d.get(k)
            cols[k].append(None if v is None or v == "" else str(v))
    return cols


@register_recall("compatibility")
class CompatibilityRecall(RecallBase):
    """Compatible items by aspect rules (recall), and the compatibility filter (``keep``).

    Fitted state: ``seed_codes_`` and ``cand_codes_`` (n_rules, n_items) int32 value codes in
    one vocabulary shared by all aspects (-1: no value); ``table_`` (n_values, W) items whose
    candidate aspect has each value, most popular first, padded with -1; ``table_score_`` the
    matching popularity.
    """

    is_filter = True

    Config: ClassVar[type[SourceConfig]] = CompatibilityConfig
    config: CompatibilityConfig
    _state: ClassVar[tuple[str, ...]] = ("seed_codes_", "cand_codes_", "table_", "table_score_")

    def fit(
        self,
        dataset: Dataset,
        signals: Signals | None = None,
        *,
        fitted: Mapping[str, RecallBase] | None = None,
    ) -> Self:
        sig = self._signals(dataset, signals)
        rules = self.config.rules
        keys = sorted({r.seed for r in rules} | {r.candidate for r in rules})
        cols = _aspect_table(dataset.catalog.aspects, keys)
        allvals = pd.Series([v for k in keys for v in cols[k]], dtype=object)
        codes_all, uniques = pd.factorize(allvals, use_na_sentinel=True)
        n = dataset.n_items
        code_of = {k: codes_all[i * n : (i + 1) * n].astype(np.int32) for i, k in enumerate(keys)}
        self.seed_codes_ = np.stack([code_of[r.seed] for r in rules]).astype(np.int32)
        self.cand_codes_ = np.stack([code_of[r.candidate] for r in rules]).astype(np.int32)
        popularity = sig.item_purchases + self.config.view_weight * sig.item_views
        n_values = len(uniques)
        w = self.config.max_candidates
        table = np.full((max(n_values, 1), w), -1, dtype=np.int32)
        # every (value, item) pair of any candidate aspect, ordered by value then popularity
        vals = self.cand_codes_.ravel()
        items = np.tile(np.arange(n, dtype=np.int32), len(rules))
        ok = (vals >= 0) & dataset.catalog.available[items]
        vals, items = vals[ok], items[ok]
        pair = np.unique(vals.astype(np.int64) * n + items)
        vals, items = (pair // n).astype(np.int32), (pair % n).astype(np.int32)
        order = np.lexsort((items, -popularity[items], vals))
        vals, items = vals[order], items[order]
        starts = np.searchsorted(vals, np.arange(n_values))
        pos = np.arange(len(vals)) - starts[vals]
        keep = pos < w
        table[vals[keep], pos[keep]] = items[keep]
        self.table_ = table
        self.table_score_ = np.where(table >= 0, popularity[np.maximum(table, 0)], -np.inf).astype(
            np.float32
        )
        _log.info(
            "compatibility: %d rules, %d aspect values, %d items with a seed aspect",
            len(rules),
            n_values,
            int((self.seed_codes_ >= 0).any(axis=0).sum()),
        )
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        """Items compatible with each seed under any rule, most popular first."""
        self._check_fitted()
        seeds = np.asarray(seeds, dtype=np.int32)
        n_items = self.seed_codes_.shape[1]
        known = (seeds >= 0) & (seeds < n_items)
        safe = np.where(known, seeds, 0)
        parts_i, parts_s = [], []
        for r in range(self.seed_codes_.shape[0]):
            code = np.where(known, self.seed_codes_[r, safe], -1)
            rows = np.maximum(code, 0)
            it = np.where(code[:, None] >= 0, self.table_[rows], -1)
            parts_i.append(it)
            parts_s.append(np.where(it >= 0, self.table_score_[rows], -np.inf))
        item = np.concatenate(parts_i, axis=1)
        score = np.concatenate(parts_s, axis=1).astype(np.float32)
        # merge the rules' lists by popularity, dropping repeats
        order = np.argsort(-score, axis=1, kind="stable")
        item = np.take_along_axis(item, order, axis=1)
        score = np.take_along_axis(score, order, axis=1)
        keep = (item >= 0) & (item != seeds[:, None]) & _first(item)
        return compact(item, score, keep, n)

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Filter mask (n_seeds, m): False where a rule's aspect values disagree."""
        self._check_fitted()
        seeds = np.asarray(seeds)
        n_items = self.seed_codes_.shape[1]
        s_ok = (seeds >= 0) & (seeds < n_items)
        s = np.where(s_ok, seeds, 0)  # a seed past the catalog has no aspects
        c = np.maximum(items, 0)
        conflict = np.zeros(items.shape, dtype=bool)
        for r in range(self.seed_codes_.shape[0]):
            for seed_codes, cand_codes in (
                (self.seed_codes_[r], self.cand_codes_[r]),
                (self.cand_codes_[r], self.seed_codes_[r]),
            ):
                sv = np.where(s_ok, seed_codes[s], -1)
                rows = np.flatnonzero(sv >= 0)  # only a seed with the aspect can disagree
                if len(rows):
                    cv = cand_codes[c[rows]]
                    conflict[rows] |= (cv >= 0) & (cv != sv[rows, None])
        conflict &= items >= 0  # padding (-1) is never filtered out
        return ~conflict


def _first(item: NDArray[np.int32]) -> NDArray[np.bool_]:
    """True at the first occurrence of each id within a row."""
    order = np.argsort(item, axis=1, kind="stable")
    s = np.take_along_axis(item, order, axis=1)
    first = np.ones_like(s, dtype=bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    out = np.empty_like(first)
    np.put_along_axis(out, order, first, axis=1)
    return out
