"""The ranker-feature registry: :class:`RankerFeature`, :class:`FitContext`, :class:`FeatureBatch`.

A ranker feature is one named object that learns what it needs from the training data
(:meth:`RankerFeature.fit`, reading the shared tables of a :class:`FitContext`) and turns a
batch of (seed, user, candidate) slots into one column (:meth:`RankerFeature.transform`,
reading the shared flattened arrays of a :class:`FeatureBatch`). Features register under a
name with :func:`register_feature`; third-party packages declare theirs in the
``recset.ranker_features`` entry-point group.

Built-in features (registered from inside recset) form the default feature list, in
registration order; plug-in features are only computed when named in
``FeatureSpace.fit(..., extra_features=...)``.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recset.data import PURCHASE, Dataset, Promotions, PromotionSteps, promotion_steps
from recset.errors import ConfigError, NotFittedError
from recset.pipeline import Registry

_log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "recset.ranker_features"
"""Entry-point group through which third-party packages register ranker features."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")


TripHistory = tuple[
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float32],
    NDArray[np.float64],
]
"""``(ui_trips, ui_last_trip, user_last, user_trips, ui_first_trip)`` of :func:`_trip_history`."""

UserCategoryTable = tuple[
    NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]
]
"""``(keys, trips, first, last)`` of :attr:`FitContext.user_category`."""


