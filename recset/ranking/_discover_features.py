"""Ranker features that relate a candidate to the user's whole history (for discovery).

The seed-level features say how a candidate goes with the seed; a list of complements the
user has never bought needs to know how it goes with everything the user buys, and whether
people start buying it (a trial item) or only keep buying it (a habit of its old buyers):

- ``hist_copurchase``: the mean, over the user's most-bought items ``h``, of the basket
  confidence ``P(candidate | h)``;
- ``cand_first_share``: the share of the candidate's recent buyers who bought it for the
  first time in that window.

The fitted ``hist_copurchase`` also keeps each user's strongest candidates that the user never
bought (:func:`history_candidates`): the discovery ranker scores them next to the mix's list,
so its candidates reach beyond the seed's own co-purchase row; the globally most-bought items
the user never bought (:func:`popular_candidates`) can join them (:data:`POPULAR_CANDIDATES`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

# the built-in features register first: these columns come after theirs
from recset.ranking._builtin_features import TextSimilarity, _n_groups, _text_vectors
from recset.ranking._feature_base import FeatureBatch, FitContext, RankerFeature, register_feature
from recset.signals import topk_rows

HISTORY_ITEMS = 30
"""The user's most-bought items whose co-purchases make ``hist_copurchase``."""

NEIGHBOURS = 50
"""Co-purchases kept per history item."""

NEW_CANDIDATES = 50
"""Items never bought by the user kept per user as discovery candidates."""

POPULAR_CANDIDATES = 0
"""The most-bought items the user never bought, added to the discovery candidates (0: none).

Global popularity is the strongest baseline for items new to the user on Instacart, so
these were tried as candidates (the model weighing them through ``cand_pop``, ``cand_trend``
and ``cand_first_share``). On the Instacart validation window cut from training
(``bench/discovery_validation.py --popular-candidates 50``) they did not help:
explore_hit@10 0.1445 with 50 against 0.1479 without, so none are added by default."""

_POPULAR_SCAN = 200
"""How far down the popularity order :func:`popular_candidates` looks past ``n``."""


def _user_top_items(data: FitContext, m: int) -> NDArray[np.int32]:
    """Each user's ``m`` most-bought items by trip count, ties by purchase count then the
    lower id ((n_users, m), -1 padded)."""
    users = data.ui_keys // data.n_items
    items = data.ui_keys % data.n_items
    score = data.ui_trips + 1e-6 * data.ui_count
    hist = sp.csr_matrix((score, (users, items)), shape=(data.n_users, data.n_items))
    return topk_rows(hist, m, min_value=1e-12)[0]


def _user_items(data: FitContext, m: int) -> sp.csr_matrix:
    """Users x items, 1 / (number kept) on each user's ``m`` most-bought items (trip count)."""
    top = _user_top_items(data, m)
    n_kept = (top >= 0).sum(axis=1)
    rows = np.repeat(np.arange(data.n_users), m)
    ok = top.ravel() >= 0
    w = 1.0 / np.maximum(np.repeat(n_kept, m), 1)
    return sp.csr_matrix((w[ok], (rows[ok], top.ravel()[ok])), shape=(data.n_users, data.n_items))


def _confidence(data: FitContext, k: int) -> sp.csr_matrix:
    """Item x item basket confidence ``P(b | a)``, each row cut to its ``k`` largest (computed
    once per fit and ``k``: ``hist_copurchase`` and ``seed_confidence`` share it)."""
    cached = data.__dict__.get(f"_confidence_{k}")
    if cached is not None:
        return cached
    b = data.dataset.baskets.matrix(data.n_items)
    c = (b.T @ b).tocsr().astype(np.float64)
    n = c.diagonal().copy()
    c.setdiag(0)
    c.eliminate_zeros()
    c = sp.diags(np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)) @ c
    out = _top_of_rows(c.tocsr(), k)
    data.__dict__[f"_confidence_{k}"] = out
    return out


