"""The built-in ranker features, one class each, registered in the default column order.

The order of the classes in this module *is* the order of the feature columns (after the
per-source columns): LightGBM with ``feature_fraction < 1`` samples columns by position, so
moving a class changes trained models. Append new features at the end.
"""

from __future__ import annotations

import logging
from functools import cached_property
from typing import ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from recset.data import aspect_tokens
from recset.ranking._feature_base import FeatureBatch, FitContext, RankerFeature, register_feature
from recset.signals import csr_gather

_log = logging.getLogger(__name__)

_DAY = 86_400.0

_PADDED_TOKENS = 16
"""``user_aspect_share`` gathers the candidates' aspect tokens from an items x tokens matrix
when no item has more than this many tokens (else from the token lists)."""


def _n_groups(ids: NDArray[np.integer]) -> int:
    """Key multiplier of (user, group) pairs: the largest id + 1, at least 1."""
    return int(max(ids.max(initial=-1) + 1, 1))


def _same(a: NDArray[np.integer], b: NDArray[np.integer]) -> NDArray[np.float64]:
    """1 where two known (>= 0) ids agree, 0 where they differ, NaN where one is unknown."""
    return np.where((a >= 0) & (b >= 0), (a == b).astype(float), np.nan)


# -- the candidate in the mix ------------------------------------------------------------
@register_feature("n_sources")
class NSources(RankerFeature):
    """Number of sources that proposed the candidate."""

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        # a matrix-vector product: numpy's sum over a short row axis costs ~5x more
        proposed = (batch.source_rank >= 0).astype(np.float64)
        return proposed @ np.ones(proposed.shape[1])


@register_feature("fused_score")
class FusedScore(RankerFeature):
    """The mixer's fused score (NaN where not finite)."""

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        fused = batch.mixed.score.ravel().astype(np.float64)
        return np.where(np.isfinite(fused), fused, np.nan)


@register_feature("fused_rank")
class FusedRank(RankerFeature):
    """The candidate's position in the mix (0-based)."""

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return np.tile(np.arange(batch.width, dtype=np.float64), batch.n_seeds)


# -- the candidate's popularity ----------------------------------------------------------
@register_feature("cand_pop")
class CandPop(RankerFeature):
    """The candidate's purchases per million purchases."""

    _state = ("item_pop_",)

    def fit(self, data: FitContext) -> Self:
        self.item_pop_ = data.item_pop
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_pop_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_pop_.astype(np.float64)


@register_feature("cand_pop_log")
class CandPopLog(CandPop):
    """``log1p`` of ``cand_pop``.

    Taken in float64: numpy's float32 ``log1p`` has one implementation per vector extension
    (AVX-512 or AVX2), and they differ in the last bit; float64 differences vanish when the
    feature matrix rounds to float32 (this and ``user_n_purchases_log`` differed between
    such machines on Instacart, the other logs did not)."""

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return np.log1p(self.item_pop_[batch.c].astype(np.float64))

    def item_values(self) -> NDArray[np.float64] | None:
        return np.log1p(self.item_pop_.astype(np.float64))


@register_feature("cand_pop_in_category")
class CandPopInCategory(RankerFeature):
    """The candidate's share of its category's purchases (NaN without a category)."""

    _state = ("item_pop_in_cat_",)

    def fit(self, data: FitContext) -> Self:
        pop, cat = data.pop, data.dataset.catalog.category
        cat_tot = np.bincount(
            np.maximum(cat, 0),
            weights=pop * (cat >= 0),
            minlength=max(data.dataset.n_categories, 1),
        )
        in_cat = np.divide(
            pop,
            cat_tot[np.maximum(cat, 0)],
            out=np.full(data.n_items, np.nan),
            where=(cat >= 0) & (cat_tot[np.maximum(cat, 0)] > 0),
        )
        self.item_pop_in_cat_ = in_cat.astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_pop_in_cat_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_pop_in_cat_.astype(np.float64)


@register_feature("cand_trend")
class CandTrend(RankerFeature):
    """The candidate's recent (decayed) popularity share over its overall share."""

    _state = ("item_trend_",)

    def fit(self, data: FitContext) -> Self:
        pop = data.pop
        recent = data.dataset.item_counts("purchase", half_life_days=data.trend_half_life_days)
        total = max(float(pop.sum()), 1.0)
        total_recent = max(float(recent.sum()), 1e-9)
        trend = np.divide(
            recent / total_recent, pop / total, out=np.full(data.n_items, np.nan), where=pop > 0
        )
        self.item_trend_ = trend.astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_trend_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_trend_.astype(np.float64)


