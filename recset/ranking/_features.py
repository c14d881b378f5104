"""Ranker features for (seed, candidate) pairs, computed in batch with numpy.

:class:`FeatureSpace` is fitted on a training :class:`~recset.data.Dataset` (popularity,
per-user purchase history, category relatedness, text embeddings) and turns the mixer's
:class:`~recset.recall.mixer.MixedCandidates` into a feature matrix. Missing values are NaN,
never 0: LightGBM learns what absence means.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import PURCHASE, Dataset
from recset.errors import ConfigError
from recset.pipeline import Candidates as MixedCandidates
from recset.signals import csr_gather

_log = logging.getLogger(__name__)

_DAY = 86_400.0

MAX_ASPECT_TOKENS = 1024
"""Most frequent ``key=value`` aspect tokens kept for the ``user_aspect_share`` feature."""

USER_HISTORY = "user_history"
"""Pseudo-source of the candidates taken from the user's own purchase history."""

BASE_FEATURES: tuple[str, ...] = (
    "n_sources",
    "fused_score",
    "fused_rank",
    "cand_pop",
    "cand_pop_log",
    "cand_pop_in_category",
    "cand_trend",
    "cand_repeat_rate",
    "seed_pop_log",
    "category_relatedness",
    "same_brand",
    "same_category",
    "same_type",
    "price_ratio_log",
    "text_similarity",
    "compatible",
    "cand_age_days",
    "user_bought_cand",
    "user_days_since_cand",
    "user_trips_since_cand",
    "user_cand_trip_share",
    "user_category_share",
    "user_brand_share",
    "user_aspect_share",
    "user_n_purchases_log",
    "user_n_trips_log",
)


def feature_names(sources: tuple[str, ...]) -> list[str]:
    """The feature list for a mix with these sources (per-source score and rank first)."""
    per_source = [f"{s}__{kind}" for s in sources for kind in ("score", "rank")]
    return per_source + list(BASE_FEATURES)


def _pair_lookup(
    keys_sorted: NDArray[np.int64], values: NDArray[np.float64], query: NDArray[np.int64]
) -> NDArray[np.float64]:
    """values[k] for each query key present in ``keys_sorted``, NaN where absent."""
    pos = np.searchsorted(keys_sorted, query)
    pos_c = np.minimum(pos, max(len(keys_sorted) - 1, 0))
    found = (
        (len(keys_sorted) > 0) & (keys_sorted[pos_c] == query)
        if len(keys_sorted)
        else (np.zeros(len(query), dtype=bool))
    )
    out = np.full(len(query), np.nan)
    if len(keys_sorted):
        out[found] = values[pos_c[found]]
    return out


