"""Loader for Taobao UserBehavior (Alibaba/Tianchi; the 814-user head or the full file).

Raw file: ``UserBehavior_head_814users.csv`` (with a header) or the original
``UserBehavior.csv`` (no header); columns ``user_id, item_id, category_id, behavior_type,
timestamp`` (Unix seconds).

Mapping
-------
Events:

- ``behavior_type``: ``pv`` -> ``view``, ``cart`` -> ``add_to_cart``, ``buy`` -> ``purchase``,
  ``fav`` (favourite) -> ``view`` by default (``mapped_fav_to_view``). A favourite is an
  expression of interest like a view, and 82% of the favourites in the sample have no view of
  the same item in the same session (the item was favourited from a list page), so dropping
  them would lose co-view evidence. Pass ``fav="drop"`` to :func:`load` to drop them instead
  (``dropped_fav``).
- ``timestamp`` = ``timestamp`` (UTC seconds; the dataset's days are China time, UTC+8).
  The 35 events outside the official 2017-11-25..12-03 window are kept
  (``events_outside_window`` counts them; nothing is changed).
- ``session_id`` = ``"<user_id>-<n>"``, ``n`` = 1, 2, ... per user: a user's events sorted by
  time (ties keep file order) start a new session after a gap of more than 30 minutes
  (:data:`SESSION_GAP` seconds; exactly 30 minutes does not cut). This gives 14,096 sessions
  on the 814-user head.
- ``order_id``: there are no orders, so the purchases of one session are taken as one basket:
  ``order_id`` = ``session_id`` for ``purchase`` events, null for the others.

Catalog (built from the events; the data has no item attributes):

- ``item_id``; ``category_id`` = the item's ``category_id``, ``category_path`` = the same
  (one anonymised leaf level). An item seen with several categories (1 in the sample) gets
  the one on most of its events, ties going to the latest
  (``items_with_several_categories``).
- ``title``, ``brand``, ``price``, ``product_id``, ``product_type``, ``aspects`` = null;
  ``available`` = true.

Rows dropped (each counted once, under the first reason that applies)
---------------------------------------------------------------------
``dropped_malformed``
    a missing user, item or category, or a timestamp that is not an integer (e.g. the cut
    last line of a byte prefix of the original file).
``dropped_unknown_behavior``
    a ``behavior_type`` other than ``pv``, ``cart``, ``fav``, ``buy``.
``dropped_fav``
    ``fav`` events, only with ``fav="drop"``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

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
)
from recset.errors import ConfigError, DataError

_log = logging.getLogger(__name__)

FORMAT = "taobao"
FILES = ("UserBehavior_head_814users.csv", "UserBehavior.csv")
"""Raw file names looked for in the source directory, in this order."""

COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")

SESSION_GAP = 30 * 60
"""A gap of more than this many seconds between a user's events starts a new session."""

BEHAVIORS: dict[str, str] = {"pv": "view", "cart": "add_to_cart", "buy": "purchase"}

WINDOW = (
    int(pd.Timestamp("2017-11-25", tz="Asia/Shanghai").timestamp()),
    int(pd.Timestamp("2017-12-04", tz="Asia/Shanghai").timestamp()),
)
"""The official data window [start, end) in epoch seconds (China-time days)."""


def _read(path: Path) -> pd.DataFrame:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    has_header = first.split(",", 1)[0].strip().lower() == "user_id"
    df = _read_csv(
        path,
        header=0 if has_header else None,
        names=None if has_header else list(COLUMNS),
        dtype=str,
        keep_default_na=False,
        na_values=[""],
    )
    _require_columns(df, COLUMNS, path)
    return df


def _sessions(user: pd.Series, ts: pd.Series) -> pd.Series:
    """Session ids for events already sorted by (user, time)."""
    new_user = user.ne(user.shift())
    new = new_user | ts.diff().gt(SESSION_GAP)
    n = new.astype(np.int64).groupby(user.to_numpy(), sort=False).cumsum()
    return user.astype(str) + "-" + n.astype(str)