@register_feature("cand_repeat_rate")
class CandRepeatRate(RankerFeature):
    """Share of the candidate's buyers who bought it on two trips or more."""

    _state = ("item_repeat_",)

    def fit(self, data: FitContext) -> Self:
        pair_item = data.ui_keys % data.n_items
        buyers = np.bincount(pair_item, minlength=data.n_items).astype(np.float64)
        repeaters = np.bincount(pair_item, weights=data.ui_trips >= 2, minlength=data.n_items)
        repeat = np.divide(repeaters, buyers, out=np.full(data.n_items, np.nan), where=buyers > 0)
        self.item_repeat_ = repeat.astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_repeat_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_repeat_.astype(np.float64)


@register_feature("seed_pop_log")
class SeedPopLog(CandPop):
    """``log1p`` of the seed's purchases per million (NaN for an unknown seed)."""

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return np.log1p(batch.seed_value(self.item_pop_))

    def item_values(self) -> NDArray[np.float64] | None:
        return None  # the seed's, not the candidate's


# -- seed x candidate --------------------------------------------------------------------
@register_feature("category_relatedness")
class CategoryRelatedness(RankerFeature):
    """Relatedness of the seed's and the candidate's categories (NaN when not related)."""

    _state = ("category_", "cat_rel_keys_", "cat_rel_vals_")

    def fit(self, data: FitContext) -> Self:
        rel = data.category_relatedness
        if rel is not None and rel.nnz:
            coo = rel.tocoo()
            # the multiplier transform uses (the largest category code in use + 1), so the
            # keys agree even when the vocabulary holds categories no item has
            n_cat = _n_groups(data.category)
            keep = (coo.row < n_cat) & (coo.col < n_cat)
            ck = coo.row[keep].astype(np.int64) * n_cat + coo.col[keep]
            order = np.argsort(ck)
            vals = coo.data[keep][order].astype(np.float64)
            self.cat_rel_keys_, self.cat_rel_vals_ = ck[order], vals
        else:
            self.cat_rel_keys_, self.cat_rel_vals_ = np.zeros(0, np.int64), np.zeros(0)
        self.category_ = data.category
        return self

    @cached_property
    def _n_cat(self) -> int:
        return _n_groups(self.category_)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        if not len(self.cat_rel_keys_):  # no related categories: nothing to look up
            return batch.nan()
        s_cat = batch.seed_code(self.category_).astype(np.int64)
        c_cat = self.category_[batch.c].astype(np.int64)
        rel = batch.lookup(self.cat_rel_keys_, self.cat_rel_vals_, s_cat * self._n_cat + c_cat)
        rel[(s_cat < 0) | (c_cat < 0)] = np.nan
        return rel


@register_feature("same_brand")
class SameBrand(RankerFeature):
    """1 when seed and candidate share their brand, 0 when not, NaN when one has none."""

    _state = ("brand_",)

    def fit(self, data: FitContext) -> Self:
        self.brand_ = data.brand
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        a = self.brand_
        return _same(batch.seed_code(a), a[batch.c])


@register_feature("same_category")
class SameCategory(RankerFeature):
    """1 when seed and candidate share their category, 0 when not, NaN when one has none."""

    _state = ("category_",)

    def fit(self, data: FitContext) -> Self:
        self.category_ = data.category
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        a = self.category_
        return _same(batch.seed_code(a), a[batch.c])


@register_feature("same_type")
class SameType(RankerFeature):
    """1 when seed and candidate share their product type, 0 when not, NaN when unknown."""

    _state = ("product_type_",)

    def fit(self, data: FitContext) -> Self:
        self.product_type_ = data.product_type
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        a = self.product_type_
        return _same(batch.seed_code(a), a[batch.c])


@register_feature("price_ratio_log")
class PriceRatioLog(RankerFeature):
    """``log(candidate price / seed price)``; NaN unless both prices are positive."""

    _state = ("price_",)

    def fit(self, data: FitContext) -> Self:
        self.price_ = data.price
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        ratio = self.price_[batch.c].astype(np.float64) / batch.seed_value(self.price_)
        return np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1.0)), np.nan)


def _text_vectors(data: FitContext) -> NDArray[np.float32]:
    """The items' text vectors as float32 (no columns when the fit has none)."""
    emb = data.embeddings
    if emb is None:
        return np.zeros((data.n_items, 0), np.float32)
    return np.asarray(emb, dtype=np.float32)


@register_feature("text_similarity")
class TextSimilarity(RankerFeature):
    """Dot product of the seed's and candidate's text embeddings (NaN for a zero vector)."""

    _state = ("embeddings_",)

    def fit(self, data: FitContext) -> Self:
        self.embeddings_ = _text_vectors(data)
        return self

    @cached_property
    def _zero(self) -> NDArray[np.bool_]:
        """Whether each item's vector is all zeros (computed once, not on every transform)."""
        return ~self.embeddings_.any(axis=1)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        emb = self.embeddings_
        if not emb.shape[1]:
            return batch.nan()
        # one seed per row: its vector is read once, not once per candidate
        seed = batch.sc[:: batch.width] if batch.width else batch.sc[:0]
        cand_vec = np.take(emb, batch.c, axis=0).reshape(batch.n_seeds, batch.width, -1)
        sim = np.einsum("bwd,bd->bw", cand_vec, emb[seed]).ravel().astype(np.float64)
        zero = np.repeat(self._zero[seed], batch.width) | self._zero[batch.c]
        return np.where(batch.s_ok & ~zero, sim, np.nan)


