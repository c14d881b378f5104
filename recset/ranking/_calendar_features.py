"""Ranker features read from the promotion calendar (``promotions.parquet``): opt-in by
name, and the first three (:data:`~recset.ranking._ranker.PROMOTION_FEATURES`) added by
``[ranker] promotion_features`` whenever the training data has a calendar.

A retailer schedules its displays and mailers ahead, so the calendar at the time of the
query is known when the list is served: these features read it at the request's time
(:attr:`FeatureBatch.t`; the basket's time in training and in backtests) and never read a
purchase after the training data. They need a dataset with a calendar
(:class:`~recset.data.Promotions`); asked for on a dataset without one, the fit says so.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Self

import numpy as np
from numpy.typing import NDArray

from recset.data import Promotions, PromotionSteps, promotion_at, promotion_steps
from recset.errors import ConfigError
from recset.ranking._feature_base import FeatureBatch, FitContext, RankerFeature, register_feature

_DAY = 86_400.0


def _exposure(
    keys: NDArray[np.int64],
    values: NDArray[np.floating],
    origin: NDArray[np.int64],
    lo: int,
    hi: int,
    n_items: int,
) -> NDArray[np.float64]:
    """Per item, the integral over ``[lo, hi)`` (seconds) of a step function of
    :func:`~recset.data.promotion_steps` (``values``: one per change point)."""
    t0, span = int(origin[0]), int(origin[1])
    item_of = keys // span
    start = keys % span + t0 - 1
    same = np.r_[item_of[1:] == item_of[:-1], False]
    end = np.where(same, np.r_[start[1:], 0], hi)  # an item's last step runs to the end
    seg = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0, None)
    return np.bincount(item_of, weights=seg * values, minlength=n_items)


def _rate_ratio(
    promoted: NDArray[np.float64],
    total: NDArray[np.float64],
    promo_secs: NDArray[np.float64],
    span: float,
) -> NDArray[np.float32]:
    """Per item, ``((promoted + 0.5) / promoted days) / ((total - promoted + 0.5) / other
    days)`` over a span of ``span`` seconds of which ``promo_secs`` promoted; NaN where either
    part of the span is empty."""
    promo_days = promo_secs / _DAY
    other_days = (span - promo_secs) / _DAY
    ok = (promo_days > 0) & (other_days > 0)
    ones = np.ones(len(total))
    rate_in = np.divide(promoted + 0.5, promo_days, out=ones.copy(), where=ok)
    rate_out = np.divide(total - promoted + 0.5, other_days, out=ones, where=ok)
    return np.where(ok, rate_in / rate_out, np.nan).astype(np.float32)


def _calendar(data: FitContext, name: str) -> Promotions:
    """The training data's calendar; a ConfigError naming ``name`` when it has none."""
    promotions = data.dataset.promotions
    if promotions is None:
        raise ConfigError(
            f"ranker feature {name!r} reads the promotion calendar, and dataset "
            f"{data.dataset.name!r} has none: add promotions.parquet (item_id, start, end, "
            "channel, reach) to the dataset directory (docs/data-format.md), or drop "
            f"{name!r} from [ranker] extra_features"
        )
    return promotions


def _steps(data: FitContext, name: str) -> PromotionSteps:
    """The calendar's step functions, shared by the features of one fit."""
    _calendar(data, name)
    return data.promotion_steps