def load(src: Path, *, fav: Literal["view", "drop"] = "view") -> IngestResult:
    """Map a Taobao UserBehavior directory onto the canonical catalog and events.

    Parameters
    ----------
    src : Path
        Directory holding ``UserBehavior_head_814users.csv`` or ``UserBehavior.csv``.
    fav : {"view", "drop"}, default "view"
        What to do with favourite events: map them to ``view`` or drop them.

    Returns
    -------
    IngestResult
        View, add-to-cart and purchase events with 30-minute-gap sessions, and a catalog of
        the items seen in them; ``notes`` counts every dropped or changed row.

    Raises
    ------
    ConfigError
        If ``fav`` is not ``"view"`` or ``"drop"``.
    DataError
        If ``src`` or the raw file is missing, unreadable or lacks a required column.
    """
    if fav not in ("view", "drop"):
        raise ConfigError(f"The 'fav' parameter must be 'view' or 'drop'. Got {fav!r} instead.")
    src = _check_dir(src, [" or ".join(FILES)])
    path = _first_existing(src, FILES)
    if path is None:
        raise DataError(
            f"{src / FILES[0]}: file not found; the {FORMAT!r} loader expects one of "
            f"{', '.join(FILES)} in {src}"
        )
    raw = _read(path)
    notes: dict[str, int | str] = {"format": FORMAT, "rows_read": len(raw)}

    user = _id_strings(raw["user_id"])
    item = _id_strings(raw["item_id"])
    category = _id_strings(raw["category_id"])
    ts_num = pd.to_numeric(raw["timestamp"].astype("string").str.strip(), errors="coerce")
    behavior = raw["behavior_type"].astype("string").str.strip().str.lower()

    malformed = (
        user.isna()
        | item.isna()
        | category.isna()
        | ts_num.isna()
        | (ts_num != np.floor(ts_num)).fillna(True)
    )
    keep = _drop(malformed, "dropped_malformed", notes)
    known = behavior.isin([*BEHAVIORS, "fav"]).fillna(False)
    keep &= _drop(keep & ~known, "dropped_unknown_behavior", notes)
    is_fav = (behavior == "fav").fillna(False)
    if fav == "drop":
        keep &= _drop(keep & is_fav, "dropped_fav", notes)
        notes["mapped_fav_to_view"] = 0
    else:
        notes["dropped_fav"] = 0
        notes["mapped_fav_to_view"] = int((keep & is_fav).sum())
    mapping = {**BEHAVIORS, "fav": "view"}

    mask = keep.to_numpy(dtype=bool)
    df = pd.DataFrame(
        {
            "user_id": user.to_numpy()[mask],
            "item_id": item.to_numpy()[mask],
            "category_id": category.to_numpy()[mask],
            "event": behavior.to_numpy(dtype=object)[mask],
            "timestamp": ts_num.to_numpy()[mask].astype(np.int64),
        }
    )
    df["event"] = df["event"].map(mapping)
    # Sort by user, then time; ties keep the file order (stable sort).
    df = df.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    session = _sessions(df["user_id"], df["timestamp"])
    order = session.where(df["event"] == "purchase", None)
    events = pd.DataFrame(
        {
            "user_id": df["user_id"],
            "item_id": df["item_id"],
            "event": df["event"],
            "timestamp": df["timestamp"],
            "session_id": session,
            "order_id": order.astype(object).where(order.notna(), None),
        }
    )
    notes["events_outside_window"] = int(
        ((df["timestamp"] < WINDOW[0]) | (df["timestamp"] >= WINDOW[1])).sum()
    )

    # Catalog: one row per item, with the category on most of its events (ties: latest).
    counts = (
        df.groupby(["item_id", "category_id"], sort=False)
        .agg(n=("timestamp", "size"), last=("timestamp", "max"))
        .reset_index()
    )
    notes["items_with_several_categories"] = int(counts["item_id"].value_counts().gt(1).sum())
    best = counts.sort_values(
        ["item_id", "n", "last"], ascending=[True, False, False], kind="stable"
    ).drop_duplicates("item_id", keep="first")
    catalog = pd.DataFrame(
        {
            "item_id": best["item_id"].to_numpy(),
            "title": None,
            "category_id": best["category_id"].to_numpy(),
            "category_path": best["category_id"].to_numpy(),
            "product_id": None,
            "product_type": None,
            "brand": None,
            "price": np.nan,
            "available": True,
            "aspects": None,
        }
    )

    notes["events_written"] = len(events)
    notes["users"] = int(events["user_id"].nunique())
    notes["sessions"] = int(events["session_id"].nunique())
    notes["orders"] = int(events["order_id"].nunique())
    notes["catalog_items"] = len(catalog)
    _log.info(
        "taobao: %d of %d events kept from %s; %d sessions; %d catalog items",
        len(events),
        notes["rows_read"],
        path.name,
        notes["sessions"],
        len(catalog),
    )
    return IngestResult(catalog=catalog, events=events, notes=notes)
