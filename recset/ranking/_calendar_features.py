"""Opt-in ranker features read from the promotion calendar (``promotions.parquet``).

A retailer schedules its displays and mailers ahead, so the calendar at the time of the
query is known when the list is served: these features read it at the request's time
(:attr:`FeatureBatch.t`; the basket's time in training and in backtests) and never read a
purchase after the training data. They need a dataset with a calendar
(:class:`~recset.data.Promotions`); asked for on a dataset without one, the fit says so.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from numpy.typing import NDArray

from recset.data import promotion_at
from recset.errors import ConfigError
from recset.ranking._feature_base import FeatureBatch, FitContext, RankerFeature, register_feature

_DAY = 86_400.0


def _steps(
    data: FitContext, name: str
) -> tuple[NDArray[np.int64], NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    promotions = data.dataset.promotions
    if promotions is None:
        raise ConfigError(
            f"ranker feature {name!r} reads the promotion calendar, and dataset "
            f"{data.dataset.name!r} has none: add promotions.parquet (item_id, start, end, "
            "channel, reach) to the dataset directory (docs/data-format.md), or drop "
            f"{name!r} from [ranker] extra_features"
        )
    return data.promotion_steps


@register_feature("cand_promo")
class CandPromo(RankerFeature):
    """Total reach of the candidate's promotions active at the request's time (0: none)."""

    opt_in = True
    _state = ("promo_keys_", "promo_reach_", "promo_origin_")

    def fit(self, data: FitContext) -> Self:
        keys, reach, _, origin = _steps(data, self.name)
        self.promo_keys_, self.promo_reach_, self.promo_origin_ = keys, reach, origin
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return promotion_at(
            self.promo_keys_, self.promo_reach_, self.promo_origin_, batch.c, batch.t
        )


@register_feature("cand_promo_channels")
class CandPromoChannels(RankerFeature):
    """Number of distinct channels (display, mailer, ...) promoting the candidate at the
    request's time."""

    opt_in = True
    _state = ("promo_keys_", "promo_channels_", "promo_origin_")

    def fit(self, data: FitContext) -> Self:
        keys, _, channels, origin = _steps(data, self.name)
        self.promo_keys_, self.promo_channels_, self.promo_origin_ = keys, channels, origin
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return promotion_at(
            self.promo_keys_, self.promo_channels_, self.promo_origin_, batch.c, batch.t
        )


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
        t0, span = int(origin[0]), int(origin[1])
        ev = data.dataset.events
        promoted = promotion_at(keys, reach, origin, data.bought, ev.timestamp[data.buy]) > 0
        buys = np.bincount(data.bought, minlength=n).astype(np.float64)
        promo_buys = np.bincount(data.bought, weights=promoted, minlength=n)
        # promoted seconds of each item inside the training span: its step segments
        item_of = keys // span
        start = keys % span + t0 - 1
        nxt = np.r_[start[1:], np.iinfo(np.int64).max // 2]
        same = np.r_[item_of[1:] == item_of[:-1], False]
        end = np.where(same, nxt, hi + 1)
        seg = np.clip(np.minimum(end, hi + 1) - np.maximum(start, lo), 0, None)
        promo_secs = np.bincount(item_of, weights=seg * (reach > 0), minlength=n)
        total = float(hi + 1 - lo)
        promo_days = promo_secs / _DAY
        other_days = (total - promo_secs) / _DAY
        ok = (promo_days > 0) & (other_days > 0)
        rate_in = np.divide(promo_buys + 0.5, promo_days, out=np.ones(n), where=ok)
        rate_out = np.divide(buys - promo_buys + 0.5, other_days, out=np.ones(n), where=ok)
        self.item_lift_ = np.where(ok, rate_in / rate_out, np.nan).astype(np.float32)
        return self

    def transform(self, batch: FeatureBatch) -> NDArray[np.float64]:
        return self.item_lift_[batch.c].astype(np.float64)

    def item_values(self) -> NDArray[np.float64] | None:
        return self.item_lift_.astype(np.float64)