@register_feature("compatible")
class Compatible(RankerFeature):
    """0 when a compatibility rule codes seed and candidate differently, 1 when some rule
    codes them alike (and none differently), NaN when no rule applies to both."""

    _state = ("compat_seed_", "compat_cand_")

    def fit(self, data: FitContext) -> Self:
        codes = data.compat_codes
        if codes is None:
            codes = (
                np.full((0, data.n_items), -1, np.int32),
                np.full((0, data.n_items), -1, np.int32),
            )
        self.compat_seed_ = codes[0].astype(np.int32)
        self.compat_cand_ = codes[1].astype(np.int32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        if not self.compat_seed_.shape[0] or not len(batch):
            return batch.nan()
        # all rules at once; the seed's codes read once per seed row, not once per slot
        w, n_rules = batch.width, self.compat_seed_.shape[0]
        sv = np.where(batch.s_ok[::w], self.compat_seed_[:, batch.sc[::w]], -1)
        sv = sv.reshape(n_rules, batch.n_seeds, 1)  # broadcast along each seed row
        cv = np.take(self.compat_cand_, batch.c, axis=1).reshape(n_rules, batch.n_seeds, w)
        both = (sv >= 0) & (cv >= 0)
        same = sv == cv
        agree = (both & same).any(axis=0).ravel()
        clash = (both & ~same).any(axis=0).ravel()
        return np.where(clash, 0.0, np.where(agree, 1.0, np.nan))


@register_feature("cand_age_days")
class CandAgeDays(RankerFeature):
    """Days from the candidate's first event to the end of the fitted data."""

    _state = ("item_first_seen_", "ref_time_")

    def fit(self, data: FitContext) -> Self:
        ev = data.dataset.events
        first = np.full(data.n_items, np.inf)
        np.minimum.at(first, ev.item, ev.timestamp.astype(np.float64))
        self.item_first_seen_ = first
        self.ref_time_ = np.array(float(data.dataset.time_range[1]))
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        age = (float(self.ref_time_) - self.item_first_seen_[batch.c]) / _DAY
        return np.where(np.isfinite(age), age, np.nan)

    def item_values(self) -> NDArray[np.float64] | None:
        age = (float(self.ref_time_) - self.item_first_seen_) / _DAY
        return np.where(np.isfinite(age), age, np.nan)


# -- the user x the candidate ------------------------------------------------------------
class _UserItem(RankerFeature):
    """Base of the features reading the per-(user, item) purchase table."""

    personal = True

    _state: ClassVar[tuple[str, ...]] = ("ui_keys_",)

    def fit(self, data: FitContext) -> Self:
        self.ui_keys_ = data.ui_keys
        return self

    def _lookup(
        self, values: NDArray[np.float64], batch: FeatureBatch, missing: float = np.nan
    ) -> NDArray[np.float64]:
        return batch.lookup(self.ui_keys_, values, missing=missing)


@register_feature("user_bought_cand")
class UserBoughtCand(_UserItem):
    """How many times the user bought the candidate (NaN for an unknown user)."""

    _state = ("ui_keys_", "ui_count_")

    def fit(self, data: FitContext) -> Self:
        self.ui_count_ = data.ui_count
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        count = self._lookup(self.ui_count_, batch, missing=0.0)
        return np.where(batch.u_ok, count, np.nan)


@register_feature("user_days_since_cand")
class UserDaysSinceCand(_UserItem):
    """Days between the user's last purchase of the candidate and their last purchase.

    Relative to the user's own last purchase, not to the end of the data: the same at
    training and serving time whenever the user last shopped.
    """

    _state = ("ui_keys_", "ui_last_", "user_last_")

    def fit(self, data: FitContext) -> Self:
        self.ui_last_, self.user_last_ = data.ui_last, data.user_last
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        last = self._lookup(self.ui_last_, batch)
        return np.where(batch.u_ok, (self.user_last_[batch.uu] - last) / _DAY, np.nan)


@register_feature("user_trips_since_cand")
class UserTripsSinceCand(_UserItem):
    """The user's trips since the last one holding the candidate."""

    _state = ("ui_keys_", "ui_last_trip_", "user_trips_")

    def fit(self, data: FitContext) -> Self:
        self.ui_last_trip_, self.user_trips_ = data.ui_last_trip, data.user_trips
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        last_trip = self._lookup(self.ui_last_trip_, batch)
        n_trips = self.user_trips_[batch.uu].astype(np.float64)
        return np.where(batch.u_ok, n_trips - 1.0 - last_trip, np.nan)


@register_feature("user_cand_trip_share")
class UserCandTripShare(_UserItem):
    """Share of the user's trips holding the candidate."""

    _state = ("ui_keys_", "ui_trips_", "user_trips_")

    def fit(self, data: FitContext) -> Self:
        self.ui_trips_, self.user_trips_ = data.ui_trips, data.user_trips
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        trips = self._lookup(self.ui_trips_, batch, missing=0.0)
        n_trips = self.user_trips_[batch.uu].astype(np.float64)
        return np.where(batch.u_ok, trips / np.maximum(n_trips, 1.0), np.nan)


@register_feature("user_category_share")
class UserCategoryShare(RankerFeature):
    """Share of the user's purchases in the candidate's category."""

    personal = True

    _state = ("category_", "uc_keys_", "uc_share_")

    def fit(self, data: FitContext) -> Self:
        self.category_ = data.category
        cat = data.dataset.catalog.category
        self.uc_keys_, self.uc_share_ = data.share(
            data.buyer, cat[data.bought], _n_groups(data.category)
        )
        return self

    @cached_property
    def _n_cat(self) -> int:
        return _n_groups(self.category_)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        c_cat = self.category_[batch.c].astype(np.int64)
        query = batch.uu * self._n_cat + c_cat
        uc = batch.lookup(self.uc_keys_, self.uc_share_, query, missing=0.0)
        return np.where(batch.u_ok & (c_cat >= 0), uc, np.nan)


@register_feature("user_brand_share")
class UserBrandShare(RankerFeature):
    """Share of the user's purchases of the candidate's brand."""

    personal = True

    _state = ("brand_", "ub_keys_", "ub_share_")

    def fit(self, data: FitContext) -> Self:
        self.brand_ = data.brand
        self.ub_keys_, self.ub_share_ = data.share(
            data.buyer, data.dataset.catalog.brand[data.bought], _n_groups(data.brand)
        )
        return self

    @cached_property
    def _n_brands(self) -> int:
        return _n_groups(self.brand_)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        c_brand = self.brand_[batch.c].astype(np.int64)
        query = batch.uu * self._n_brands + c_brand
        ub = batch.lookup(self.ub_keys_, self.ub_share_, query, missing=0.0)
        return np.where(batch.u_ok & (c_brand >= 0), ub, np.nan)


@register_feature("user_aspect_share")
class UserAspectShare(RankerFeature):
    """Mean over the candidate's aspect tokens (colour, organic, ...) of the user's share of
    purchases carrying each; NaN for an unknown user or a candidate without kept tokens."""

    personal = True

    _state = ("item_tok_indptr_", "item_tok_", "ut_keys_", "ut_share_")

    def fit(self, data: FitContext) -> Self:
        indptr, tok = aspect_tokens(data.dataset.catalog.aspects)
        bought = data.bought
        self.item_tok_indptr_, self.item_tok_ = indptr, tok
        self.ut_keys_, self.ut_share_ = data.share(
            np.repeat(data.buyer, np.diff(indptr)[bought]),
            tok[csr_gather(indptr, bought)],
            _n_groups(tok),
        )
        return self

    @cached_property
    def _n_tokens(self) -> int:
        """The key multiplier of ``ut_keys_`` (computed once, not on every transform)."""
        return _n_groups(self.item_tok_)

    @cached_property
    def _padded(self) -> tuple[NDArray[np.int32], NDArray[np.int64]] | None:
        """Each item's tokens as a row of an (n_items, most tokens of an item) matrix padded
        with ``_n_tokens`` (a slot that reads 0), and each item's number of tokens; None
        when some item has more than :data:`_PADDED_TOKENS` (the rows would be mostly
        padding). Built once, so a call gathers the candidates' tokens in one step."""
        indptr, tok = self.item_tok_indptr_, self.item_tok_
        counts = np.diff(indptr)
        width = int(counts.max(initial=0))
        if width > _PADDED_TOKENS:
            return None
        pad = np.full((len(counts), width), self._n_tokens, np.int32)
        col = np.arange(len(tok)) - np.repeat(indptr[:-1], counts)
        pad[np.repeat(np.arange(len(counts)), counts), col] = tok
        return pad, counts

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        padded = self._padded
        if padded is not None:
            return self._transform_padded(batch, *padded)
        c = batch.c
        n_of = self.item_tok_indptr_[c + 1] - self.item_tok_indptr_[c]
        row = np.repeat(np.arange(len(c)), n_of)
        tok = self.item_tok_[csr_gather(self.item_tok_indptr_, c)]
        share = np.zeros(len(tok))  # 0 where the user never bought the token
        if len(batch):
            # a seed row's slots share their user: that user's stretch of the table (the
            # keys user * n_tokens + token) is spread over a dense per-token vector once per
            # row, and the row's tokens read from it
            w, n_tok, keys = batch.width, self._n_tokens, self.ut_keys_
            users, ok = batch.u[::w], batch.u_ok[::w]
            lo = np.searchsorted(keys, users * n_tok)
            hi = np.searchsorted(keys, (users + 1) * n_tok)
            end = np.cumsum(n_of.reshape(batch.n_seeds, w).sum(axis=1))
            dense = np.zeros(n_tok)
            for r in np.flatnonzero(ok & (hi > lo)):
                a, b, t1 = int(lo[r]), int(hi[r]), int(end[r])
                t0 = t1 - int(n_of[r * w : (r + 1) * w].sum())
                user_tok = keys[a:b] - int(users[r]) * n_tok
                dense[user_tok] = self.ut_share_[a:b]
                share[t0:t1] = dense[tok[t0:t1]]
                dense[user_tok] = 0.0
        total = np.bincount(row, weights=share, minlength=len(c))
        mean = total / np.maximum(n_of, 1)
        return np.where(batch.u_ok & (n_of > 0), mean, np.nan)

    def _transform_padded(
        self, batch: FeatureBatch, pad: NDArray[np.int32], counts: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        """:meth:`transform` on the padded token rows (:attr:`_padded`): the same values, the
        shares summed token by token in the same order."""
        tok = np.take(pad, batch.c, axis=0)  # (n_slots, width)
        n_of = counts[batch.c]
        share = np.zeros(tok.shape)  # 0 where the user never bought the token (or padding)
        if len(batch) and tok.shape[1]:
            w, n_tok, keys = batch.width, self._n_tokens, self.ut_keys_
            users, ok = batch.u[::w], batch.u_ok[::w]
            lo = np.searchsorted(keys, users * n_tok)
            hi = np.searchsorted(keys, (users + 1) * n_tok)
            dense = np.zeros(n_tok + 1)  # the last slot is the padding's, always 0
            for r in np.flatnonzero(ok & (hi > lo)):
                a, b = int(lo[r]), int(hi[r])
                user_tok = keys[a:b] - int(users[r]) * n_tok
                dense[user_tok] = self.ut_share_[a:b]
                share[r * w : (r + 1) * w] = dense[tok[r * w : (r + 1) * w]]
                dense[user_tok] = 0.0
        total = np.zeros(len(tok))
        for k in range(tok.shape[1]):  # in token order, as the bincount above adds them
            total += share[:, k]
        mean = total / np.maximum(n_of, 1)
        return np.where(batch.u_ok & (n_of > 0), mean, np.nan)


# -- the user ----------------------------------------------------------------------------
@register_feature("user_n_purchases_log")
class UserNPurchasesLog(RankerFeature):
    """``log1p`` of the user's purchases."""

    personal = True

    _state = ("user_n_",)

    def fit(self, data: FitContext) -> Self:
        self.user_n_ = data.user_n
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        # float64, as cand_pop_log: the same float32 bits on every CPU
        return np.where(batch.u_ok, np.log1p(self.user_n_[batch.uu].astype(np.float64)), np.nan)


@register_feature("user_n_trips_log")
class UserNTripsLog(RankerFeature):
    """``log1p`` of the user's trips."""

    personal = True

    _state = ("user_trips_",)

    def fit(self, data: FitContext) -> Self:
        self.user_trips_ = data.user_trips
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        n_trips = self.user_trips_[batch.uu].astype(np.float64)
        return np.where(batch.u_ok, np.log1p(n_trips), np.nan)


# -- opt-in ------------------------------------------------------------------------------
@register_feature("user_cand_due")
class UserCandDue(_UserItem):
    """How due a repeat purchase is: the user's trips from the last one holding the
    candidate to the next trip, over the user's mean gap (in trips) between trips holding
    it. 1: the next trip is as far from the last purchase as the user's usual interval;
    above 1: overdue. NaN for an unknown user or an item the user bought on fewer than two
    trips. Opt-in (``extra_features``).
    """

    opt_in = True
    _state = ("ui_keys_", "ui_trips_", "ui_first_trip_", "ui_last_trip_", "user_trips_")

    def fit(self, data: FitContext) -> Self:
        self.ui_trips_, self.user_trips_ = data.ui_trips, data.user_trips
        self.ui_first_trip_, self.ui_last_trip_ = data.ui_first_trip, data.ui_last_trip
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        trips = self._lookup(self.ui_trips_, batch, missing=0.0)
        first = self._lookup(self.ui_first_trip_, batch)
        last = self._lookup(self.ui_last_trip_, batch)
        n_trips = self.user_trips_[batch.uu].astype(np.float64)
        ok = batch.u_ok & (trips >= 2)
        gap = np.where(ok, (last - first) / np.maximum(trips - 1.0, 1.0), 1.0)
        return np.where(ok, (n_trips - last) / gap, np.nan)


@register_feature("user_cand_days_due")
class UserCandDaysDue(_UserItem):
    """How due a repeat purchase is *at the request's time*: the days from the user's last
    purchase of the candidate to the request, over the user's mean gap in days between
    trips holding it ((last - first purchase) / (trips - 1)). 1: as long as usual; above 1:
    overdue.

    ``user_cand_due`` counts trips up to the user's next one, which is right when the history
    is current; this one reads the clock, so it still knows how long ago the last purchase
    was when the user has shopped since without the engine seeing it (a model trained
    before the request). NaN for an unknown user, an item bought on fewer than two trips or
    all at one time, or a request before the last purchase. Opt-in (``extra_features``).
    """

    opt_in = True
    _state = ("ui_keys_", "ui_trips_", "ui_first_", "ui_last_")

    def fit(self, data: FitContext) -> Self:
        self.ui_trips_ = data.ui_trips
        self.ui_first_, self.ui_last_ = data.ui_first, data.ui_last
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        trips = self._lookup(self.ui_trips_, batch, missing=0.0)
        first = self._lookup(self.ui_first_, batch)
        last = self._lookup(self.ui_last_, batch)
        since = batch.t.astype(np.float64) - last
        ok = batch.u_ok & (trips >= 2) & (last > first) & (since >= 0)
        gap = np.where(ok, (last - first) / np.maximum(trips - 1.0, 1.0), 1.0)
        return np.where(ok, since / gap, np.nan)


@register_feature("user_cand_days_now")
class UserCandDaysNow(_UserItem):
    """Days from the user's last purchase of the candidate to the request's time (NaN for an
    unknown user, an item the user never bought, or a request before the purchase).
    ``user_days_since_cand`` measures to the user's own last trip instead. Opt-in."""

    opt_in = True
    _state = ("ui_keys_", "ui_last_")

    def fit(self, data: FitContext) -> Self:
        self.ui_last_ = data.ui_last
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        since = (batch.t.astype(np.float64) - self._lookup(self.ui_last_, batch)) / 86400.0
        return np.where(batch.u_ok & (since >= 0), since, np.nan)


_TIME_BANDS = (12, 16, 20)
"""Local hours where :func:`trip_time_bucket`'s day bands start (after 0: night and morning)."""

N_TIME_BUCKETS = 2 * (len(_TIME_BANDS) + 1)
"""Time buckets of a trip: four bands of the local day x weekday / weekend."""

_TIME_PRIOR_TRIPS = 2.0
"""Pseudo-trips at the user's overall share that shrink ``user_cand_time_share``."""


def trip_time_bucket(t: NDArray[np.integer], offset_hours: int) -> NDArray[np.int64]:
    """The time bucket (0..:data:`N_TIME_BUCKETS` - 1) of epoch seconds ``t``: the band of
    the local day (before noon, 12-16, 16-20, from 20) x weekend (Saturday, Sunday)."""
    local = np.asarray(t, dtype=np.int64) + int(offset_hours) * 3600
    band = np.searchsorted(np.asarray(_TIME_BANDS), (local // 3600) % 24, side="right")
    weekend = ((local // 86400 + 3) % 7) >= 5  # 1970-01-01 was a Thursday (Monday = 0)
    return band.astype(np.int64) * 2 + weekend


@register_feature("user_cand_time_share")
class UserCandTimeShare(_UserItem):
    """The user's trip share of the candidate among the user's trips at the request's time
    of the week (:func:`trip_time_bucket`: band of the local day x weekend, local time from
    :func:`quiet_hours_offset`), shrunk toward the user's overall trip share by
    :data:`_TIME_PRIOR_TRIPS` pseudo-trips: ``(trips in the bucket holding it + 2 x share) /
    (trips in the bucket + 2)``. A Saturday-morning stock-up and a weekday-evening top-up
    hold different items. NaN for an unknown user. Opt-in."""

    opt_in = True
    _state = (
        "ui_keys_",
        "ui_trips_",
        "user_trips_",
        "keys_",
        "values_",
        "bucket_trips_",
        "offset_",
    )

    def fit(self, data: FitContext) -> Self:
        self.ui_trips_, self.user_trips_ = data.ui_trips, data.user_trips
        self.offset_ = np.int64(data.local_offset_hours)
        p_of, t_of = data.pair_trips
        bucket = trip_time_bucket(data.trip_start, int(self.offset_))
        n_trips = len(bucket)
        keys, counts = np.unique(
            data.ui_keys[p_of] * N_TIME_BUCKETS + bucket[t_of], return_counts=True
        )
        self.keys_, self.values_ = keys, counts.astype(np.float32)
        t_user = np.zeros(n_trips, np.int64)
        t_user[data.trip_of] = data.buyer
        per = np.bincount(t_user * N_TIME_BUCKETS + bucket, minlength=data.n_users * N_TIME_BUCKETS)
        self.bucket_trips_ = per.reshape(data.n_users, N_TIME_BUCKETS).astype(np.float32)
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        b = trip_time_bucket(batch.t, int(self.offset_))
        held = batch.lookup(
            self.keys_, self.values_, batch.ui_key * N_TIME_BUCKETS + b, missing=0.0
        )
        trips = self._lookup(self.ui_trips_, batch, missing=0.0)
        share = trips / np.maximum(self.user_trips_[batch.uu].astype(np.float64), 1.0)
        in_bucket = self.bucket_trips_[batch.uu, b].astype(np.float64)
        value = (held + _TIME_PRIOR_TRIPS * share) / (in_bucket + _TIME_PRIOR_TRIPS)
        return np.where(batch.u_ok, value, np.nan)


_TIME_PRIOR_PURCHASES = 20.0
"""Pseudo-purchases spread as all purchases are that shrink ``cand_time_lift``."""


@register_feature("cand_time_lift")
class CandTimeLift(RankerFeature):
    """How much likelier the candidate is bought at the request's time of the week than
    purchases are overall: ``log`` of its share of purchases in the request's time bucket
    (:func:`trip_time_bucket`, local time from :func:`quiet_hours_offset`) over all
    purchases' share there, its counts shrunk toward the overall spread by
    :data:`_TIME_PRIOR_PURCHASES` pseudo-purchases (0 for an item never bought). Breakfast
    in the morning, beer on the weekend. Opt-in."""

    opt_in = True
    _state = ("item_ptr_", "bucket_", "counts_", "item_n_", "bucket_share_", "offset_")

    def fit(self, data: FitContext) -> Self:
        ts = data.dataset.events.timestamp[data.buy].astype(np.int64)
        self.offset_ = np.int64(data.local_offset_hours)
        bucket = trip_time_bucket(ts, int(self.offset_))
        keys, counts = np.unique(data.bought * N_TIME_BUCKETS + bucket, return_counts=True)
        # each item's purchases per bucket as a CSR row (at most N_TIME_BUCKETS entries): a
        # request reads its candidates' rows, not a search of the whole table
        per_item = np.bincount(keys // N_TIME_BUCKETS, minlength=data.n_items)
        self.item_ptr_ = np.concatenate([[0], np.cumsum(per_item)]).astype(np.int64)
        self.bucket_ = (keys % N_TIME_BUCKETS).astype(np.int8)
        self.counts_ = counts.astype(np.float64)
        self.item_n_ = np.bincount(data.bought, minlength=data.n_items).astype(np.float32)
        spread = np.bincount(bucket, minlength=N_TIME_BUCKETS).astype(np.float64)
        self.bucket_share_ = (spread / max(spread.sum(), 1.0)).astype(np.float64)
        return self

    # the values of every item for the bucket of the last one-bucket call, with the counts
    # they came from (compared by identity): a served request reads them with one gather
    _snapshot: tuple[NDArray[np.float64], int, NDArray[np.float64]] | None = None

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        w = max(batch.width, 1)
        rows = trip_time_bucket(batch.t[::w], int(self.offset_))
        if len(rows) and (rows == rows[0]).all():
            snap = self._snapshot  # one read: another thread may replace it meanwhile
            if snap is None or snap[0] is not self.counts_ or snap[1] != int(rows[0]):
                items = np.arange(len(self.item_n_))
                every = self._values(items, np.full(len(items), int(rows[0])))
                snap = self._snapshot = (self.counts_, int(rows[0]), every)
            return snap[2][batch.c]
        return self._values(batch.c, np.repeat(rows, w))

    def _values(self, c: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.float64]:
        """The lift of items ``c`` in buckets ``b`` (each item's CSR row read directly)."""
        lo = self.item_ptr_[c]
        n_kept = self.item_ptr_[c + 1] - lo
        slot = np.arange(N_TIME_BUCKETS)
        at = np.minimum(lo[:, None] + slot, max(len(self.bucket_) - 1, 0))
        match = (slot < n_kept[:, None]) & (self.bucket_[at] == b[:, None])
        if len(self.counts_):
            held = np.where(match, self.counts_[at], 0.0).sum(axis=1)
        else:
            held = np.zeros(len(c))
        p = self.bucket_share_[b]
        n = self.item_n_[c].astype(np.float64)
        share = (held + _TIME_PRIOR_PURCHASES * p) / (n + _TIME_PRIOR_PURCHASES)
        return np.log(np.divide(share, p, out=np.ones_like(share), where=p > 0))


_SEED_TRIP_BLOCK = 4_000_000
"""Most (row, item) entries :class:`UserSeedCandShare` expands at once."""


@register_feature("user_seed_cand_share")
class UserSeedCandShare(_UserItem):
    """The user's own bundle: the share of the user's trips holding the seed that also hold
    the candidate.

    The co-purchase sources and ``hist_copurchase`` read everybody's baskets; the user's
    counts (``user_bought_cand``, the trip share) ignore the seed. A user who buys salsa
    with chips every time, and chips alone otherwise, is told apart only here. NaN for an
    unknown user or a seed the user never bought. State: the user's trips holding each
    (user, item) pair and the items of each trip, both as CSR arrays. Registered opt-in;
    rankers read it by default through ``[ranker] bundle_features``
    (:data:`~recset.ranking._ranker.BUNDLE_FEATURES`).
    """

    opt_in = True
    _state = ("ui_keys_", "pair_ptr_", "pair_trips_", "trip_ptr_", "trip_items_")

    def fit(self, data: FitContext) -> Self:
        # the distinct (pair, trip) the trip counts count: each pair's trips, each trip's items
        p_of, t_of = data.pair_trips
        n_trips = int(data.trip_of.max()) + 1 if len(data.trip_of) else 0
        self.pair_ptr_ = np.concatenate(
            [[0], np.cumsum(np.bincount(p_of, minlength=len(data.ui_keys)))]
        )
        self.pair_trips_ = t_of.astype(np.int32)
        by_trip = np.lexsort((p_of, t_of))
        item = data.ui_keys[p_of[by_trip]] % data.n_items
        self.trip_ptr_ = np.concatenate([[0], np.cumsum(np.bincount(t_of, minlength=n_trips))])
        self.trip_items_ = item.astype(np.int32)
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        out = batch.nan()
        w = batch.width
        if not len(batch) or not w:
            return out
        seed_key = batch.uu[::w] * batch.n_items + batch.sc[::w]
        pos = np.searchsorted(self.ui_keys_, seed_key)
        pos = np.minimum(pos, max(len(self.ui_keys_) - 1, 0))
        has = batch.u_ok[::w] & batch.s_ok[::w] & (self.ui_keys_[pos] == seed_key)
        rows = np.flatnonzero(has)
        if not len(rows):
            return out
        lo, hi = self.pair_ptr_[pos[rows]], self.pair_ptr_[pos[rows] + 1]
        n_seed_trips = (hi - lo).astype(np.float64)
        # the trips holding each row's seed, then their items, a block of rows at a time
        trips = self.pair_trips_[csr_gather(self.pair_ptr_, pos[rows])].astype(np.int64)
        size = self.trip_ptr_[trips + 1] - self.trip_ptr_[trips]
        cand = batch.c.reshape(batch.n_seeds, w)[rows]
        if len(rows) == 1 and size.sum() <= _SEED_TRIP_BLOCK:
            # one row (a served request): count each candidate in the sorted items directly
            items = np.sort(self.trip_items_[csr_gather(self.trip_ptr_, trips)])
            left = np.searchsorted(items, cand[0], "left")
            counts = (np.searchsorted(items, cand[0], "right") - left)[None, :].astype(np.float64)
            return self._shares(batch, rows, counts / n_seed_trips[:, None])
        r_trip = np.repeat(np.arange(len(rows)), hi - lo)
        counts = np.zeros((len(rows), w))
        ends = np.cumsum(size)
        start = 0
        while start < len(trips):
            stop = int(np.searchsorted(ends, ends[start] - size[start] + _SEED_TRIP_BLOCK, "right"))
            stop = max(stop, start + 1)
            t = trips[start:stop]
            items = self.trip_items_[csr_gather(self.trip_ptr_, t)]
            r = np.repeat(r_trip[start:stop], size[start:stop])
            keys, n = np.unique(r * batch.n_items + items, return_counts=True)
            r0, r1 = int(r_trip[start]), int(r_trip[stop - 1]) + 1  # the block's rows
            q = np.arange(r0, r1)[:, None] * batch.n_items + cand[r0:r1]
            at = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
            counts[r0:r1] += np.where(keys[at] == q, n[at], 0)
            start = stop
        return self._shares(batch, rows, counts / n_seed_trips[:, None])

    @staticmethod
    def _shares(
        batch: FeatureBatch, rows: NDArray[np.int64], share: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """The column: ``share`` on the seed rows ``rows``, NaN elsewhere and on padding."""
        full = batch.nan().reshape(batch.n_seeds, batch.width)
        full[rows] = share
        return np.where(batch.valid, full.ravel(), np.nan)


@register_feature("user_seed_trips")
class UserSeedTrips(_UserItem):
    """The user's trips holding the seed (0 when never bought; NaN for an unknown user or
    seed): how many trips ``user_seed_cand_share`` is a share of. Read with it
    (``[ranker] bundle_features``)."""

    opt_in = True
    _state = ("ui_keys_", "ui_trips_")

    def fit(self, data: FitContext) -> Self:
        self.ui_trips_ = data.ui_trips
        return super().fit(data)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        key = batch.uu * batch.n_items + batch.sc
        trips = batch.lookup(self.ui_keys_, self.ui_trips_, key, missing=0.0)
        return np.where(batch.u_ok & batch.s_ok, trips, np.nan)