class _ScheduleReader(RankerFeature):
    """A feature reading a calendar step function (:func:`~recset.data.promotion_steps`) at
    the request's time.

    Between two consecutive change points of the whole calendar (a weekly calendar changes
    once a week) every item's value is constant, so the values of all items for the
    interval of the last request are kept: a call whose slots all fall in that interval (a
    served request: one time) reads them with one gather instead of a binary search of the
    calendar per candidate. Slots at times in several intervals (a backtest batch) are read
    per slot, as :func:`~recset.data.promotion_at` reads them; both give the same values.
    """

    # each cache holds the schedule it was computed from (compared by identity), so a copy
    # given another schedule can never read a cache of the old one
    _changes: tuple[NDArray[np.int64], NDArray[np.int64]] | None = None
    _snapshot: tuple[NDArray[np.floating], int, NDArray[np.float64]] | None = None

    def _read(
        self,
        keys: NDArray[np.int64],
        values: NDArray[np.floating],
        origin: NDArray[np.int64],
        batch: FeatureBatch,
    ) -> NDArray[np.float64]:
        t = batch.t
        if not len(keys) or not len(t):
            return promotion_at(keys, values, origin, batch.c, t)
        t0, span = int(origin[0]), int(origin[1])
        cached = self._changes  # one read each: another thread may replace them meanwhile
        if cached is None or cached[0] is not keys:
            cached = self._changes = (keys, np.unique(keys % span))
        interval = np.searchsorted(cached[1], np.clip(t - t0 + 1, 0, span - 1), "right") - 1
        first = int(interval[0])
        if len(interval) > 1 and (interval != first).any():
            return promotion_at(keys, values, origin, batch.c, t)
        snap = self._snapshot
        if snap is None or snap[0] is not values or snap[1] != first:
            n = batch.n_items
            every = promotion_at(keys, values, origin, np.arange(n), np.full(n, t[0]))
            snap = self._snapshot = (values, first, every)
        return snap[2][batch.c]

    def _fresh(self) -> Self:
        """A copy without the cached intervals (for a new schedule)."""
        new = copy.copy(self)
        new._changes, new._snapshot = None, None
        return new


@register_feature("cand_promo")
class CandPromo(_ScheduleReader):
    """Total reach of the candidate's promotions active at the request's time (0: none)."""

    opt_in = True
    _state = ("promo_keys_", "promo_reach_", "promo_origin_")

    def fit(self, data: FitContext) -> Self:
        keys, reach, _, origin = _steps(data, self.name)
        self.promo_keys_, self.promo_reach_, self.promo_origin_ = keys, reach, origin
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self._read(self.promo_keys_, self.promo_reach_, self.promo_origin_, batch)

    def with_calendar(self, promotions: Promotions, steps: PromotionSteps, n_items: int) -> Self:
        new = self._fresh()
        new.promo_keys_, new.promo_reach_, _, new.promo_origin_ = steps
        return new


@register_feature("cand_promo_channels")
class CandPromoChannels(_ScheduleReader):
    """Number of distinct channels (display, mailer, ...) promoting the candidate at the
    request's time."""

    opt_in = True
    _state = ("promo_keys_", "promo_channels_", "promo_origin_")

    def fit(self, data: FitContext) -> Self:
        keys, _, channels, origin = _steps(data, self.name)
        self.promo_keys_, self.promo_channels_, self.promo_origin_ = keys, channels, origin
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self._read(self.promo_keys_, self.promo_channels_, self.promo_origin_, batch)

    def with_calendar(self, promotions: Promotions, steps: PromotionSteps, n_items: int) -> Self:
        new = self._fresh()
        new.promo_keys_, _, new.promo_channels_, new.promo_origin_ = steps
        return new


@register_feature("cand_promo_lift")
class CandPromoLift(RankerFeature):
    """How much more the candidate sold per day while promoted than while not, in the
    training data: ``((promoted buys + 0.5) / promoted days) / ((other buys + 0.5) / other
    days)``; NaN for an item never promoted, or promoted all the time, in the training span.

    Items differ in how much a display or a mailer moves them; with :class:`CandPromo` the
    ranker can tell an item whose promotion matters from one that is always on display.
    """

    opt_in = True
    _state = ("item_lift_",)

    def fit(self, data: FitContext) -> Self:
        keys, reach, _, origin = _steps(data, self.name)
        n = data.n_items
        lo, hi = data.dataset.time_range
        ev = data.dataset.events
        promoted = promotion_at(keys, reach, origin, data.bought, ev.timestamp[data.buy]) > 0
        buys = np.bincount(data.bought, minlength=n).astype(np.float64)
        promo_buys = np.bincount(data.bought, weights=promoted, minlength=n)
        promo_secs = _exposure(keys, (reach > 0).astype(np.float64), origin, lo, hi + 1, n)
        self.item_lift_ = _rate_ratio(promo_buys, buys, promo_secs, float(hi + 1 - lo))
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_lift_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_lift_.astype(np.float64)