def aspect_tokens(
    aspects: NDArray[np.object_], max_tokens: int = MAX_ASPECT_TOKENS
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """Each item's ``key=value`` aspect tokens as CSR ``(indptr (n+1,), token ids)``.

    Only tokens carried by at least two items are kept (a value unique to one item says
    nothing about taste), and of those the ``max_tokens`` most frequent (ties by token text).
    Values that are not scalars (lists, objects) and nulls are skipped.
    """
    parsed: list[list[str]] = []
    for raw in aspects:
        toks: list[str] = []
        if raw is not None:
            for key, value in json.loads(raw).items():
                if value is None or isinstance(value, list | dict):
                    continue
                toks.append(f"{key}={value}")
        parsed.append(sorted(set(toks)))
    counts = Counter(t for toks in parsed for t in toks)
    frequent = sorted((t for t, c in counts.items() if c >= 2), key=lambda t: (-counts[t], t))
    vocab = {t: j for j, t in enumerate(frequent[:max_tokens])}
    rows = [[vocab[t] for t in toks if t in vocab] for toks in parsed]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    flat = np.fromiter((j for r in rows for j in r), dtype=np.int32, count=int(indptr[-1]))
    return indptr, flat


def _n_tokens(tok: NDArray[np.int32]) -> int:
    """Size of the aspect-token vocabulary (at least 1, so keys stay user * n + token)."""
    return max(int(tok.max(initial=-1)) + 1, 1)


def _trip_history(
    user: NDArray[np.int32],
    timestamp: NDArray[np.int64],
    order: NDArray[np.int32],
    pair: NDArray[np.intp],
    n_pairs: int,
    n_users: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float32]]:
    """Shopping-trip statistics of purchase events.

    A trip is an order (``order >= 0``), else one purchase timestamp of the user. Returns,
    per (user, item) pair id ``pair`` (n_pairs,): the number of the user's trips holding the
    item and the index of the last such trip (0 = the user's first trip); per user
    (n_users,): the time of the last purchase (-inf without any) and the number of trips.
    """
    ts = timestamp.astype(np.int64)
    # a trip key per event: the order, or (for purchases without one) the event's time
    trip_key = np.where(order >= 0, order.astype(np.int64), -1 - ts)
    keys = np.unique(
        np.column_stack([user.astype(np.int64), trip_key]), axis=0, return_inverse=True
    )
    trip_of = np.asarray(keys[1]).ravel()
    trips = keys[0]
    n_trips_total = len(trips)
    start = np.full(n_trips_total, np.iinfo(np.int64).max)
    np.minimum.at(start, trip_of, ts)
    t_user = trips[:, 0]
    by_time = np.lexsort((start, t_user))
    first_of_user = np.searchsorted(t_user[by_time], np.arange(n_users))
    idx = np.empty(n_trips_total, dtype=np.int64)
    idx[by_time] = np.arange(n_trips_total) - first_of_user[t_user[by_time]]
    user_trips = np.bincount(t_user, minlength=n_users).astype(np.float32)
    user_last = np.full(n_users, -np.inf)
    np.maximum.at(user_last, user, ts.astype(np.float64))
    # distinct (pair, trip) for the trip counts
    pt = np.unique(pair.astype(np.int64) * max(n_trips_total, 1) + trip_of)
    p_of, t_of = pt // max(n_trips_total, 1), pt % max(n_trips_total, 1)
    ui_trips = np.bincount(p_of, minlength=n_pairs).astype(np.float64)
    ui_last_trip = np.full(n_pairs, -1.0)
    np.maximum.at(ui_last_trip, p_of, idx[t_of].astype(np.float64))
    return ui_trips, ui_last_trip, user_last, user_trips