def _top_of_rows(c: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """``c`` (square) with each row cut to its ``k`` largest positive values (float64, sorted
    indices)."""
    idx, val = topk_rows(c, k, min_value=1e-12)
    rows = np.repeat(np.arange(c.shape[0]), k)
    ok = idx.ravel() >= 0
    out = sp.csr_matrix(
        (val.ravel()[ok].astype(np.float64), (rows[ok], idx.ravel()[ok])), shape=c.shape
    )
    out.sort_indices()
    return out


def _sorted_pairs(m: sp.csr_matrix, n_cols: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The nonzeros of ``m`` as sorted ``row * n_cols + col`` keys and float32 values."""
    m = m.tocsr()
    m.sum_duplicates()
    m.sort_indices()
    keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return keys * n_cols + m.indices, m.data.astype(np.float32)


@register_feature("hist_copurchase")
class HistCopurchase(RankerFeature):
    """Mean basket confidence ``P(candidate | h)`` over the user's most-bought items ``h``.

    NaN for an unknown user; 0 when no history item was ever bought with the candidate.
    State: ``keys_`` / ``values_`` (sorted ``user * n_items + item`` keys of the nonzero
    scores), ``new_top_`` (n_users, :data:`NEW_CANDIDATES`) each user's highest-scored items
    that the user never bought (-1 padded), ``new_score_`` their scores.
    """

    personal = True

    _state = ("keys_", "values_", "new_top_", "new_score_")

    def fit(self, data: FitContext) -> Self:
        score = (_user_items(data, HISTORY_ITEMS) @ _confidence(data, NEIGHBOURS)).tocsr()
        keys, self.values_ = _sorted_pairs(score, data.n_items)  # sorts score in place
        self.keys_ = keys
        # the same scores without the items the user bought: the discovery candidates
        bought = np.isin(keys, data.ui_keys)
        new = score.copy()
        new.data = np.where(bought, 0.0, new.data)
        new.eliminate_zeros()
        top, val = topk_rows(new, NEW_CANDIDATES, min_value=1e-12)
        self.new_top_ = top.astype(np.int32)
        self.new_score_ = np.where(top >= 0, val, np.nan).astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        v = batch.lookup(self.keys_, self.values_, missing=0.0)
        return np.where(batch.u_ok, v, np.nan)


@register_feature("cand_first_share")
class CandFirstShare(RankerFeature):
    """Share of the candidate's buyers in the last fifth of the data (by time) whose first
    purchase of it falls in that window (NaN when nobody bought it then)."""

    _state = ("first_share_",)

    def fit(self, data: FitContext) -> Self:
        first = data.ui_first
        t0, t1 = data.dataset.time_range
        start = t1 - 0.2 * (t1 - t0)
        recent = data.ui_last >= start
        item = data.ui_keys % data.n_items
        buyers = np.bincount(item, weights=recent, minlength=data.n_items)
        firsts = np.bincount(item, weights=recent & (first >= start), minlength=data.n_items)
        share = np.divide(firsts, buyers, out=np.full(data.n_items, np.nan), where=buyers > 0)
        self.first_share_ = share.astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.first_share_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.first_share_.astype(np.float64)


def history_candidates(
    feature: HistCopurchase, users: NDArray[np.integer], n: int
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Each user's ``n`` best never-bought items by ``hist_copurchase`` ((B, n), -1 padded)."""
    users = np.asarray(users)
    ok = (users >= 0) & (users < len(feature.new_top_))
    n = min(n, feature.new_top_.shape[1])
    safe = np.where(ok, users, 0)
    item = np.where(ok[:, None], feature.new_top_[safe, :n], -1).astype(np.int32)
    score = np.where(item >= 0, feature.new_score_[safe, :n], np.nan).astype(np.float32)
    return item, score


def popular_candidates(
    item_pop: NDArray[np.floating],
    bought: Callable[[NDArray[np.int32], NDArray[np.int32]], NDArray[np.bool_]],
    users: NDArray[np.integer],
    available: NDArray[np.bool_],
    n: int,
) -> NDArray[np.int32]:
    """Each user's ``n`` most-bought (``item_pop``) available items that ``bought(users,
    items)`` says the user never bought ((B, n), -1 padded; ties to the lower id).

    Looks :data:`_POPULAR_SCAN` items past ``n`` down the popularity order: a user who bought
    more of the head than that gets fewer than ``n``.
    """
    users = np.asarray(users, dtype=np.int32)
    if n <= 0 or len(item_pop) == 0:
        return np.full((len(users), max(n, 0)), -1, np.int32)
    pop = np.where(available, np.asarray(item_pop, np.float64), -np.inf)
    m = min(n + _POPULAR_SCAN, int(np.isfinite(pop).sum()))
    head = np.argpartition(-pop, m - 1)[:m] if m < len(pop) else np.arange(len(pop))
    head = head[np.lexsort((head, -pop[head]))][:m].astype(np.int32)
    rows = np.broadcast_to(head, (len(users), m))
    new = ~bought(users, rows)
    order = np.argsort(~new, axis=1, kind="stable")[:, :n]
    out = np.where(np.take_along_axis(new, order, 1), np.take_along_axis(rows, order, 1), -1)
    if out.shape[1] < n:
        out = np.pad(out, ((0, 0), (0, n - out.shape[1])), constant_values=-1)
    return out.astype(np.int32)


# -- personal SAR (opt-in) -------------------------------------------------------------------
SAR_NEIGHBOURS = 100
"""Most similar items kept per item for ``hist_sar`` / ``seed_sar``."""

SAR_MIN_SUPPORT = 3
"""Pairs bought by fewer users than this are not similar (SAR's threshold)."""

SAR_KEEP = 300
"""Items kept per user for ``hist_sar`` (the user's highest scores; the rest read 0)."""

_SAR_USER_BLOCK = 256


def _sar_similarity(data: FitContext) -> sp.csr_matrix:
    """Item x item cosine of the users' 0/1 purchase vectors (pairs bought by at least
    :data:`SAR_MIN_SUPPORT` users), each row cut to its :data:`SAR_NEIGHBOURS` best; computed
    once per fit (shared by ``hist_sar`` and ``seed_sar``)."""
    cached = data.__dict__.get("_sar_similarity")
    if cached is not None:
        return cached
    from recset.recall import pair_topk

    n = data.n_items
    users = (data.ui_keys // n).astype(np.int64)
    items = (data.ui_keys % n).astype(np.int64)
    g = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=(data.n_users, n))
    idx, val = pair_topk(
        g, np.ones(data.n_users, np.float32), SAR_NEIGHBOURS, min_support=SAR_MIN_SUPPORT
    )
    rows = np.repeat(np.arange(n), SAR_NEIGHBOURS)
    ok = idx.ravel() >= 0
    s = sp.csr_matrix(
        (val.ravel()[ok].astype(np.float64), (rows[ok], idx.ravel()[ok])), shape=(n, n)
    )
    s.sort_indices()
    data.__dict__["_sar_similarity"] = s
    return s


@register_feature("hist_sar")
class HistSar(RankerFeature):
    """Personal SAR: ``sum_h S[h, candidate]`` over every item ``h`` the user bought, with
    ``S`` the item-item cosine of user co-occurrence (:func:`_sar_similarity`), divided by
    the user's highest such score (so the user's best item reads 1).

    Kept for each user's :data:`SAR_KEEP` highest items (others read 0; NaN for an unknown
    user). Also keeps each user's :data:`NEW_CANDIDATES` best never-bought items
    (``new_top_``), a candidate source for discovery (``SAR_CANDIDATES``). Opt-in.
    """

    personal = True
    opt_in = True
    _state = ("keys_", "values_", "new_top_", "new_score_")

    def fit(self, data: FitContext) -> Self:
        s = _sar_similarity(data)
        n, n_users = data.n_items, data.n_users
        users = (data.ui_keys // n).astype(np.int64)
        items = (data.ui_keys % n).astype(np.int64)
        g = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n))
        keys, values = [], []
        self.new_top_ = np.full((n_users, NEW_CANDIDATES), -1, np.int32)
        self.new_score_ = np.full((n_users, NEW_CANDIDATES), np.nan, np.float32)
        for lo in range(0, n_users, _SAR_USER_BLOCK):
            hi = min(lo + _SAR_USER_BLOCK, n_users)
            u = (g[lo:hi] @ s).tocsr()
            u.sum_duplicates()
            peak = np.zeros(hi - lo)
            has = np.diff(u.indptr) > 0
            if u.nnz:
                peak[has] = np.maximum.reduceat(u.data, u.indptr[:-1][has])
            u = sp.diags(np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)) @ u
            u = u.tocsr()
            top, val = topk_rows(u, SAR_KEEP, min_value=1e-12)
            r = np.repeat(np.arange(lo, hi, dtype=np.int64), SAR_KEEP)
            ok = top.ravel() >= 0
            keys.append(r[ok] * n + top.ravel()[ok])
            values.append(val.ravel()[ok])
            # the same scores without the items the user bought
            bought = g[lo:hi].tocsr()
            u = u - u.multiply(bought > 0)
            u.eliminate_zeros()
            nt, nv = topk_rows(u.tocsr(), NEW_CANDIDATES, min_value=1e-12)
            self.new_top_[lo:hi] = nt
            self.new_score_[lo:hi] = np.where(nt >= 0, nv, np.nan)
        k = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        v = np.concatenate(values) if values else np.zeros(0, np.float32)
        order = np.argsort(k, kind="stable")
        self.keys_, self.values_ = k[order], v[order].astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        v = batch.lookup(self.keys_, self.values_)
        v = np.where(np.isnan(v), 0.0, v)
        return np.where(batch.u_ok, v, np.nan)


