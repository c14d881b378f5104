"""Loader for the Instacart Online Grocery Shopping Dataset 2017 (the per-user sample).

Raw files: ``order_products_sample.csv`` (orders joined with their products), ``products.csv``,
``aisles.csv``, ``departments.csv``. Kaggle's original layout is accepted too: without
``order_products_sample.csv``, ``orders.csv`` is joined with ``order_products__prior.csv``.

Mapping
-------
Events (one ``purchase`` per order line):

- ``user_id`` = ``user_id``; ``item_id`` = ``product_id``;
  ``order_id`` = ``session_id`` = ``order_id``.
- ``timestamp``: the data has no absolute dates, only each order's rank, hour of day and
  days since the user's previous order. Timestamps are therefore synthetic but keep every
  real order and gap: ``2017-01-01T00:00Z`` (:data:`EPOCH`) + the user's cumulative
  ``days_since_prior_order`` (0 for the first order) in days + ``order_hour_of_day`` hours +
  ``add_to_cart_order`` seconds, so the cart order is kept inside each basket. Every user
  starts on the same day, so compare times within a user, not across users (the suggested
  split is each user's last order). When two consecutive orders of a user would start less
  than an hour apart (same day and hour: 88 orders in the sample), the later one is moved to
  one hour after the earlier so that orders never interleave; ``orders_shifted`` counts them.
  Day of week (``order_dow``) is not used: Instacart caps ``days_since_prior_order`` at 30,
  so it cannot be made consistent with the cumulative days.

Catalog (every product of ``products.csv``, ordered in the sample or not):

- ``title`` = ``product_name``; empty names (1,258 products, all in aisle 100 "missing") are
  null (``catalog_titles_missing``).
- ``category_id`` = ``aisle_id``; ``category_path`` = ``department > aisle``. The aisle and
  department named "missing" are not categories: such items get a null category id and path
  (``catalog_category_missing``) instead of one "missing" category grouping unrelated
  products.
- ``product_type`` = null and ``brand`` = null: the data has neither (the aisle is already the
  category; the backtest reports a product-type level only where a dataset has one).
- ``product_id`` = null; ``price`` = null (no prices); ``available`` = true.
- ``aspects`` = ``{"organic": "yes" | "no"}`` read from the name (the one reliable attribute
  in it); ``{}`` when the name is empty.

Rows dropped (each counted once, under the first reason that applies)
---------------------------------------------------------------------
``dropped_malformed``
    a null order, user, product, order number, hour or cart position.
``dropped_unknown_product``
    ``product_id`` absent from ``products.csv`` (none in the sample).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from recset.data.loaders._common import (
    IngestResult,
    _check_dir,
    _drop,
    _first_existing,
    _id_strings,
    _read_csv,
    _require_columns,
    _require_file,
)
from recset.errors import DataError

_log = logging.getLogger(__name__)

FORMAT = "instacart"
ORDER_PRODUCTS = "order_products_sample.csv"
KAGGLE_ORDERS = "orders.csv"
KAGGLE_PRIOR = "order_products__prior.csv"
PRODUCTS = "products.csv"
AISLES = "aisles.csv"
DEPARTMENTS = "departments.csv"

EPOCH = int(pd.Timestamp("2017-01-01", tz="UTC").timestamp())
"""Epoch seconds of day 0 (2017-01-01T00:00:00Z), the first order of every user."""

MIN_ORDER_GAP = 3600
"""Seconds between the starts of two consecutive orders of a user, at least (raised above
the largest ``add_to_cart_order`` if needed, so that orders never interleave)."""

ORDER_COLUMNS = (
    "order_id",
    "user_id",
    "order_number",
    "order_hour_of_day",
    "days_since_prior_order",
    "product_id",
    "add_to_cart_order",
)

_MISSING = "missing"


def _read_order_lines(src: Path) -> tuple[pd.DataFrame, Path]:
    sample = src / ORDER_PRODUCTS
    if sample.is_file():
        df = _read_csv(sample)
        _require_columns(df, ORDER_COLUMNS, sample)
        return df, sample
    orders_path = _first_existing(src, [KAGGLE_ORDERS])
    prior_path = _first_existing(src, [KAGGLE_PRIOR])
    if orders_path is None or prior_path is None:
        raise DataError(
            f"{sample}: file not found; the {FORMAT!r} loader expects {ORDER_PRODUCTS} "
            f"(or Kaggle's {KAGGLE_ORDERS} and {KAGGLE_PRIOR}) in {src}"
        )
    orders = _read_csv(orders_path)
    _require_columns(
        orders,
        ["order_id", "user_id", "order_number", "order_hour_of_day", "days_since_prior_order"],
        orders_path,
    )
    lines = _read_csv(prior_path)
    _require_columns(lines, ["order_id", "product_id", "add_to_cart_order"], prior_path)
    cols = ["order_id", "user_id", "order_number", "order_hour_of_day", "days_since_prior_order"]
    df = lines.merge(orders[cols], on="order_id", how="left")
    return df, prior_path


def _lookup(path: Path, key: str, value: str) -> pd.Series:
    df = _read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    _require_columns(df, [key, value], path)
    keys = _id_strings(df[key])
    vals = df[value].astype("string").str.strip()
    return pd.Series(vals.to_numpy(dtype=object), index=keys.to_numpy()).dropna()


def _catalog(src: Path, notes: dict[str, int | str]) -> pd.DataFrame:
    products_path = _require_file(src, PRODUCTS, FORMAT)
    aisles = _lookup(_require_file(src, AISLES, FORMAT), "aisle_id", "aisle")
    departments = _lookup(_require_file(src, DEPARTMENTS, FORMAT), "department_id", "department")
    products = _read_csv(products_path, dtype=str, keep_default_na=False, na_values=[""])
    _require_columns(
        products, ["product_id", "product_name", "aisle_id", "department_id"], products_path
    )
    notes["catalog_rows_read"] = len(products)
    item_id = _id_strings(products["product_id"])
    keep = _drop(item_id.isna(), "catalog_dropped_missing_id", notes)
    keep &= _drop(item_id.duplicated(keep="first") & keep, "catalog_dropped_duplicate_id", notes)
    products = products[keep]
    item_id = item_id[keep]

    name = products["product_name"].astype("string").str.strip()
    name = name.where(name.notna() & (name != ""), None)
    title = name.astype(object).where(name.notna(), None)
    aisle_id = _id_strings(products["aisle_id"])
    aisle = aisle_id.map(aisles)
    dept = _id_strings(products["department_id"]).map(departments)
    missing = (aisle.isna() | (aisle.astype("string").str.lower() == _MISSING)).fillna(True)
    missing |= (dept.astype("string").str.lower() == _MISSING).fillna(False)
    path = [
        f"{d} > {a}" if d is not None and d == d else a
        for d, a in zip(dept.to_numpy(dtype=object), aisle.to_numpy(dtype=object), strict=True)
    ]
    organic = name.str.contains(r"\borganic\b", case=False, regex=True).fillna(False)
    aspects = [
        json.dumps({"organic": "yes" if o else "no"}) if t is not None else "{}"
        for t, o in zip(title.to_numpy(), organic.to_numpy(dtype=bool), strict=True)
    ]
    catalog = pd.DataFrame(
        {
            "item_id": item_id.to_numpy(),
            "title": title.to_numpy(),
            "category_id": aisle_id.where(~missing, None).to_numpy(),
            "category_path": pd.Series(path, dtype=object).where(~missing.to_numpy(), None),
            "product_id": None,
            "product_type": None,
            "brand": None,
            "price": np.nan,
            "available": True,
            "aspects": aspects,
        }
    )
    notes["catalog_titles_missing"] = int(catalog["title"].isna().sum())
    notes["catalog_category_missing"] = int(catalog["category_id"].isna().sum())
    return catalog


def load(src: Path) -> IngestResult:
    """Map an Instacart directory onto the canonical catalog and events.

    Parameters
    ----------
    src : Path
        Directory holding ``order_products_sample.csv`` (or ``orders.csv`` and
        ``order_products__prior.csv``), ``products.csv``, ``aisles.csv`` and
        ``departments.csv``.

    Returns
    -------
    IngestResult
        Purchase events with synthetic, order-preserving timestamps, and the catalog of every
        product; ``notes`` counts every dropped or changed row (see the module docstring).

    Raises
    ------
    DataError
        If ``src`` or a raw file is missing, unreadable or lacks a required column.
    """
    src = _check_dir(src, [ORDER_PRODUCTS, PRODUCTS, AISLES, DEPARTMENTS])
    lines, lines_path = _read_order_lines(src)
    notes: dict[str, int | str] = {"format": FORMAT, "rows_read": len(lines)}
    catalog = _catalog(src, notes)

    order = _id_strings(lines["order_id"])
    user = _id_strings(lines["user_id"])
    item = _id_strings(lines["product_id"])
    number = pd.to_numeric(lines["order_number"], errors="coerce")
    hour = pd.to_numeric(lines["order_hour_of_day"], errors="coerce")
    days = pd.to_numeric(lines["days_since_prior_order"], errors="coerce")
    cart = pd.to_numeric(lines["add_to_cart_order"], errors="coerce")
    malformed = order.isna() | user.isna() | item.isna() | number.isna() | hour.isna() | cart.isna()
    keep = _drop(malformed, "dropped_malformed", notes)
    keep &= _drop(keep & ~item.isin(catalog["item_id"]), "dropped_unknown_product", notes)

    df = pd.DataFrame(
        {
            "user_id": user,
            "item_id": item,
            "order_id": order,
            "number": number,
            "hour": hour,
            "days": days,
            "cart": cart,
        }
    )[keep.to_numpy(dtype=bool)]

    # One row per order, in each user's order sequence.
    orders = df.drop_duplicates("order_id").sort_values(["user_id", "number"], kind="stable")
    first = ~orders["user_id"].duplicated(keep="first")
    notes["orders_missing_days_since_prior"] = int((orders["days"].isna() & ~first).sum())
    days_f = orders["days"].fillna(0.0).where(~first, 0.0)
    cum_days = days_f.groupby(orders["user_id"], sort=False).cumsum()
    base = (EPOCH + np.round(cum_days * 86_400) + orders["hour"] * 3600).astype(np.int64)
    # start_n = max(base_n, start_{n-1} + gap), vectorised as a cummax of base_n - n * gap.
    gap = max(MIN_ORDER_GAP, int(df["cart"].max() if len(df) else 0) + 1)
    rank = orders.groupby("user_id", sort=False).cumcount().astype(np.int64) * gap
    start = (base - rank).groupby(orders["user_id"], sort=False).cummax() + rank
    notes["orders_shifted"] = int((start != base).sum())
    order_start = pd.Series(start.to_numpy(), index=orders["order_id"].to_numpy())

    df = df.assign(_start=df["order_id"].map(order_start).to_numpy())
    df = df.sort_values(["user_id", "number", "cart"], kind="stable")
    events = pd.DataFrame(
        {
            "user_id": df["user_id"].to_numpy(),
            "item_id": df["item_id"].to_numpy(),
            "event": "purchase",
            "timestamp": (df["_start"] + df["cart"]).astype(np.int64).to_numpy(),
            "session_id": df["order_id"].to_numpy(),
            "order_id": df["order_id"].to_numpy(),
        }
    )
    notes["events_written"] = len(events)
    notes["users"] = int(events["user_id"].nunique())
    notes["orders"] = int(events["order_id"].nunique())
    notes["catalog_items"] = len(catalog)
    notes["catalog_items_without_events"] = int((~catalog["item_id"].isin(events["item_id"])).sum())
    _log.info(
        "instacart: %d of %d order lines from %s kept; %d orders; %d catalog items",
        len(events),
        notes["rows_read"],
        lines_path.name,
        notes["orders"],
        len(catalog),
    )
    return IngestResult(catalog=catalog, events=events, notes=notes)