@register_feature("cand_promo_weighted")
class CandPromoWeighted(_ScheduleReader):
    """The candidate's promotions active at the request's time, each channel weighted by how
    much it moved sales in the training data: ``sum over active channels c of reach_c x
    max(lift_c - 1, 0)`` (0: not promoted then).

    ``lift_c`` is learned per channel from all items: the reach-weighted purchases made
    while the item was on channel ``c`` over what the item's average daily rate predicts
    for its reach-weighted days on ``c``. Channels differ (a display moves more than a
    mailer line); the feature lets the ranker tell them apart without knowing their names.
    """

    opt_in = True
    _state = ("promo_keys_", "promo_weighted_", "promo_origin_", "channel_lift_", "channels_")

    def fit(self, data: FitContext) -> Self:
        promotions = _calendar(data, self.name)
        n = data.n_items
        lo, hi = data.dataset.time_range
        ev = data.dataset.events
        days = max(float(hi + 1 - lo), 1.0) / _DAY
        rate = np.bincount(data.bought, minlength=n) / days  # the item's average per day
        lift = np.ones(len(promotions.channels))
        for c in range(len(promotions.channels)):
            keys, reach, _, origin = promotion_steps(promotions.select(promotions.channel == c), n)
            observed = promotion_at(keys, reach, origin, data.bought, ev.timestamp[data.buy]).sum()
            exposure = _exposure(keys, reach.astype(np.float64), origin, lo, hi + 1, n) / _DAY
            expected = float((rate * exposure).sum())
            lift[c] = observed / expected if expected > 0 else 1.0
        self.channel_lift_ = lift.astype(np.float32)
        self.channels_ = np.array(promotions.channels, dtype=np.str_)
        self._schedule(promotions, n)
        return self

    def _schedule(self, promotions: Promotions, n_items: int) -> None:
        """The step function of ``promotions`` weighted by the fitted channel lifts (a
        channel the fit never saw weighs 0: its lift is unknown)."""
        lift = dict(zip(self.channels_.tolist(), self.channel_lift_.tolist(), strict=True))
        per_channel = np.array([max(lift.get(c, 1.0) - 1.0, 0.0) for c in promotions.channels])
        weight = per_channel[promotions.channel] if len(promotions) else np.zeros(0)
        weighted = promotions.select(weight > 0)
        weighted = replace(weighted, reach=(weighted.reach * weight[weight > 0]).astype(np.float32))
        keys, value, _, origin = promotion_steps(weighted, n_items)
        self.promo_keys_, self.promo_weighted_, self.promo_origin_ = keys, value, origin

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self._read(self.promo_keys_, self.promo_weighted_, self.promo_origin_, batch)

    def with_calendar(self, promotions: Promotions, steps: PromotionSteps, n_items: int) -> Self:
        new = self._fresh()
        new._schedule(promotions, n_items)
        return new


TRIAL_BURN_IN = 0.25
"""Share of the training span (its start) whose first purchases ``cand_promo_trial_lift``
does not count: a user's first purchase of an item there is mostly the first one the data
shows, not a trial."""


@register_feature("cand_promo_trial_lift")
class CandPromoTrialLift(RankerFeature):
    """How much more often people bought the candidate *for the first time* per day while it
    was promoted than while not, in the training data: ``((promoted firsts + 0.5) / promoted
    days) / ((other firsts + 0.5) / other days)``; NaN for an item never promoted, or
    promoted all the time, after the burn-in.

    A first purchase is a (user, item) pair's first purchase in the training data, counted
    only after the first :data:`TRIAL_BURN_IN` of its span (and the promoted days over the
    same part). :class:`CandPromoLift` says how much a promotion moves an item's sales; this
    says how much it brings *new* buyers, which is what a list of items new to the user
    needs: a display can lift an item's sales through its regular buyers alone.
    """

    opt_in = True
    _state = ("item_trial_lift_",)

    def fit(self, data: FitContext) -> Self:
        keys, reach, _, origin = _steps(data, self.name)
        n = data.n_items
        lo, hi = data.dataset.time_range
        start = lo + int(TRIAL_BURN_IN * (hi + 1 - lo))
        late = data.ui_first >= start
        item = data.ui_keys[late] % n
        when = data.ui_first[late].astype(np.int64)
        promoted = promotion_at(keys, reach, origin, item, when) > 0
        firsts = np.bincount(item, minlength=n).astype(np.float64)
        promo_firsts = np.bincount(item, weights=promoted, minlength=n)
        promo_secs = _exposure(keys, (reach > 0).astype(np.float64), origin, start, hi + 1, n)
        self.item_trial_lift_ = _rate_ratio(promo_firsts, firsts, promo_secs, float(hi + 1 - start))
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_trial_lift_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_trial_lift_.astype(np.float64)