@dataclass
class FeatureSpace:
    """Fitted state of the features (all arrays indexed by dense ids).

    Build with :meth:`fit`; persist with :meth:`save` / :meth:`load` (``.npz``, no pickle).
    """

    sources: tuple[str, ...]
    item_pop: NDArray[np.float32]
    item_trend: NDArray[np.float32]
    item_repeat: NDArray[np.float32]
    item_pop_in_cat: NDArray[np.float32]
    item_first_seen: NDArray[np.float64]
    ref_time: float
    category: NDArray[np.int32]
    product_type: NDArray[np.int32]
    brand: NDArray[np.int32]
    price: NDArray[np.float32]
    cat_rel_keys: NDArray[np.int64]
    cat_rel_vals: NDArray[np.float64]
    embeddings: NDArray[np.float32]
    ui_keys: NDArray[np.int64]
    ui_count: NDArray[np.float64]
    ui_last: NDArray[np.float64]
    ui_trips: NDArray[np.float64]
    ui_last_trip: NDArray[np.float64]
    user_last: NDArray[np.float64]
    user_trips: NDArray[np.float32]
    uc_keys: NDArray[np.int64]
    uc_share: NDArray[np.float64]
    ub_keys: NDArray[np.int64]
    ub_share: NDArray[np.float64]
    item_tok_indptr: NDArray[np.int64]
    item_tok: NDArray[np.int32]
    ut_keys: NDArray[np.int64]
    ut_share: NDArray[np.float64]
    user_n: NDArray[np.float32]
    compat_seed: NDArray[np.int32]
    compat_cand: NDArray[np.int32]
    user_top: NDArray[np.int32]
    user_top_count: NDArray[np.float32]

    @property
    def names(self) -> list[str]:
        return feature_names(self.sources)

    @classmethod
    def fit(
        cls,
        dataset: Dataset,
        sources: tuple[str, ...],
        *,
        embeddings: NDArray[np.float32] | None = None,
        category_relatedness: sp.csr_matrix | None = None,
        compat_codes: tuple[NDArray[np.int32], NDArray[np.int32]] | None = None,
        trend_half_life_days: float = 14.0,
        user_candidates: int = 0,
    ) -> FeatureSpace:
        """Compute every per-item, per-user and per-category statistic from ``dataset``.

        With ``user_candidates > 0`` each user's most-bought items (count, then recency) are
        kept too: :func:`ranking_candidates` adds them to the mix's candidates as the
        pseudo-source ``user_history`` (repeat purchases dominate grocery baskets).

        ``embeddings`` (n_items, d) text vectors (catalog only, so they may be shared across
        splits); ``category_relatedness`` (n_categories, n_categories); ``compat_codes`` the
        compatibility source's (seed_codes, cand_codes) of shape (n_rules, n_items).
        """
        n_items, n_users = dataset.n_items, dataset.n_users
        ev = dataset.events
        buy = ev.event == PURCHASE
        pop = dataset.item_counts("purchase")
        recent = dataset.item_counts("purchase", half_life_days=trend_half_life_days)
        total = max(float(pop.sum()), 1.0)
        total_recent = max(float(recent.sum()), 1e-9)
        trend = np.divide(
            recent / total_recent, pop / total, out=np.full(n_items, np.nan), where=pop > 0
        )
        cat = dataset.catalog.category
        cat_tot = np.bincount(
            np.maximum(cat, 0), weights=pop * (cat >= 0), minlength=max(dataset.n_categories, 1)
        )
        in_cat = np.divide(
            pop,
            cat_tot[np.maximum(cat, 0)],
            out=np.full(n_items, np.nan),
            where=(cat >= 0) & (cat_tot[np.maximum(cat, 0)] > 0),
        )
        first = np.full(n_items, np.inf)
        np.minimum.at(first, ev.item, ev.timestamp.astype(np.float64))
        ref = float(dataset.time_range[1])
        # per (user, item): purchase count and last purchase time
        ui_key = ev.user[buy].astype(np.int64) * n_items + ev.item[buy]
        ui_keys, inv = np.unique(ui_key, return_inverse=True)
        ui_count = np.bincount(inv, minlength=len(ui_keys)).astype(np.float64)
        ui_last = np.full(len(ui_keys), -np.inf)
        np.maximum.at(ui_last, inv, ev.timestamp[buy].astype(np.float64))
        user_n = np.bincount(ev.user[buy], minlength=n_users).astype(np.float32)
        ui_trips, ui_last_trip, user_last, user_trips = _trip_history(
            ev.user[buy], ev.timestamp[buy], ev.order[buy], inv, len(ui_keys), n_users
        )
        # share of an item's buyers who bought it on two trips or more (its repeat propensity)
        pair_item = ui_keys % n_items
        buyers = np.bincount(pair_item, minlength=n_items).astype(np.float64)
        repeaters = np.bincount(pair_item, weights=ui_trips >= 2, minlength=n_items)
        repeat = np.divide(repeaters, buyers, out=np.full(n_items, np.nan), where=buyers > 0)

        def share(
            buyer: NDArray[np.integer], g: NDArray[np.integer], n_groups: int
        ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
            """Sorted (user, group) keys and the share of the user's purchases in each."""
            ok = g >= 0
            key = buyer[ok].astype(np.int64) * max(n_groups, 1) + g[ok]
            keys, counts = np.unique(key, return_counts=True)
            users = keys // max(n_groups, 1)
            return keys, counts / np.maximum(user_n[users], 1.0)

        buyer, bought = ev.user[buy], ev.item[buy].astype(np.int64)
        uc_keys, uc_share = share(buyer, cat[bought], dataset.n_categories)
        ub_keys, ub_share = share(buyer, dataset.catalog.brand[bought], len(dataset.brands))
        # the user's share of purchases carrying each aspect token (colour, organic, ...)
        tok_indptr, tok = aspect_tokens(dataset.catalog.aspects)
        ut_keys, ut_share = share(
            np.repeat(buyer, np.diff(tok_indptr)[bought]),
            tok[csr_gather(tok_indptr, bought)],
            _n_tokens(tok),
        )
        if category_relatedness is not None and category_relatedness.nnz:
            coo = category_relatedness.tocoo()
            ck = coo.row.astype(np.int64) * max(dataset.n_categories, 1) + coo.col
            order = np.argsort(ck)
            cat_rel_keys, cat_rel_vals = ck[order], coo.data[order].astype(np.float64)
        else:
            cat_rel_keys, cat_rel_vals = np.zeros(0, np.int64), np.zeros(0)
        emb = embeddings if embeddings is not None else np.zeros((n_items, 0), np.float32)
        if user_candidates > 0 and len(ui_keys):
            t0, t1 = dataset.time_range
            recency = (ui_last - t0) / max(t1 - t0, 1)
            hist = sp.csr_matrix(
                (ui_count + 0.5 * recency, (ui_keys // n_items, ui_keys % n_items)),
                shape=(n_users, n_items),
            )
            from recset.signals import topk_rows

            user_top, top_val = topk_rows(hist, user_candidates, min_value=1e-12)
            user_top_count = np.floor(np.where(user_top >= 0, top_val, 0)).astype(np.float32)
        else:
            user_top = np.full((n_users, 0), -1, np.int32)
            user_top_count = np.zeros((n_users, 0), np.float32)
        if user_candidates > 0:
            sources = (*tuple(sources), USER_HISTORY)
        if compat_codes is None:
            compat_codes = (
                np.full((0, n_items), -1, np.int32),
                np.full((0, n_items), -1, np.int32),
            )
        return cls(
            sources=tuple(sources),
            # popularity as purchases per million purchases: comparable across windows
            item_pop=(pop / total * 1e6).astype(np.float32),
            item_trend=trend.astype(np.float32),
            item_repeat=repeat.astype(np.float32),
            item_pop_in_cat=in_cat.astype(np.float32),
            item_first_seen=first,
            ref_time=ref,
            category=cat.astype(np.int32),
            product_type=dataset.catalog.product_type.astype(np.int32),
            brand=dataset.catalog.brand.astype(np.int32),
            price=dataset.catalog.price.astype(np.float32),
            cat_rel_keys=cat_rel_keys,
            cat_rel_vals=cat_rel_vals,
            embeddings=np.asarray(emb, dtype=np.float32),
            ui_keys=ui_keys,
            ui_count=ui_count,
            ui_last=ui_last,
            ui_trips=ui_trips,
            ui_last_trip=ui_last_trip,
            user_last=user_last,
            user_trips=user_trips,
            uc_keys=uc_keys,
            uc_share=uc_share,
            ub_keys=ub_keys,
            ub_share=ub_share,
            item_tok_indptr=tok_indptr,
            item_tok=tok,
            ut_keys=ut_keys,
            ut_share=ut_share,
            user_n=user_n,
            compat_seed=compat_codes[0].astype(np.int32),
            compat_cand=compat_codes[1].astype(np.int32),
            user_top=user_top.astype(np.int32),
            user_top_count=user_top_count,
        )

    def bought(self, users: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Whether each user (B,) bought each item (B, N) in the fitted data; False for -1."""
        users = np.asarray(users, dtype=np.int64)
        ok = (users >= 0) & (users < len(self.user_n))
        key = np.where(ok, users, 0)[:, None] * len(self.category) + np.maximum(items, 0)
        count = _pair_lookup(self.ui_keys, self.ui_count, key.ravel()).reshape(key.shape)
        return ~np.isnan(count) & ok[:, None] & (items >= 0)

    # -- transform -------------------------------------------------------------------
    def transform(
        self, seeds: NDArray[np.int32], users: NDArray[np.int32], mixed: MixedCandidates
    ) -> NDArray[np.float32]:
        """Features of every (seed, candidate) slot: shape (n_seeds * n, n_features).

        Rows follow ``mixed.item`` in C order; padded slots (item -1) get all-NaN rows (drop
        them with ``mixed.item.ravel() >= 0``). ``users`` is -1 where the user is unknown.
        """
        if mixed.sources != self.sources:
            raise ValueError(
                f"candidates come from sources {mixed.sources}, the features expect {self.sources}"
            )
        n_seeds, width = mixed.item.shape
        cand = mixed.item.ravel().astype(np.int64)
        valid = cand >= 0
        c = np.maximum(cand, 0)
        s = np.repeat(np.asarray(seeds, dtype=np.int64), width)
        s_ok = (s >= 0) & (s < len(self.category))
        sc = np.maximum(s, 0)
        u = np.repeat(np.asarray(users, dtype=np.int64), width)
        u_ok = (u >= 0) & (u < len(self.user_n))
        cols: list[NDArray[np.float64]] = []
        src_score = mixed.source_score.reshape(-1, len(self.sources))
        src_rank = mixed.source_rank.reshape(-1, len(self.sources)).astype(np.float64)
        src_rank[src_rank < 0] = np.nan
        for j in range(len(self.sources)):
            cols.append(src_score[:, j].astype(np.float64))
            cols.append(src_rank[:, j])
        nan = np.full(len(cand), np.nan)

        def seed_val(a: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.float64]:
            return np.where(s_ok, a[sc], np.nan).astype(np.float64)

        cols.append(
            (mixed.source_rank.reshape(-1, len(self.sources)) >= 0).sum(axis=1).astype(float)
        )
        fused = mixed.score.ravel().astype(np.float64)
        cols.append(np.where(np.isfinite(fused), fused, np.nan))
        cols.append(np.tile(np.arange(width, dtype=np.float64), n_seeds))
        cols.append(self.item_pop[c].astype(np.float64))
        cols.append(np.log1p(self.item_pop[c]).astype(np.float64))
        cols.append(self.item_pop_in_cat[c].astype(np.float64))
        cols.append(self.item_trend[c].astype(np.float64))
        cols.append(self.item_repeat[c].astype(np.float64))
        cols.append(np.log1p(seed_val(self.item_pop)))
        # category relatedness between the seed's and the candidate's categories
        n_cat = int(max(self.category.max(initial=-1) + 1, 1))
        s_cat = np.where(s_ok, self.category[sc], -1).astype(np.int64)
        c_cat = self.category[c].astype(np.int64)
        rel = _pair_lookup(self.cat_rel_keys, self.cat_rel_vals, s_cat * n_cat + c_cat)
        rel[(s_cat < 0) | (c_cat < 0)] = np.nan
        cols.append(rel)
        for arr in (self.brand, self.category, self.product_type):
            a, b = np.where(s_ok, arr[sc], -1), arr[c]
            cols.append(np.where((a >= 0) & (b >= 0), (a == b).astype(float), np.nan))
        ratio = self.price[c].astype(np.float64) / seed_val(self.price)
        cols.append(np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1.0)), np.nan))
        if self.embeddings.shape[1]:
            sim = np.einsum("ij,ij->i", self.embeddings[sc], self.embeddings[c]).astype(np.float64)
            zero = (~self.embeddings[sc].any(axis=1)) | (~self.embeddings[c].any(axis=1))
            cols.append(np.where(s_ok & ~zero, sim, np.nan))
        else:
            cols.append(nan.copy())
        if self.compat_seed.shape[0]:
            agree = np.zeros(len(cand), dtype=bool)
            clash = np.zeros(len(cand), dtype=bool)
            for r in range(self.compat_seed.shape[0]):
                sv = np.where(s_ok, self.compat_seed[r, sc], -1)
                cv = self.compat_cand[r, c]
                both = (sv >= 0) & (cv >= 0)
                agree |= both & (sv == cv)
                clash |= both & (sv != cv)
            cols.append(np.where(clash, 0.0, np.where(agree, 1.0, np.nan)))
        else:
            cols.append(nan.copy())
        age = (self.ref_time - self.item_first_seen[c]) / _DAY
        cols.append(np.where(np.isfinite(age), age, np.nan))
        n_items = len(self.category)
        ui = np.where(u_ok, u, 0) * n_items + c
        count = _pair_lookup(self.ui_keys, self.ui_count, ui)
        last = _pair_lookup(self.ui_keys, self.ui_last, ui)
        trips = _pair_lookup(self.ui_keys, self.ui_trips, ui)
        last_trip = _pair_lookup(self.ui_keys, self.ui_last_trip, ui)
        uu = np.where(u_ok, u, 0)
        n_trips = self.user_trips[uu].astype(np.float64)
        cols.append(np.where(u_ok, np.nan_to_num(count, nan=0.0), np.nan))
        # recency relative to the user's own last purchase, not to the end of the data: the
        # same at training and serving time whenever the user last shopped
        cols.append(np.where(u_ok, (self.user_last[uu] - last) / _DAY, np.nan))
        cols.append(np.where(u_ok, n_trips - 1.0 - last_trip, np.nan))
        cols.append(
            np.where(u_ok, np.nan_to_num(trips, nan=0.0) / np.maximum(n_trips, 1.0), np.nan)
        )
        n_brands = int(max(self.brand.max(initial=-1) + 1, 1))
        uc = _pair_lookup(self.uc_keys, self.uc_share, np.where(u_ok, u, 0) * n_cat + c_cat)
        c_brand = self.brand[c].astype(np.int64)
        ub = _pair_lookup(self.ub_keys, self.ub_share, np.where(u_ok, u, 0) * n_brands + c_brand)
        cols.append(np.where(u_ok & (c_cat >= 0), np.nan_to_num(uc, nan=0.0), np.nan))
        cols.append(np.where(u_ok & (c_brand >= 0), np.nan_to_num(ub, nan=0.0), np.nan))
        cols.append(self._aspect_share(np.where(u_ok, u, -1), c))
        cols.append(np.where(u_ok, np.log1p(self.user_n[uu]), np.nan))
        cols.append(np.where(u_ok, np.log1p(n_trips), np.nan))
        X = np.column_stack(cols).astype(np.float32)
        X[~valid] = np.nan
        return X

    @cached_property
    def _n_tokens(self) -> int:
        """The key multiplier of ``ut_keys`` (computed once, not on every transform)."""
        return _n_tokens(self.item_tok)

    def _aspect_share(self, u: NDArray[np.int64], c: NDArray[np.int64]) -> NDArray[np.float64]:
        """Mean over the candidate's aspect tokens of the user's share of purchases carrying
        each; NaN for an unknown user (-1) or a candidate without kept tokens."""
        n_of = self.item_tok_indptr[c + 1] - self.item_tok_indptr[c]
        row = np.repeat(np.arange(len(c)), n_of)
        tok = self.item_tok[csr_gather(self.item_tok_indptr, c)]
        keys = np.repeat(u, n_of) * self._n_tokens + tok
        share = np.nan_to_num(_pair_lookup(self.ut_keys, self.ut_share, keys), nan=0.0)
        total = np.bincount(row, weights=share, minlength=len(c))
        mean = total / np.maximum(n_of, 1)
        return np.where((u >= 0) & (n_of > 0), mean, np.nan)

    # -- persistence -----------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the fitted arrays to one ``.npz`` (no pickle)."""
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        np.savez(
            path,
            allow_pickle=False,
            ref_time=np.array(self.ref_time),
            sources=np.array(list(self.sources), dtype=str),
            **arrays,
        )

    @classmethod
    def load(cls, path: Path) -> FeatureSpace:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        data["ref_time"] = float(data["ref_time"])
        data["sources"] = tuple(str(x) for x in data["sources"])
        missing = sorted({f.name for f in fields(cls)} - set(data))
        if missing:
            raise ConfigError(
                f"{path}: written by an older recset (no {', '.join(missing)}); retrain the "
                "ranker with `recset train-ranker`"
            )
        return cls(**data)
