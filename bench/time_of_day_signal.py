"""Does the time of a trip say which of the user's items it holds?

The learned ceilings (docs/benchmarks.md) say `mix+ranker` needs signal that tells which of
the user's own items are bought *on this trip*. A request carries its time, and trips differ
by it: a weekday-evening top-up is not a Saturday-morning stock-up. Measured before building
a feature (as the calendar and the package's tables were):

Trips are split by time (the last ``--test-share`` of them scored, up to three per user);
every item the user bought on two or more training trips is a candidate of each scored trip,
labelled 1 when the trip holds it. Two LightGBM lambdarank models, cross-fitted over two
halves of the users, rank them: one reads the user's trip share of the item, trip count,
total trips and days since the last purchase; the other also the same share among the
user's trips in the scored trip's *time bucket* (time of day in four bands x weekday /
weekend, local time ``--utc-offset`` hours from the stored UTC), the bucket's count and the
user's trips in it. Reported: Hit@10 over scored trips holding a candidate. Equal figures say
the time of the trip adds nothing the user's overall shares do not.

    python bench/time_of_day_signal.py --data /work/rd/cj_promo --utc-offset -5
    python bench/time_of_day_signal.py --data /work/rd/instacart
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

BASE = ["share", "n", "ut", "days"]
TIMED = [*BASE, "bshare", "nb", "ubt"]


def _candidates(ev: pd.DataFrame, test_share: float) -> pd.DataFrame:
    trip = (
        ev.groupby(["user_id", "order_id"])
        .agg(t=("timestamp", "min"), bucket=("bucket", "first"))
        .reset_index()
    )
    cut = trip.t.quantile(1.0 - test_share)
    train, test = trip[trip.t < cut], trip[trip.t >= cut]
    tr = ev.merge(train[["user_id", "order_id"]], on=["user_id", "order_id"])
    by_pair = tr.groupby(["user_id", "item_id"])
    ui = by_pair.agg(n=("order_id", "nunique"), last=("timestamp", "max"))
    ui = ui.reset_index().merge(train.groupby("user_id").size().rename("ut").reset_index())
    ui["share"] = ui.n / ui.ut
    ui = ui[ui.n >= 2]
    ub = tr.groupby(["user_id", "item_id", "bucket"]).order_id.nunique().rename("nb").reset_index()
    ubt = train.groupby(["user_id", "bucket"]).size().rename("ubt").reset_index()
    rows = test.groupby("user_id").head(3).merge(ui, on="user_id")
    rows = rows.merge(ub, on=["user_id", "item_id", "bucket"], how="left")
    rows = rows.merge(ubt, on=["user_id", "bucket"], how="left").fillna({"nb": 0, "ubt": 0})
    # the bucket's share, shrunk toward the overall share by two pseudo-trips
    rows["bshare"] = (rows.nb + 2 * rows.share) / (rows.ubt + 2)
    rows["days"] = (rows.t - rows["last"]).dt.total_seconds() / 86400
    held = ev[["user_id", "order_id", "item_id"]].drop_duplicates().assign(y=1)
    rows = rows.merge(held, on=["user_id", "order_id", "item_id"], how="left").fillna({"y": 0})
    rows["g"] = rows.user_id.astype(str) + "|" + rows.order_id.astype(str)
    return rows.sort_values(["g", "item_id"], kind="stable").reset_index(drop=True)


def _hit10(rows: pd.DataFrame, feats: list[str]) -> pd.Series:
    """Hit@10 (0/1) of each scored trip holding a candidate, by ``g``."""
    half = pd.util.hash_array(rows.user_id.to_numpy(dtype=object)) % 2
    out = []
    for f in (0, 1):
        fit, score = rows[half != f], rows[half == f]
        params = {"objective": "lambdarank", "learning_rate": 0.05, "num_leaves": 31}
        params |= {"verbosity": -1, "num_threads": 2, "deterministic": True, "seed": 0}
        group = fit.groupby("g", sort=False).size().to_numpy()
        train = lgb.Dataset(fit[feats].to_numpy(float), fit.y.to_numpy(), group=group)
        model = lgb.train(params, train, 200)
        s = score.assign(s=model.predict(score[feats].to_numpy(float)))
        top = s.sort_values(["g", "s"], ascending=[True, False]).groupby("g").head(10)
        has = s.groupby("g").y.max() > 0
        out.append(top.groupby("g").y.max()[has])
    return pd.concat(out).sort_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="an ingested dataset directory")
    ap.add_argument("--utc-offset", type=float, default=0.0, help="local time = UTC + this")
    ap.add_argument("--test-share", type=float, default=0.15)
    ap.add_argument("--bootstrap", type=int, default=2000)
    args = ap.parse_args()
    ev = pd.read_parquet(Path(args.data) / "events.parquet")
    ev = ev[ev.event == "purchase"]
    local = ev.timestamp + pd.Timedelta(hours=args.utc_offset)
    band = np.digitize(local.dt.hour.to_numpy(), [12, 16, 20])  # <12, 12-16, 16-20, 20-24
    ev = ev.assign(bucket=band * 2 + (local.dt.day_of_week >= 5).to_numpy())
    rows = _candidates(ev, args.test_share)
    print(
        f"{args.data}: {rows.g.nunique():,} scored trips, {len(rows):,} candidate rows, "
        f"{int(rows.y.sum()):,} positives"
    )
    base, timed = _hit10(rows, BASE), _hit10(rows, TIMED)
    print(f"the user's shares: Hit@10 {base.mean():.4f} over {len(base):,} trips with a candidate")
    print(f"+ the trip's time bucket: Hit@10 {timed.mean():.4f}")
    # paired 95% bootstrap over users (a user's trips resampled together)
    diff = (timed - base).groupby(base.index.str.split("|").str[0]).agg(["sum", "size"])
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(diff), size=(args.bootstrap, len(diff)))
    d = diff["sum"].to_numpy()[draws].sum(1) / diff["size"].to_numpy()[draws].sum(1)
    lo, hi = np.quantile(d, [0.025, 0.975])
    print(f"difference {timed.mean() - base.mean():+.4f} ({lo:+.4f}..{hi:+.4f})")


if __name__ == "__main__":
    main()