@register_feature("seed_sar")
class SeedSar(RankerFeature):
    """``S[seed, candidate]``: the item-item cosine of user co-occurrence behind
    ``hist_sar`` (0 outside the seed's :data:`SAR_NEIGHBOURS` best; NaN for an unknown
    seed). Opt-in."""

    opt_in = True
    _state = ("keys_", "values_")

    def fit(self, data: FitContext) -> Self:
        self.keys_, self.values_ = _sorted_pairs(_sar_similarity(data), data.n_items)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        q = batch.sc * batch.n_items + batch.c
        v = batch.lookup(self.keys_, self.values_, q)
        v = np.where(np.isnan(v), 0.0, v)
        return np.where(batch.s_ok, v, np.nan)


# -- first purchases, category transitions, the seed's rules (opt-in) ------------------------
CATEGORY_KEEP = 100
"""Categories kept per user for ``user_new_category``."""


def _first_purchases(data: FitContext) -> NDArray[np.bool_]:
    """Per (user, item) pair of :attr:`FitContext.ui_keys`: whether the user's first purchase
    of the item came after the user's first purchase of anything (a *new* item for a user who
    already shopped: what discovery predicts). Computed once per fit."""
    cached = data.__dict__.get("_first_purchases")
    if cached is not None:
        return cached
    ts = data.dataset.events.timestamp[data.buy].astype(np.float64)
    user_first = np.full(data.n_users, np.inf)
    np.minimum.at(user_first, data.buyer, ts)
    new = data.ui_first > user_first[data.ui_keys // data.n_items]
    data.__dict__["_first_purchases"] = new
    return new


@register_feature("cand_new_buyers")
class CandNewBuyers(RankerFeature):
    """Popularity among first purchases: ``log1p`` of the candidate's users who bought it for
    the first time after their own first purchase, per million such (user, item) pairs.

    Plain popularity counts the habits of an item's old buyers; this counts how often people
    who already shop *start* buying it, the event a discovery list predicts. Opt-in.
    """

    opt_in = True
    _state = ("new_buyers_",)

    def fit(self, data: FitContext) -> Self:
        new = _first_purchases(data)
        item = data.ui_keys % data.n_items
        count = np.bincount(item[new], minlength=data.n_items).astype(np.float64)
        per_m = count / max(float(new.sum()), 1.0) * 1e6
        self.new_buyers_ = np.log1p(per_m).astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.new_buyers_[batch.c].astype(np.float64)


def _user_group_value(
    batch: FeatureBatch,
    group: NDArray[np.integer],
    n_groups: int,
    keys: NDArray[np.int64],
    values: NDArray[np.float32],
) -> NDArray[np.float64]:
    """The value kept for (the query's user, the candidate's ``group``) under the sorted
    ``user * n_groups + group`` ``keys``: 0 when none is kept, NaN for an unknown user or a
    candidate without a group."""
    c_group = group[batch.c].astype(np.int64)
    v = batch.lookup(keys, values, batch.uu * n_groups + c_group, missing=0.0)
    return np.where(batch.u_ok & (c_group >= 0), v, np.nan)


@register_feature("user_new_category")
class UserNewCategory(RankerFeature):
    """Category transitions: the share of the new items (first purchases after their first
    shopping trip, as :class:`CandNewBuyers`) that users who shop like this user buy in the
    candidate's category.

    ``T[c, d]`` = sum over users of (their share of purchases in category ``c``) x (their
    first purchases in ``d``), each row normalised to 1; the user's value for category ``d``
    is ``sum_c share_u(c) T[c, d]``. Kept for each user's :data:`CATEGORY_KEEP` best
    categories (others read 0); NaN for an unknown user or a candidate without a category.
    Opt-in.
    """

    personal = True
    opt_in = True
    _state = ("category_", "keys_", "values_")

    def fit(self, data: FitContext) -> Self:
        cat = data.category
        n_cat = _n_groups(cat)
        self.category_ = cat
        users = data.ui_keys // data.n_items
        item_cat = cat[data.ui_keys % data.n_items]
        ok = item_cat >= 0
        # the user's share of purchases (events) per category
        ev_cat = cat[data.bought]
        ev_ok = ev_cat >= 0
        share = sp.csr_matrix(
            (np.ones(int(ev_ok.sum())), (data.buyer[ev_ok], ev_cat[ev_ok])),
            shape=(data.n_users, n_cat),
        )
        share = sp.diags(1.0 / np.maximum(data.user_n, 1.0)) @ share
        new = _first_purchases(data) & ok
        firsts = sp.csr_matrix(
            (np.ones(int(new.sum())), (users[new], item_cat[new])), shape=(data.n_users, n_cat)
        )
        trans = (share.T @ firsts).tocsr()
        row = np.asarray(trans.sum(axis=1)).ravel()
        trans = sp.diags(np.divide(1.0, row, out=np.zeros_like(row), where=row > 0)) @ trans
        score = (share @ trans).tocsr()
        top, val = topk_rows(score, min(CATEGORY_KEEP, n_cat), min_value=1e-12)
        r = np.repeat(np.arange(data.n_users, dtype=np.int64), top.shape[1])
        keep = top.ravel() >= 0
        keys = r[keep] * n_cat + top.ravel()[keep]
        order = np.argsort(keys, kind="stable")
        self.keys_ = keys[order]
        self.values_ = val.ravel()[keep][order].astype(np.float32)
        return self

    @cached_property
    def _n_groups(self) -> int:
        return _n_groups(self.category_)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return _user_group_value(batch, self.category_, self._n_groups, self.keys_, self.values_)


@register_feature("user_kind_new_rate")
class UserKindNewRate(RankerFeature):
    """How often the user starts buying a new item of the candidate's kind: the user's first
    purchases (after their own first purchase, as :class:`CandNewBuyers`) of items of the
    candidate's product type (its category in a catalog without product types), per trip
    of the user.

    A user who keeps trying new yogurts is likelier to try another than one who has bought
    the same yogurt for a year, however much yogurt both buy (which ``user_category_share``
    reads). 0 when the user started none of that kind, NaN for an unknown user or a
    candidate without a kind. Opt-in.
    """

    personal = True
    opt_in = True
    _state = ("kind_", "keys_", "values_")

    def fit(self, data: FitContext) -> Self:
        kind = data.product_type if (data.product_type >= 0).any() else data.category
        n_kind = _n_groups(kind)
        users = data.ui_keys // data.n_items
        item_kind = kind[data.ui_keys % data.n_items].astype(np.int64)
        new = _first_purchases(data) & (item_kind >= 0)
        keys, counts = np.unique(users[new] * n_kind + item_kind[new], return_counts=True)
        trips = np.maximum(data.user_trips[keys // n_kind].astype(np.float64), 1.0)
        self.kind_ = kind
        self.keys_ = keys
        self.values_ = (counts / trips).astype(np.float32)
        return self

    @cached_property
    def _n_groups(self) -> int:
        return _n_groups(self.kind_)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return _user_group_value(batch, self.kind_, self._n_groups, self.keys_, self.values_)


@register_feature("seed_confidence")
class SeedConfidence(RankerFeature):
    """Association-rule confidence ``P(candidate | seed)`` over baskets (the
    ``association_rules`` baseline's score), 0 outside the seed's :data:`NEIGHBOURS` best; NaN
    for an unknown seed. Opt-in."""

    opt_in = True
    _state = ("keys_", "values_")

    def fit(self, data: FitContext) -> Self:
        self.keys_, self.values_ = _sorted_pairs(_confidence(data, NEIGHBOURS), data.n_items)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        v = batch.lookup(self.keys_, self.values_, batch.sc * batch.n_items + batch.c, missing=0.0)
        return np.where(batch.s_ok, v, np.nan)


# -- trial confidence: what people start buying beside an item (opt-in) ---------------------
def _trial_confidence(data: FitContext, k: int) -> sp.csr_matrix:
    """Item x item *trial* confidence: of the trips holding ``a``, the share in which the
    trip's user bought ``b`` for the first time (a first purchase after the user's first
    trip, as discovery's labels count it); each row cut to its ``k`` largest.

    The basket confidence ``P(b | a)`` of :func:`_confidence` mixes the habits of ``b``'s old
    buyers with the trips on which people start buying it; a list of items new to the user
    predicts only the second. Computed once per fit and ``k``.
    """
    cached = data.__dict__.get(f"_trial_confidence_{k}")
    if cached is not None:
        return cached
    n = data.n_items
    p_of, t_of = data.pair_trips
    n_trips = int(t_of.max()) + 1 if len(t_of) else 0
    item = (data.ui_keys[p_of] % n).astype(np.int64)
    trips = sp.csr_matrix((np.ones(len(p_of), np.float64), (t_of, item)), shape=(n_trips, n))
    # each pair's first trip in time
    order = np.lexsort((t_of, data.trip_start[t_of], p_of))
    head = np.ones(len(order), bool)
    head[1:] = p_of[order][1:] != p_of[order][:-1]
    first = order[head]
    first = first[data.ui_first_trip[p_of[first]] > 0]  # not the user's first trip
    starts = sp.csr_matrix(
        (np.ones(len(first), np.float64), (t_of[first], item[first])), shape=(n_trips, n)
    )
    c = (trips.T @ starts).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    held = np.asarray(trips.sum(axis=0)).ravel()
    c = (sp.diags(np.divide(1.0, held, out=np.zeros_like(held), where=held > 0)) @ c).tocsr()
    out = _top_of_rows(c, k)
    data.__dict__[f"_trial_confidence_{k}"] = out
    return out


@register_feature("seed_trial_conf")
class SeedTrialConf(RankerFeature):
    """Trial confidence of the candidate beside the seed: of the trips holding the seed, the
    share on which the trip's user bought the candidate for the first time
    (:func:`_trial_confidence`). 0 outside the seed's :data:`NEIGHBOURS` best, NaN for an
    unknown seed. Opt-in."""

    opt_in = True
    _state = ("keys_", "values_")

    def fit(self, data: FitContext) -> Self:
        self.keys_, self.values_ = _sorted_pairs(_trial_confidence(data, NEIGHBOURS), data.n_items)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        v = batch.lookup(self.keys_, self.values_, batch.sc * batch.n_items + batch.c, missing=0.0)
        return np.where(batch.s_ok, v, np.nan)


@register_feature("hist_trial_conf")
class HistTrialConf(RankerFeature):
    """Mean trial confidence of the candidate beside the user's :data:`HISTORY_ITEMS`
    most-bought items (:func:`_trial_confidence`, as ``hist_copurchase`` averages the basket
    confidence). 0 when none of them has the candidate among its :data:`NEIGHBOURS` best,
    NaN for an unknown user. Opt-in."""

    personal = True
    opt_in = True
    _state = ("keys_", "values_")

    def fit(self, data: FitContext) -> Self:
        score = _user_items(data, HISTORY_ITEMS) @ _trial_confidence(data, NEIGHBOURS)
        self.keys_, self.values_ = _sorted_pairs(score, data.n_items)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        v = batch.lookup(self.keys_, self.values_, missing=0.0)
        return np.where(batch.u_ok, v, np.nan)


# -- the candidate's likeness to what the user buys (opt-in) ---------------------------------
_TEXT_SEED_BLOCK = 1024
"""Seeds per block in :class:`HistTextMax` (bounds its (seeds, width, history) temporary)."""


@register_feature("hist_text_max")
class HistTextMax(TextSimilarity):
    """The text similarity (dot product of the catalog-text vectors, as ``text_similarity``)
    of the candidate to the nearest of the user's :data:`HISTORY_ITEMS` most-bought items,
    the candidate itself left out.

    A new item is often a variant of one the user buys (another flavour, size or brand of
    the same kind), which basket co-purchase never shows: variants replace each other rather
    than share a basket. NaN for an unknown user, a user without other history items, or a
    candidate without a vector. Opt-in.
    """

    personal = True
    opt_in = True
    _state = ("embeddings_", "hist_")

    def fit(self, data: FitContext) -> Self:
        super().fit(data)  # the text vectors and which are all zeros (``_zero``)
        self.hist_ = _user_top_items(data, HISTORY_ITEMS).astype(np.int32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        emb = self.embeddings_
        out = batch.nan()
        if not emb.shape[1] or not batch.width or not len(self.hist_):
            return out
        users = batch.uu[:: batch.width]
        cand = batch.c.reshape(batch.n_seeds, batch.width)
        best = np.full((batch.n_seeds, batch.width), -np.inf)
        for lo in range(0, batch.n_seeds, _TEXT_SEED_BLOCK):
            hi = min(lo + _TEXT_SEED_BLOCK, batch.n_seeds)
            hist = self.hist_[users[lo:hi]]  # (b, m)
            h_vec = np.take(emb, np.maximum(hist, 0), axis=0)
            c_vec = np.take(emb, cand[lo:hi], axis=0)
            sim = np.einsum("bwd,bmd->bwm", c_vec, h_vec)
            usable = (hist >= 0) & ~self._zero[np.maximum(hist, 0)]
            mask = usable[:, None, :] & (hist[:, None, :] != cand[lo:hi, :, None])
            best[lo:hi] = np.where(mask, sim, -np.inf).max(axis=2, initial=-np.inf)
        best = best.ravel()
        ok = batch.u_ok & np.isfinite(best) & ~self._zero[batch.c]
        out[ok] = best[ok]
        return out


@register_feature("hist_text_profile")
class HistTextProfile(RankerFeature):
    """Cosine of the candidate's text vector to the user's profile: the mean of the vectors
    of every item the user bought, each weighted by the user's trips holding it.

    The content-based recommender's score: how much the candidate looks like what the user
    buys overall (a vegetarian's basket, a baby's), where ``user_category_share`` only counts
    the candidate's own category. NaN for an unknown user or a candidate without a vector.
    Opt-in.
    """

    personal = True
    opt_in = True
    _state = ("embeddings_", "profile_")

    def fit(self, data: FitContext) -> Self:
        emb = _text_vectors(data)
        users = data.ui_keys // data.n_items
        items = data.ui_keys % data.n_items
        w = sp.csr_matrix(
            (data.ui_trips.astype(np.float64), (users, items)), shape=(data.n_users, data.n_items)
        )
        profile = np.asarray(w @ emb.astype(np.float64))
        norm = np.linalg.norm(profile, axis=1, keepdims=True)
        profile = np.divide(profile, norm, out=np.zeros_like(profile), where=norm > 0)
        self.embeddings_ = emb
        self.profile_ = profile.astype(np.float32)
        return self

    @cached_property
    def _norm(self) -> NDArray[np.float32]:
        return np.linalg.norm(self.embeddings_, axis=1)

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        emb = self.embeddings_
        out = batch.nan()
        if not emb.shape[1] or not batch.width:
            return out
        users = batch.uu[:: batch.width]
        c_vec = np.take(emb, batch.c, axis=0).reshape(batch.n_seeds, batch.width, -1)
        sim = np.einsum("bwd,bd->bw", c_vec, self.profile_[users]).ravel().astype(np.float64)
        c_norm = self._norm[batch.c].astype(np.float64)
        p_ok = np.repeat(self.profile_[users].any(axis=1), batch.width)
        ok = batch.u_ok & p_ok & (c_norm > 0)
        out[ok] = sim[ok] / c_norm[ok]
        return out


class _UserCategoryFeature(RankerFeature):
    """Base of the features read per (the query's user, the candidate's category)."""

    personal = True
    opt_in = True
    category_: NDArray[np.int32]

    @cached_property
    def _n_groups(self) -> int:
        return _n_groups(self.category_)

    def _keys(self, batch: FeatureBatch) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
        """Each slot's ``user * n_categories + category`` key, and where it is usable (a
        known user, a candidate with a category)."""
        c_cat = self.category_[batch.c].astype(np.int64)
        return batch.uu * self._n_groups + c_cat, batch.u_ok & (c_cat >= 0)


@register_feature("user_cat_days_due")
class UserCatDaysDue(_UserCategoryFeature):
    """How due the user's next purchase in the candidate's category is at the request's
    time: the days from the user's last purchase in the category to the request, over the
    user's mean gap in days between trips holding it (``(last - first purchase in it) /
    (trips holding it - 1)``). 1: as long as usual; above 1: overdue.

    ``user_cand_due`` and ``user_cand_days_due`` say when the user is due to buy an item
    again, so they are NaN for every item the user never bought; a new item is bought when
    its *category* is due (the coffee runs out, the user tries another coffee). NaN for an
    unknown user, a candidate without a category, a category the user bought from on fewer
    than two trips or all at one time, or a request before the last purchase. Opt-in.
    """

    _state = ("category_", "keys_", "trips_", "first_", "last_")

    def fit(self, data: FitContext) -> Self:
        keys, trips, first, last = data.user_category
        self.category_ = data.category
        self.keys_, self.trips_, self.first_, self.last_ = keys, trips, first, last
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        query, usable = self._keys(batch)
        trips = batch.lookup(self.keys_, self.trips_, query, missing=0.0)
        first = batch.lookup(self.keys_, self.first_, query)
        last = batch.lookup(self.keys_, self.last_, query)
        since = batch.t.astype(np.float64) - last
        ok = usable & (trips >= 2) & (last > first) & (since >= 0)
        gap = np.where(ok, (last - first) / np.maximum(trips - 1.0, 1.0), 1.0)
        return np.where(ok, since / gap, np.nan)


@register_feature("user_cat_price_log")
class UserCatPriceLog(_UserCategoryFeature):
    """The candidate's price against what the user pays in its category: ``log`` of the
    candidate's price minus the mean ``log`` price of the user's purchases in the candidate's
    category (each purchase of a priced item counted once).

    ``price_ratio_log`` compares the candidate with the seed; this compares it with the
    user's own price band in the candidate's category: a user who buys the premium coffee
    tries another premium coffee. NaN for an unknown user, a candidate without a price or
    category, or a category where the user bought nothing priced. Opt-in.
    """

    _state = ("category_", "log_price_", "keys_", "mean_")

    def fit(self, data: FitContext) -> Self:
        cat = data.category
        n_cat = _n_groups(cat)
        price = data.price.astype(np.float64)
        log_price = np.full(len(price), np.nan)
        np.log(price, out=log_price, where=price > 0)
        ev_cat = cat[data.bought].astype(np.int64)
        ev_lp = log_price[data.bought]
        ok = (ev_cat >= 0) & np.isfinite(ev_lp)
        keys, inv = np.unique(
            data.buyer[ok].astype(np.int64) * n_cat + ev_cat[ok], return_inverse=True
        )
        total = np.bincount(inv, weights=ev_lp[ok], minlength=len(keys))
        count = np.bincount(inv, minlength=len(keys))
        self.category_ = cat
        self.log_price_ = log_price.astype(np.float32)
        self.keys_ = keys
        self.mean_ = (total / np.maximum(count, 1)).astype(np.float64)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        query, usable = self._keys(batch)
        mean = batch.lookup(self.keys_, self.mean_, query)
        value = self.log_price_[batch.c].astype(np.float64) - mean
        return np.where(usable, value, np.nan)