class FitContext:
    """The training data of a feature space and the tables several features share.

    Every shared table is a :func:`functools.cached_property`: computed on first use, once
    per fit, and the *same* array object for every feature that keeps it (so
    :meth:`FeatureSpace.save` stores it once).

    Parameters
    ----------
    dataset : Dataset
        The training data.
    embeddings : ndarray of float32, shape (n_items, d), optional
        Text vectors of the items (zero columns when absent).
    category_relatedness : scipy.sparse matrix, shape (n_categories, n_categories), optional
        How related two categories are.
    compat_codes : tuple of two int32 arrays of shape (n_rules, n_items), optional
        The compatibility source's (seed_codes, cand_codes).
    trend_half_life_days : float
        Half-life of the recent popularity behind ``cand_trend``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        embeddings: NDArray[np.float32] | None = None,
        category_relatedness: sp.spmatrix | None = None,
        compat_codes: tuple[NDArray[np.int32], NDArray[np.int32]] | None = None,
        trend_half_life_days: float = 14.0,
    ) -> None:
        self.dataset = dataset
        self.embeddings = embeddings
        self.category_relatedness = category_relatedness
        self.compat_codes = compat_codes
        self.trend_half_life_days = float(trend_half_life_days)

    @property
    def n_items(self) -> int:
        return int(self.dataset.n_items)

    @property
    def n_users(self) -> int:
        return int(self.dataset.n_users)

    # -- catalog ---------------------------------------------------------------------
    @cached_property
    def category(self) -> NDArray[np.int32]:
        """Category id of each item (-1 without one)."""
        return self.dataset.catalog.category.astype(np.int32)

    @cached_property
    def brand(self) -> NDArray[np.int32]:
        """Brand id of each item (-1 without one)."""
        return self.dataset.catalog.brand.astype(np.int32)

    @cached_property
    def product_type(self) -> NDArray[np.int32]:
        """Product-type id of each item (-1 without one)."""
        return self.dataset.catalog.product_type.astype(np.int32)

    @cached_property
    def price(self) -> NDArray[np.float32]:
        """Price of each item."""
        return self.dataset.catalog.price.astype(np.float32)

    @cached_property
    def promotion_steps(
        self,
    ) -> PromotionSteps:
        """The promotion calendar as per-item step functions
        (:func:`~recset.data.promotion_steps`); the dataset must hold a calendar."""
        if self.dataset.promotions is None:
            raise ConfigError(f"dataset {self.dataset.name!r} holds no promotion calendar")
        return promotion_steps(self.dataset.promotions, self.n_items)

    # -- purchases -------------------------------------------------------------------
    @cached_property
    def buy(self) -> NDArray[np.bool_]:
        """Mask of the purchase events."""
        return self.dataset.events.event == PURCHASE

    @cached_property
    def buyer(self) -> NDArray[np.int32]:
        """User of each purchase event."""
        return self.dataset.events.user[self.buy]

    @cached_property
    def bought(self) -> NDArray[np.int64]:
        """Item of each purchase event."""
        return self.dataset.events.item[self.buy].astype(np.int64)

    @cached_property
    def pop(self) -> NDArray[np.float64]:
        """Purchases of each item."""
        return self.dataset.item_counts("purchase")

    @cached_property
    def item_pop(self) -> NDArray[np.float32]:
        """Popularity as purchases per million purchases (comparable across windows)."""
        total = max(float(self.pop.sum()), 1.0)
        return (self.pop / total * 1e6).astype(np.float32)

    @cached_property
    def _ui(self) -> tuple[NDArray[np.int64], NDArray[np.intp]]:
        ev = self.dataset.events
        ui_key = ev.user[self.buy].astype(np.int64) * self.n_items + ev.item[self.buy]
        keys, inv = np.unique(ui_key, return_inverse=True)
        return keys, inv

    @cached_property
    def ui_keys(self) -> NDArray[np.int64]:
        """Sorted ``user * n_items + item`` keys of the (user, item) pairs with a purchase."""
        return self._ui[0]

    @cached_property
    def ui_inv(self) -> NDArray[np.intp]:
        """Pair id (index in :attr:`ui_keys`) of each purchase event."""
        return self._ui[1]

    @cached_property
    def ui_count(self) -> NDArray[np.float64]:
        """Purchases of each (user, item) pair."""
        return np.bincount(self.ui_inv, minlength=len(self.ui_keys)).astype(np.float64)

    @cached_property
    def ui_last(self) -> NDArray[np.float64]:
        """Time of the last purchase of each (user, item) pair."""
        last = np.full(len(self.ui_keys), -np.inf)
        ev = self.dataset.events
        np.maximum.at(last, self.ui_inv, ev.timestamp[self.buy].astype(np.float64))
        return last

    @cached_property
    def ui_first(self) -> NDArray[np.float64]:
        """Time of the first purchase of each (user, item) pair."""
        first = np.full(len(self.ui_keys), np.inf)
        ev = self.dataset.events
        np.minimum.at(first, self.ui_inv, ev.timestamp[self.buy].astype(np.float64))
        return first

    @cached_property
    def user_n(self) -> NDArray[np.float32]:
        """Purchases of each user."""
        return np.bincount(self.buyer, minlength=self.n_users).astype(np.float32)

    @cached_property
    def trip_history(self) -> TripHistory:
        """``(ui_trips, ui_last_trip, user_last, user_trips, ui_first_trip)``: see
        :func:`_trip_history`."""
        ev = self.dataset.events
        p_of, t_of = self.pair_trips
        return _trip_history(
            ev.user[self.buy],
            ev.timestamp[self.buy],
            self.trip_of,
            p_of,
            t_of,
            len(self.ui_keys),
            self.n_users,
        )

    @cached_property
    def pair_trips(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """The distinct (pair, trip) of the purchases, as pair ids (index in
        :attr:`ui_keys`) and trip ids (:attr:`trip_of`), sorted by pair then trip."""
        n_trips = max(int(self.trip_of.max()) + 1 if len(self.trip_of) else 0, 1)
        pt = np.unique(self.ui_inv.astype(np.int64) * n_trips + self.trip_of)
        return pt // n_trips, pt % n_trips

    @cached_property
    def trip_start(self) -> NDArray[np.int64]:
        """Time of each trip's first purchase (:attr:`trip_of` ids; trip ids follow the trip
        key, not the clock)."""
        n_trips = int(self.trip_of.max()) + 1 if len(self.trip_of) else 0
        start = np.full(n_trips, np.iinfo(np.int64).max)
        ts = self.dataset.events.timestamp[self.buy].astype(np.int64)
        np.minimum.at(start, self.trip_of, ts)
        return start

    @cached_property
    def trip_of(self) -> NDArray[np.int64]:
        """Trip id of each purchase event, ``0 .. n_trips - 1`` in (user, trip key) order:
        a trip is an order (``order >= 0``), else one purchase timestamp of the user."""
        ev = self.dataset.events
        ts = ev.timestamp[self.buy].astype(np.int64)
        order = ev.order[self.buy].astype(np.int64)
        trip_key = np.where(order >= 0, order, -1 - ts)
        _, inv = np.unique(
            np.column_stack([ev.user[self.buy].astype(np.int64), trip_key]),
            axis=0,
            return_inverse=True,
        )
        return np.asarray(inv).ravel().astype(np.int64)

    @property
    def ui_trips(self) -> NDArray[np.float64]:
        """Trips holding each (user, item) pair."""
        return self.trip_history[0]

    @property
    def ui_last_trip(self) -> NDArray[np.float64]:
        """Index of the user's last trip holding each (user, item) pair (0 = first trip)."""
        return self.trip_history[1]

    @property
    def ui_first_trip(self) -> NDArray[np.float64]:
        """Index of the user's first trip holding each (user, item) pair (0 = first trip)."""
        return self.trip_history[4]

    @property
    def user_last(self) -> NDArray[np.float64]:
        """Time of each user's last purchase (-inf without any)."""
        return self.trip_history[2]

    @property
    def user_trips(self) -> NDArray[np.float32]:
        """Trips of each user."""
        return self.trip_history[3]

    @cached_property
    def local_offset_hours(self) -> int:
        """:func:`quiet_hours_offset` of the purchases: the shift from the stored (UTC)
        clock to the shops' local time."""
        return quiet_hours_offset(self.dataset.events.timestamp[self.buy])

    @cached_property
    def user_category(self) -> UserCategoryTable:
        """Each user's purchases per category: ``(keys, trips, first, last)``, one entry per
        (user, category) with a purchase, keys ``user * n_categories + category`` sorted;
        ``trips``: the user's trips holding the category, ``first`` / ``last``: the times of
        the first and last purchase in it. Items without a category are left out."""
        n_cat = max(int(self.category.max()) + 1 if len(self.category) else 0, 1)
        cat = self.category[self.ui_keys % self.n_items].astype(np.int64)
        ok = cat >= 0
        pair_key = np.where(ok, self.ui_keys // self.n_items * n_cat + cat, -1)
        keys, inv = np.unique(pair_key[ok], return_inverse=True)
        inv = np.asarray(inv).ravel()
        first = np.full(len(keys), np.inf)
        np.minimum.at(first, inv, self.ui_first[ok])
        last = np.full(len(keys), -np.inf)
        np.maximum.at(last, inv, self.ui_last[ok])
        # the trips holding the category: distinct (key id, trip) of the pairs' trips
        p_of, t_of = self.pair_trips
        key_id = np.full(len(self.ui_keys), -1, np.int64)
        key_id[ok] = inv
        k_of = key_id[p_of]
        n_trips = max(int(t_of.max()) + 1 if len(t_of) else 0, 1)
        kt = np.unique(k_of[k_of >= 0] * n_trips + t_of[k_of >= 0])
        trips = np.bincount(kt // n_trips, minlength=len(keys)).astype(np.float64)
        return keys, trips, first, last

    def share(
        self, buyer: NDArray[np.integer], group: NDArray[np.integer], n_groups: int
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Sorted ``user * n_groups + group`` keys and the share of the user's purchases in each.

        ``buyer`` and ``group`` are parallel, one entry per purchase (or per purchased token);
        entries with ``group < 0`` are skipped.
        """
        ok = group >= 0
        key = buyer[ok].astype(np.int64) * max(n_groups, 1) + group[ok]
        keys, counts = np.unique(key, return_counts=True)
        users = keys // max(n_groups, 1)
        return keys, counts / np.maximum(self.user_n[users], 1.0)


def quiet_hours_offset(timestamps: NDArray[np.integer]) -> int:
    """The shift in hours (-23..0) that makes local time from the stored (UTC) clock: the
    six consecutive UTC hours with the fewest purchases are taken to be the shops' night,
    local 0-6 (ties to the earliest hour). Datasets rarely say their time zone; the
    quietest hours do."""
    hours = (np.asarray(timestamps, dtype=np.int64) // 3600) % 24
    count = np.bincount(hours, minlength=24)
    night = [int(count[(np.arange(6) + h) % 24].sum()) for h in range(24)]
    return -int(np.argmin(night))


def _trip_history(
    user: NDArray[np.int32],
    timestamp: NDArray[np.int64],
    trip_of: NDArray[np.int64],
    p_of: NDArray[np.int64],
    t_of: NDArray[np.int64],
    n_pairs: int,
    n_users: int,
) -> TripHistory:
    """Shopping-trip statistics of purchase events.

    ``trip_of`` is each event's trip (:attr:`FitContext.trip_of`: ids in (user, trip key)
    order, so a user's trips are consecutive); ``p_of`` / ``t_of`` the distinct (pair, trip)
    of the events (:attr:`FitContext.pair_trips`). Returns, per (user, item) pair id
    (n_pairs,): the number of the user's trips holding the
    item and the index of the last such trip (0 = the user's first trip); per user
    (n_users,): the time of the last purchase (-inf without any) and the number of trips;
    last, per pair, the index of the first trip holding the item.
    """
    ts = timestamp.astype(np.int64)
    n_trips_total = int(trip_of.max()) + 1 if len(trip_of) else 0
    start = np.full(n_trips_total, np.iinfo(np.int64).max)
    np.minimum.at(start, trip_of, ts)
    t_user = np.zeros(n_trips_total, np.int64)
    t_user[trip_of] = user
    by_time = np.lexsort((start, t_user))
    first_of_user = np.searchsorted(t_user[by_time], np.arange(n_users))
    idx = np.empty(n_trips_total, dtype=np.int64)
    idx[by_time] = np.arange(n_trips_total) - first_of_user[t_user[by_time]]
    user_trips = np.bincount(t_user, minlength=n_users).astype(np.float32)
    user_last = np.full(n_users, -np.inf)
    np.maximum.at(user_last, user, ts.astype(np.float64))
    ui_trips = np.bincount(p_of, minlength=n_pairs).astype(np.float64)
    trip_idx = idx[t_of].astype(np.float64)
    ui_last_trip = np.full(n_pairs, -1.0)
    np.maximum.at(ui_last_trip, p_of, trip_idx)
    ui_first_trip = np.full(n_pairs, np.inf)
    np.minimum.at(ui_first_trip, p_of, trip_idx)
    ui_first_trip[np.isinf(ui_first_trip)] = -1.0
    return ui_trips, ui_last_trip, user_last, user_trips, ui_first_trip


def _row_search(
    keys: NDArray[np.int64], query: NDArray[np.int64], n_rows: int, width: int
) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
    """Positions of ``query`` (``n_rows * width`` keys) in the sorted ``keys`` and whether
    each is there, each row searched only between its smallest and largest key."""
    if not len(keys) or not len(query):
        return np.zeros(len(query), np.intp), np.zeros(len(query), bool)
    if n_rows * 4 > len(query):  # short rows: one search over the whole table is cheaper
        pos = np.searchsorted(keys, query)
    else:
        rows = query.reshape(n_rows, width)
        lo = np.searchsorted(keys, rows.min(axis=1))
        hi = np.searchsorted(keys, rows.max(axis=1), side="right")
        pos = np.empty(len(query), np.intp)
        for r in range(n_rows):
            a, b = int(lo[r]), int(hi[r])
            pos[r * width : (r + 1) * width] = a + np.searchsorted(keys[a:b], rows[r])
    pos = np.minimum(pos, len(keys) - 1)
    return pos, keys[pos] == query


class FeatureBatch:
    """The (seed, user, candidate) slots of one ``transform`` call, flattened.

    Slot ``i`` is ``mixed.item.ravel()[i]`` (C order), for seed row ``i // width``.

    Attributes
    ----------
    mixed : Candidates
        The candidates (``item``, ``score``, ``source_score``, ``source_rank``, ``sources``).
    n_seeds, width : int
        Shape of ``mixed.item``.
    n_items, n_users : int
        Sizes of the fitted data (ids outside them are unknown).
    cand : ndarray of int64
        Candidate of each slot (-1 for padding); ``valid`` where it is real.
    c : ndarray of int64
        ``cand`` with padding mapped to item 0 (safe to index with).
    s, s_ok, sc : ndarray
        Seed of each slot, whether it is a known item, and ``s`` clipped to a valid index.
    u, u_ok, uu : ndarray
        User of each slot, whether it is a known user, and ``u`` with unknowns mapped to 0.
    when : ndarray of int64 or None
        When each seed's request is asked (epoch seconds; ``None``: now); see :attr:`t`.
    """

    def __init__(
        self,
        seeds: NDArray[np.integer],
        users: NDArray[np.integer],
        mixed: Any,
        *,
        n_items: int,
        n_users: int,
        when: NDArray[np.integer] | None = None,
    ) -> None:
        self.mixed = mixed
        self.when = None if when is None else np.asarray(when, dtype=np.int64)
        self.n_items, self.n_users = int(n_items), int(n_users)
        self.n_seeds, self.width = mixed.item.shape
        self.cand = mixed.item.ravel().astype(np.int64)
        self.valid = self.cand >= 0
        self.c = np.maximum(self.cand, 0)
        self.s = np.repeat(np.asarray(seeds, dtype=np.int64), self.width)
        self.s_ok = (self.s >= 0) & (self.s < self.n_items)
        self.sc = np.where(self.s_ok, self.s, 0)
        self.u = np.repeat(np.asarray(users, dtype=np.int64), self.width)
        self.u_ok = (self.u >= 0) & (self.u < self.n_users)
        self.uu = np.where(self.u_ok, self.u, 0)
        self._found: dict[tuple[int, int], tuple[Any, Any, Any, Any]] = {}

    def __len__(self) -> int:
        return len(self.cand)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.mixed.sources)

    @cached_property
    def source_rank(self) -> NDArray[np.int32]:
        """Each slot's rank in each source (n_slots, n_sources), -1 where not proposed."""
        return self.mixed.source_rank.reshape(-1, len(self.sources))

    @cached_property
    def source_score(self) -> NDArray[np.float32]:
        """Each slot's score in each source (n_slots, n_sources), NaN where not proposed."""
        return self.mixed.source_score.reshape(-1, len(self.sources))

    @cached_property
    def t(self) -> NDArray[np.int64]:
        """The request time of each slot (epoch seconds): ``when`` of its seed, else now."""
        if self.when is None:
            return np.full(len(self.cand), int(time.time()), dtype=np.int64)
        if len(self.when) != self.n_seeds:
            raise ValueError(
                f"'when' holds {len(self.when)} times for {self.n_seeds} seeds (one per seed)"
            )
        return np.repeat(self.when, self.width)

    @cached_property
    def ui_key(self) -> NDArray[np.int64]:
        """``user * n_items + candidate`` of each slot (user 0 for unknown users)."""
        return self.uu * self.n_items + self.c

    def lookup(
        self,
        keys_sorted: NDArray[np.int64],
        values: NDArray[np.floating],
        query: NDArray[np.int64] | None = None,
        *,
        missing: float = np.nan,
    ) -> NDArray[np.float64]:
        """:func:`~recset.signals.pair_lookup` of ``query`` (default :attr:`ui_key`), one
        value per slot, ``missing`` (default NaN) where the key is absent.

        The search is done once per (``keys_sorted``, ``query``) pair and batch (features
        reading the same table share it), and row by row inside the stretch of
        ``keys_sorted`` between the row's smallest and largest query: a row's slots share
        their seed and user, so for ``user * n + item`` keys that stretch is one user's few
        keys, not the whole table.
        """
        q = self.ui_key if query is None else query
        hit = self._found.get((id(keys_sorted), id(q)))
        if hit is None or hit[0] is not keys_sorted or hit[1] is not q:
            pos, found = _row_search(keys_sorted, q, self.n_seeds, self.width)
            hit = (keys_sorted, q, pos, found)
            self._found[(id(keys_sorted), id(q))] = hit
        pos, found = hit[2], hit[3]
        out = np.full(len(q), missing, dtype=np.float64)
        out[found] = values[pos[found]]
        return out

    def _per_row(self, a: NDArray[Any], missing: float) -> NDArray[Any]:
        """``a[seed]`` of each slot, ``missing`` for unknown seeds, read once per seed row."""
        w = self.width
        if not w:
            return np.where(self.s_ok, a[self.sc], missing)
        return np.repeat(np.where(self.s_ok[::w], a[self.sc[::w]], missing), w)

    def seed_value(self, a: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.float64]:
        """``a[seed]`` of each slot as float64, NaN for unknown seeds."""
        return self._per_row(a, np.nan).astype(np.float64)

    def seed_code(self, a: NDArray[np.integer]) -> NDArray[np.integer]:
        """``a[seed]`` of each slot (ids such as the seed's category), -1 for unknown seeds."""
        return self._per_row(a, -1)

    def nan(self) -> NDArray[np.float64]:
        """A fresh all-NaN column."""
        return np.full(len(self.cand), np.nan)


class RankerFeature(ABC):
    """One ranker feature: a named column of the feature matrix.

    Subclasses are registered with :func:`register_feature` (which sets ``name``), learn in
    :meth:`fit` (setting array attributes ending in ``_``, listed in ``_state`` so
    ``FeatureSpace.save`` / ``load`` persist them generically), and compute their column in
    :meth:`transform`. Missing values are NaN, never 0: LightGBM learns what absence means.
    """

    name: ClassVar[str] = ""
    personal: ClassVar[bool] = False
    """Whether the feature reads the query's user (their purchase history); a ranker with
    ``personal_features = false`` leaves these out."""
    opt_in: ClassVar[bool] = False
    """A feature of recset's own that is not in the default list (asked for by name in
    ``extra_features``, like a plug-in)."""
    _state: ClassVar[tuple[str, ...]] = ()

    def fit(self, data: FitContext) -> Self:
        """Learn the feature's state from ``data``; stateless features just return self."""
        return self

    @abstractmethod
    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        """The feature of every slot of ``batch``: shape (n_seeds * width,)."""

    def item_values(self) -> NDArray[np.floating] | None:
        """The column as a function of the candidate alone: one value per item (n_items,),
        or None (the default) when the feature reads anything else (the seed, the user, the
        mix).

        A feature returning ``v`` promises ``transform(batch) == v[batch.c]`` on every
        slot; :class:`~recset.ranking.FeatureSpace` stacks such columns into one per-item
        table, read by a single gather per call instead of one lookup per feature.
        """
        return None

    def with_calendar(
        self, promotions: Promotions, steps: PromotionSteps, n_items: int
    ) -> Self | None:
        """A copy of this fitted feature reading ``promotions`` (with ``steps``, its
        :func:`~recset.data.promotion_steps` over the ``n_items`` fitted items) at the
        request's time in place of the calendar it was fitted with; None (the default) when
        the feature reads no calendar when it serves. What the feature learned from the
        training calendar (a lift, a channel's weight) stays as fitted: only the schedule
        is replaced."""
        return None

    def state(self) -> dict[str, NDArray[Any]]:
        """The fitted arrays by attribute name (``NotFittedError`` before :meth:`fit`)."""
        missing = [a for a in self._state if not hasattr(self, a)]
        if missing:
            raise NotFittedError(
                f"ranker feature {self.name!r} is not fitted (no {', '.join(missing)}); "
                "call fit first"
            )
        return {a: getattr(self, a) for a in self._state}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or "__" in name:
        raise ConfigError(f"ranker feature name {name!r} must match [a-z][a-z0-9_]* without '__'")


FEATURES: Registry[type[RankerFeature]] = Registry(
    "ranker feature", ENTRY_POINT_GROUP, check_name=_check_name
)
"""The registered ranker features. Classes defined inside recset are the built-in default
features, in registration order; any other is a plug-in, computed only when asked for."""

register_feature = FEATURES.register
registered_features = FEATURES.all
get_feature = FEATURES.get


def _is_builtin(cls: type[RankerFeature]) -> bool:
    return cls.__module__.split(".", 1)[0] == "recset"


def default_features() -> tuple[str, ...]:
    """Names of the built-in features, in registration order (the default feature list)."""
    return tuple(
        name for name, cls in FEATURES.all().items() if _is_builtin(cls) and not cls.opt_in
    )
