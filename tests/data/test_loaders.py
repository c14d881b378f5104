"""Tests for the built-in dataset loaders (recset.data.loaders).

Synthetic raw files imitate each published layout with a few rows, edge cases included;
the ``realdata`` tests run each loader on ../shared/data/<name> when it exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recset.data._format import read_validated
from recset.data.loaders import LOADERS, IngestResult, ingest, instacart, taobao
from recset.data.loaders import complete_journey as cj
from recset.errors import ConfigError, DataError

DATA_DIR = Path(
    os.environ.get(
        "RECSET_DATA_DIR", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    )
)

EPOCH_2017 = 1_483_228_800  # 2017-01-01T00:00:00Z


def _rows(events: pd.DataFrame) -> list[tuple[object, ...]]:
    """Events as tuples with nulls as None, in frame order."""
    cols = ["user_id", "item_id", "event", "timestamp", "session_id", "order_id"]
    return [
        tuple(None if pd.isna(v) else v for v in row)
        for row in events[cols].astype(object).itertuples(index=False, name=None)
    ]


def _check_accounting(result: IngestResult) -> None:
    """Every event row read is either written or counted under one dropped_* key."""
    notes = result.notes
    dropped = sum(int(v) for k, v in notes.items() if k.startswith("dropped_"))
    assert notes["rows_read"] - dropped == notes["events_written"] == len(result.events)
    cat_dropped = sum(int(v) for k, v in notes.items() if k.startswith("catalog_dropped_"))
    if "catalog_rows_read" in notes:
        assert notes["catalog_rows_read"] - cat_dropped == notes["catalog_items"]
    assert notes["catalog_items"] == len(result.catalog)


def _check_written(out: Path, result: IngestResult) -> tuple[pd.DataFrame, pd.DataFrame]:
    cat, ev, report = read_validated(out)
    assert report.n_bad == 0
    assert len(cat) == len(result.catalog)
    assert len(ev) == len(result.events)
    return cat, ev


# --- Complete Journey --------------------------------------------------------------------


def _write_complete_journey(src: Path) -> None:
    src.mkdir(parents=True, exist_ok=True)
    products = pd.DataFrame(
        [
            (1, 69, "GROCERY", "National", "COLD CEREAL", "KIDS CEREAL", "14.5 OZ"),
            (2, 2, "PRODUCE", "Private", "APPLES", "APPLES GALA (BULK&BAG)", None),
            (3, 2, "FUEL", "Private", "COUPON/MISC ITEMS", "GASOLINE-REG UNLEADED", None),
            (4, 2, "COUPON", "National", "COUPONS/STORE & MFG", "COUPONS/STORE & MFG", None),
            (5, 2, "GROCERY", "National", "COUPON/MISC ITEMS", "MISC SALES TRANS", None),
            (6, 2, "MISCELLANEOUS", "National", "COUPON/MISC ITEMS", "MASTERCARD GIFT CARD", None),
            (7, 500, "CHEF SHOPPE", "Private", None, "INSTORE CUT VEGETABLES", None),
            (8, 77, "DRUG GM", "National", "STATIONERY & SCHOOL SUPPLIES", None, None),
            (9, 12, "TRAVEL & LEISURE", "National", "APPLES", "APPLES GALA (BULK&BAG)", "3 LB"),
        ],
        columns=[
            "product_id",
            "manufacturer_id",
            "department",
            "brand",
            "product_category",
            "product_type",
            "package_size",
        ],
    )
    t0 = pd.Timestamp("2017-01-01 10:00:00")
    t1 = pd.Timestamp("2017-01-02 11:30:05")
    t2 = pd.Timestamp("2017-01-05 09:00:00")
    tx = pd.DataFrame(
        [
            # household, store, basket, product, qty, sales, timestamp
            (11, 1, 100, 1, 1, 3.0, t0),
            (11, 1, 100, 2, 2, 1.0, t0),
            (11, 1, 100, 3, 10, 25.0, t0),  # fuel: non-merchandise
            (22, 1, 200, 1, 2, 5.0, t1),
            (22, 1, 200, 999, 0, 0.0, t1),  # unknown product (and quantity 0)
            (22, 1, 200, 4, 1, 0.0, t1),  # coupon
            (22, 1, 200, 5, 1, 0.5, t1),  # misc sales trans (category rule)
            (33, 2, 300, 6, 1, 25.0, t2),  # gift card
            (22, 1, 201, 2, 0, 0.0, t2),  # quantity 0
            (22, 1, 201, 7, 1, 0.0, t2),  # kept; free, so no price
            (33, 2, 301, 1, -1, -3.0, t2),  # a return
            (33, 2, 301, 9, 1, 4.0, t2),
        ],
        columns=[
            "household_id",
            "store_id",
            "basket_id",
            "product_id",
            "quantity",
            "sales_value",
            "transaction_timestamp",
        ],
    )
    for col in ("retail_disc", "coupon_disc", "coupon_match_disc"):
        tx[col] = 0.0
    tx["week"] = 1
    tx.to_parquet(src / "transactions.parquet", index=False)
    products.to_parquet(src / "products.parquet", index=False)


def test_complete_journey_mapping(tmp_path: Path) -> None:
    src = tmp_path / "cj"
    _write_complete_journey(src)
    result = ingest("complete_journey", src, tmp_path / "out")

    t0 = int(pd.Timestamp("2017-01-01 10:00:00", tz="UTC").timestamp())
    t1 = int(pd.Timestamp("2017-01-02 11:30:05", tz="UTC").timestamp())
    t2 = int(pd.Timestamp("2017-01-05 09:00:00", tz="UTC").timestamp())
    assert _rows(result.events) == [
        ("11", "1", "purchase", t0, "100", "100"),
        ("11", "2", "purchase", t0, "100", "100"),
        ("22", "1", "purchase", t1, "200", "200"),
        ("22", "7", "purchase", t2, "201", "201"),
        ("33", "9", "purchase", t2, "301", "301"),
    ]
    notes = result.notes
    assert notes["rows_read"] == 12
    assert notes["dropped_malformed"] == 0
    assert notes["dropped_unknown_product"] == 1
    assert notes["dropped_non_merchandise"] == 4
    assert notes["dropped_returns"] == 1
    assert notes["dropped_zero_quantity"] == 1
    assert notes["events_written"] == 5
    assert notes["catalog_rows_read"] == 9
    assert notes["catalog_dropped_non_merchandise"] == 4
    assert notes["catalog_items"] == 5
    assert notes["catalog_items_without_events"] == 1  # product 8
    assert notes["catalog_items_without_price"] == 2  # 7 (free) and 8 (never sold)
    assert notes["users"] == 3 and notes["orders"] == 4
    _check_accounting(result)

    cat = result.catalog.set_index("item_id")
    assert sorted(cat.index) == ["1", "2", "7", "8", "9"]
    one = cat.loc["1"]
    assert one["title"] == "KIDS CEREAL 14.5 OZ (COLD CEREAL, GROCERY)"
    assert one["category_id"] == "COLD CEREAL"
    assert one["category_path"] == "GROCERY > COLD CEREAL > KIDS CEREAL"
    assert one["product_type"] == "KIDS CEREAL"
    assert one["brand"] == "69"
    assert pd.isna(one["product_id"])
    assert one["price"] == pytest.approx(2.75)  # median of 3.0/1 and 5.0/2
    assert json.loads(one["aspects"]) == {"package_size": "14.5 OZ", "brand_class": "National"}
    assert bool(one["available"])
    assert cat.loc["2", "price"] == pytest.approx(0.5)
    assert json.loads(cat.loc["2", "aspects"]) == {"brand_class": "Private"}
    # No product_category: the department stands in as the category.
    assert cat.loc["7", "category_id"] == "CHEF SHOPPE"
    assert cat.loc["7", "category_path"] == "CHEF SHOPPE > INSTORE CUT VEGETABLES"
    assert pd.isna(cat.loc["7", "price"])
    # No product_type: title and path skip the missing level.
    assert cat.loc["8", "title"] == "STATIONERY & SCHOOL SUPPLIES, DRUG GM"
    assert pd.isna(cat.loc["8", "product_type"])
    # The same category under two departments is one category id.
    assert cat.loc["9", "category_id"] == cat.loc["2", "category_id"] == "APPLES"

    _, ev = _check_written(tmp_path / "out", result)
    assert set(ev["event"]) == {"purchase"}


def test_non_merchandise_rule() -> None:
    products = pd.DataFrame(
        {
            "department": ["FUEL", "KIOSK-GAS", "GROCERY", "GROCERY", "DRUG GM", "GROCERY", None],
            "product_category": [
                "FUEL",
                None,
                "BOTTLE DEPOSITS",
                "COLD CEREAL",
                "TICKETS",
                "SOFT DRINKS",
                None,
            ],
            "product_type": [
                "GASOLINE-REG UNLEADED",
                None,
                "BOTTLE DEPOSITS",
                "KIDS CEREAL",
                "TICKETS",
                "ELECTRONIC GIFT CARDS ACTIVATI",
                None,
            ],
        }
    )
    assert cj.non_merchandise(products).tolist() == [True, True, True, False, True, True, False]


# --- Instacart -----------------------------------------------------------------------------


def _write_instacart_catalog(src: Path) -> None:
    src.mkdir(parents=True, exist_ok=True)
    (src / "products.csv").write_text(
        "product_id,product_name,aisle_id,department_id\n"
        "1,Organic Bananas,24,4\n"
        '2,"Soda, ""Diet""",77,7\n'
        "3,,100,21\n"
        "4,Never Ordered,24,4\n",
        encoding="utf-8",
    )
    (src / "aisles.csv").write_text(
        "aisle_id,aisle\n24,fresh fruits\n77,soft drinks\n100,missing\n", encoding="utf-8"
    )
    (src / "departments.csv").write_text(
        "department_id,department\n4,produce\n7,beverages\n21,missing\n", encoding="utf-8"
    )


_INSTACART_ORDERS = [
    # order_id, user_id, order_number, order_dow, hour, days_since_prior
    (10, 1, 1, 0, 8, None),
    (11, 1, 2, 0, 9, 0.0),
    (12, 1, 3, 0, 9, 0.0),  # same day and hour as order 11: moved one hour later
    (20, 2, 1, 3, 23, None),
    (21, 2, 2, 5, 1, 2.0),
]
_INSTACART_LINES = [
    # order_id, product_id, add_to_cart_order
    (10, 1, 1),
    (10, 2, 2),
    (11, 3, 1),
    (12, 2, 1),
    (12, 1, 2),
    (20, 2, 1),
    (21, 99, 1),  # not in products.csv
    (21, 1, 2),
]


def _write_instacart_sample(src: Path) -> None:
    _write_instacart_catalog(src)
    orders = pd.DataFrame(
        _INSTACART_ORDERS,
        columns=[
            "order_id",
            "user_id",
            "order_number",
            "order_dow",
            "order_hour_of_day",
            "days_since_prior_order",
        ],
    )
    lines = pd.DataFrame(_INSTACART_LINES, columns=["order_id", "product_id", "add_to_cart_order"])
    df = lines.merge(orders, on="order_id")
    df["reordered"] = 0
    # Shuffled rows: the loader must sort by user, order number and cart position.
    df = df.sample(frac=1.0, random_state=3)
    df.to_csv(src / "order_products_sample.csv", index=False)


def _expected_instacart() -> list[tuple[object, ...]]:
    h = 3600
    d = 86_400
    return [
        ("1", "1", "purchase", EPOCH_2017 + 8 * h + 1, "10", "10"),
        ("1", "2", "purchase", EPOCH_2017 + 8 * h + 2, "10", "10"),
        ("1", "3", "purchase", EPOCH_2017 + 9 * h + 1, "11", "11"),
        ("1", "2", "purchase", EPOCH_2017 + 10 * h + 1, "12", "12"),
        ("1", "1", "purchase", EPOCH_2017 + 10 * h + 2, "12", "12"),
        ("2", "2", "purchase", EPOCH_2017 + 23 * h + 1, "20", "20"),
        ("2", "1", "purchase", EPOCH_2017 + 2 * d + 1 * h + 2, "21", "21"),
    ]


def test_instacart_mapping(tmp_path: Path) -> None:
    src = tmp_path / "instacart"
    _write_instacart_sample(src)
    result = ingest("instacart", src, tmp_path / "out")

    assert _rows(result.events) == _expected_instacart()
    notes = result.notes
    assert notes["rows_read"] == 8
    assert notes["dropped_malformed"] == 0
    assert notes["dropped_unknown_product"] == 1
    assert notes["orders_shifted"] == 1
    assert notes["events_written"] == 7
    assert notes["catalog_rows_read"] == 4
    assert notes["catalog_titles_missing"] == 1
    assert notes["catalog_category_missing"] == 1
    assert notes["catalog_items_without_events"] == 1
    assert notes["users"] == 2 and notes["orders"] == 5
    _check_accounting(result)

    cat = result.catalog.set_index("item_id")
    assert cat.loc["1", "title"] == "Organic Bananas"
    assert cat.loc["1", "category_id"] == "24"
    assert cat.loc["1", "category_path"] == "produce > fresh fruits"
    assert json.loads(cat.loc["1", "aspects"]) == {"organic": "yes"}
    assert cat.loc["2", "title"] == 'Soda, "Diet"'
    assert json.loads(cat.loc["2", "aspects"]) == {"organic": "no"}
    # Empty name in aisle "missing": null title and no category.
    assert pd.isna(cat.loc["3", "title"])
    assert pd.isna(cat.loc["3", "category_id"]) and pd.isna(cat.loc["3", "category_path"])
    assert json.loads(cat.loc["3", "aspects"]) == {}
    for col in ("brand", "product_type", "product_id", "price"):
        assert cat[col].isna().all(), col

    _check_written(tmp_path / "out", result)


def test_instacart_epoch_is_2017_utc() -> None:
    assert instacart.EPOCH == EPOCH_2017


def test_instacart_kaggle_layout(tmp_path: Path) -> None:
    src = tmp_path / "kaggle"
    _write_instacart_catalog(src)
    orders = pd.DataFrame(
        _INSTACART_ORDERS,
        columns=[
            "order_id",
            "user_id",
            "order_number",
            "order_dow",
            "order_hour_of_day",
            "days_since_prior_order",
        ],
    )
    orders.insert(2, "eval_set", "prior")
    orders.to_csv(src / "orders.csv", index=False)
    lines = pd.DataFrame(_INSTACART_LINES, columns=["order_id", "product_id", "add_to_cart_order"])
    lines["reordered"] = 0
    lines.to_csv(src / "order_products__prior.csv", index=False)

    result = LOADERS["instacart"](src)
    assert _rows(result.events) == _expected_instacart()
    _check_accounting(result)


# --- Taobao --------------------------------------------------------------------------------

T0 = 1_511_600_000  # inside the official window (2017-11-25 .. 12-03 China time)


def _taobao_lines() -> list[str]:
    return [
        f"1,100,7,pv,{T0}",
        f"1,200,7,fav,{T0 + 60}",
        f"1,100,7,cart,{T0 + 120}",
        f"1,100,7,buy,{T0 + 180}",
        f"1,200,7,buy,{T0 + 200}",
        f"1,300,8,pv,{T0 + 200 + 31 * 60}",  # 31-minute gap: a new session
        f"1,400,8,pv,{T0 + 200 + 61 * 60}",  # exactly 30 minutes later: same session
        f"1,400,8,clk,{T0 + 200 + 62 * 60}",  # unknown behaviour
        "1,500,8,pv,",  # cut line: no timestamp
        f"2,100,9,pv,{T0 - 10 * 86_400}",  # outside the window; item 100 seen with category 9
        f"2,300,8,buy,{T0 + 5}",
    ]


def test_taobao_mapping(tmp_path: Path) -> None:
    src = tmp_path / "taobao"
    src.mkdir()
    header = "user_id,item_id,category_id,behavior_type,timestamp\n"
    (src / "UserBehavior_head_814users.csv").write_text(
        header + "\n".join(_taobao_lines()) + "\n", encoding="utf-8"
    )
    result = ingest("taobao", src, tmp_path / "out")

    t = T0 + 200
    assert _rows(result.events) == [
        ("1", "100", "view", T0, "1-1", None),
        ("1", "200", "view", T0 + 60, "1-1", None),
        ("1", "100", "add_to_cart", T0 + 120, "1-1", None),
        ("1", "100", "purchase", T0 + 180, "1-1", "1-1"),
        ("1", "200", "purchase", t, "1-1", "1-1"),
        ("1", "300", "view", t + 31 * 60, "1-2", None),
        ("1", "400", "view", t + 61 * 60, "1-2", None),
        ("2", "100", "view", T0 - 10 * 86_400, "2-1", None),
        ("2", "300", "purchase", T0 + 5, "2-2", "2-2"),
    ]
    notes = result.notes
    assert notes["rows_read"] == 11
    assert notes["dropped_malformed"] == 1
    assert notes["dropped_unknown_behavior"] == 1
    assert notes["dropped_fav"] == 0
    assert notes["mapped_fav_to_view"] == 1
    assert notes["events_outside_window"] == 1
    assert notes["items_with_several_categories"] == 1
    assert notes["sessions"] == 4 and notes["orders"] == 2 and notes["users"] == 2
    _check_accounting(result)

    cat = result.catalog.set_index("item_id")
    assert sorted(cat.index) == ["100", "200", "300", "400"]
    assert cat.loc["100", "category_id"] == "7"  # 3 events with 7, 1 with 9
    assert (cat["category_path"] == cat["category_id"]).all()
    for col in ("title", "brand", "price", "product_type", "product_id"):
        assert cat[col].isna().all(), col

    _check_written(tmp_path / "out", result)


def test_taobao_headerless_original_and_fav_drop(tmp_path: Path) -> None:
    src = tmp_path / "taobao"
    src.mkdir()
    (src / "UserBehavior.csv").write_text("\n".join(_taobao_lines()) + "\n", encoding="utf-8")
    result = taobao.load(src, fav="drop")
    assert result.notes["rows_read"] == 11
    assert result.notes["dropped_fav"] == 1
    assert result.notes["mapped_fav_to_view"] == 0
    assert "200" not in set(result.events.loc[result.events["event"] == "view", "item_id"])
    _check_accounting(result)
    with pytest.raises(ConfigError, match="'fav'"):
        taobao.load(src, fav="keep")  # type: ignore[arg-type]


# --- errors --------------------------------------------------------------------------------


def test_unknown_format_names_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="complete_journey, instacart, taobao"):
        ingest("movielens", tmp_path, tmp_path / "out")


@pytest.mark.parametrize("fmt", sorted(LOADERS))
def test_missing_source_dir(tmp_path: Path, fmt: str) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="nowhere"):
        ingest(fmt, missing, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("complete_journey", "transactions.parquet"),
        ("instacart", "order_products_sample.csv"),
        ("taobao", "UserBehavior_head_814users.csv"),
    ],
)
def test_missing_raw_file(tmp_path: Path, fmt: str, expected: str) -> None:
    (tmp_path / "src").mkdir()
    with pytest.raises(DataError, match=expected) as info:
        ingest(fmt, tmp_path / "src", tmp_path / "out")
    assert str(tmp_path / "src") in str(info.value)


def test_missing_products_file(tmp_path: Path) -> None:
    src = tmp_path / "cj"
    _write_complete_journey(src)
    (src / "products.parquet").unlink()
    with pytest.raises(DataError, match="products.parquet"):
        ingest("complete_journey", src, tmp_path / "out")

    src = tmp_path / "ic"
    _write_instacart_sample(src)
    (src / "aisles.csv").unlink()
    with pytest.raises(DataError, match="aisles.csv"):
        ingest("instacart", src, tmp_path / "out")


def test_missing_column_is_named(tmp_path: Path) -> None:
    src = tmp_path / "taobao"
    src.mkdir()
    (src / "UserBehavior_head_814users.csv").write_text(
        "user_id,item_id,behavior_type,timestamp\n1,2,pv,3\n", encoding="utf-8"
    )
    with pytest.raises(DataError, match="category_id"):
        ingest("taobao", src, tmp_path / "out")

    src = tmp_path / "cj"
    _write_complete_journey(src)
    tx = pd.read_parquet(src / "transactions.parquet").drop(columns=["basket_id"])
    tx.to_parquet(src / "transactions.parquet", index=False)
    with pytest.raises(DataError, match="basket_id"):
        ingest("complete_journey", src, tmp_path / "out")


# --- real data -----------------------------------------------------------------------------


def _real(name: str) -> Path:
    path = (DATA_DIR / name).resolve()
    if not path.is_dir():
        pytest.skip(f"real dataset not found at {path} (set RECSET_DATA_DIR to its parent)")
    return path


@pytest.mark.realdata
def test_complete_journey_promotion_calendar(tmp_path: Path) -> None:
    src = tmp_path / "cj"
    _write_complete_journey(src)
    tx = pd.read_parquet(src / "transactions.parquet")
    # weeks start on Monday 05:00 (local midnight): Jan 1 is week 1, Jan 2 11:30 on week 2;
    # a purchase at Jan 2 04:50 (week 1) and one at Jan 9 05:10 (week 3) pin the grid
    tx["week"] = np.where(tx["transaction_timestamp"] < pd.Timestamp("2017-01-02"), 1, 2)
    extra = tx.iloc[[0, 0]].copy()
    extra["basket_id"] = [400, 401]
    extra["transaction_timestamp"] = pd.to_datetime(["2017-01-02 04:50", "2017-01-09 05:10"])
    extra["week"] = [1, 3]
    pd.concat([tx, extra]).to_parquet(src / "transactions.parquet", index=False)
    pd.DataFrame(
        {
            # product, store, display, mailer, week
            "product_id": [1, 1, 1, 2, 3, 999],
            "store_id": [1, 2, 3, 1, 1, 1],
            "display_location": ["5", "0", "0", "0", "1", "2"],
            "mailer_location": ["A", "A", "0", "0", "A", "A"],
            "week": [2, 2, 2, 3, 2, 2],
        }
    ).to_parquet(src / "promotions.parquet", index=False)
    out = tmp_path / "out"
    result = ingest("complete_journey", src, out)
    notes = result.notes
    assert notes["promotions_rows_read"] == 6
    # product 3 (fuel, not merchandise) and 999 are not in the catalog
    assert notes["promotions_dropped_unknown_product"] == 2
    assert notes["promotions_week_grid_misfits"] == 0
    week2 = int(pd.Timestamp("2017-01-02 05:00", tz="UTC").timestamp())
    w = 7 * 86_400
    cal = pd.read_parquet(out / "promotions.parquet").sort_values(["item_id", "channel"])
    # reach: the share of the calendar's 3 stores; product 2's row promotes nothing
    assert cal.to_dict("records") == [
        {"item_id": "1", "start": week2, "end": week2 + w, "channel": "display", "reach": 1 / 3},
        {"item_id": "1", "start": week2, "end": week2 + w, "channel": "mailer", "reach": 2 / 3},
    ]
    from recset.data import load_dataset

    ds = load_dataset(out)
    assert ds.promotions is not None and ds.promotions.channels == ("display", "mailer")
    # a later ingest without the calendar leaves no stale file behind
    (src / "promotions.parquet").unlink()
    ingest("complete_journey", src, out, force=True)
    assert not (out / "promotions.parquet").exists()
    assert load_dataset(out).promotions is None


def test_complete_journey_weeks_that_fit_no_grid(tmp_path: Path) -> None:
    src = tmp_path / "cj"
    _write_complete_journey(src)
    tx = pd.read_parquet(src / "transactions.parquet")
    tx["week"] = 1  # Jan 1 and Jan 5 fit one week, but not Jan 1 10:00 and Jan 9
    tx.loc[tx.index[-1], "transaction_timestamp"] = pd.Timestamp("2017-01-09 09:00")
    tx.to_parquet(src / "transactions.parquet", index=False)
    pd.DataFrame(
        {
            "product_id": [1],
            "store_id": [1],
            "display_location": ["1"],
            "mailer_location": ["0"],
            "week": [1],
        }
    ).to_parquet(src / "promotions.parquet", index=False)
    with pytest.raises(DataError, match="fit no 7-day grid"):
        ingest("complete_journey", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_real_complete_journey(tmp_path: Path) -> None:
    src = _real("complete_journey")
    result = ingest("complete_journey", src, tmp_path / "out")
    notes = result.notes
    # Measured in SOURCE.md: 1,469,307 rows; 4,836 rows with a product absent from products.
    assert notes["rows_read"] == 1_469_307
    assert notes["catalog_rows_read"] == 92_331
    assert notes["dropped_unknown_product"] == 4_836
    assert notes["dropped_returns"] == 0
    assert notes["dropped_non_merchandise"] > 13_000  # fuel alone is ~13k rows
    # 2,469 households; two (272 and 352) bought only fuel and have no event left.
    assert notes["users"] == 2_467
    assert notes["orders"] < 155_848
    _check_accounting(result)
    ev = result.events
    assert set(ev["event"]) == {"purchase"}
    assert (ev["order_id"] == ev["session_id"]).all()
    # Each basket is one household at one time (SOURCE.md: basket integrity).
    per_basket = ev.groupby("order_id").agg(u=("user_id", "nunique"), t=("timestamp", "nunique"))
    assert (per_basket["u"] == 1).all() and (per_basket["t"] == 1).all()
    cat = result.catalog
    assert cat["category_id"].nunique() <= 303
    assert not cat["category_id"].isna().any()
    assert cat["item_id"].is_unique
    _check_written(tmp_path / "out", result)


@pytest.mark.realdata
def test_real_instacart(tmp_path: Path) -> None:
    src = _real("instacart_sample")
    result = ingest("instacart", src, tmp_path / "out")
    notes = result.notes
    # Measured in SOURCE.md: 149,998 rows, 593 users, 15,182 orders, 14,190 products,
    # 49,694 catalogue rows of which 1,258 have an empty name.
    assert notes["rows_read"] == 149_998
    assert notes["events_written"] == 149_998
    assert notes["users"] == 593
    assert notes["orders"] == 15_182
    assert result.events["item_id"].nunique() == 14_190
    assert notes["catalog_items"] == 49_694
    assert notes["catalog_titles_missing"] == 1_258
    _check_accounting(result)
    ev = result.events
    # Timestamps keep the order sequence: a user's orders never interleave.
    span = ev.groupby(["user_id", "order_id"]).agg(lo=("timestamp", "min"), hi=("timestamp", "max"))
    span = span.sort_values(["user_id", "lo"])
    prev_hi = span.groupby(level="user_id")["hi"].shift()
    assert (span["lo"] > prev_hi).where(prev_hi.notna(), True).all()
    assert ev["timestamp"].min() >= EPOCH_2017
    _check_written(tmp_path / "out", result)


@pytest.mark.realdata
def test_real_taobao(tmp_path: Path) -> None:
    src = _real("taobao_userbehavior_head")
    result = ingest("taobao", src, tmp_path / "out")
    notes = result.notes
    # Measured in SOURCE.md: 84,287 events (pv 75,693, cart 4,494, fav 2,351, buy 1,749),
    # 814 users, 55,233 items, 2,911 categories, 14,096 sessions at a 30-minute gap,
    # 1,344 of which hold a buy; 35 events outside the official window.
    assert notes["rows_read"] == 84_287
    assert notes["events_written"] == 84_287
    assert notes["users"] == 814
    assert notes["sessions"] == 14_096
    assert notes["orders"] == 1_344
    assert notes["mapped_fav_to_view"] == 2_351
    assert notes["events_outside_window"] == 35
    counts = result.events["event"].value_counts()
    assert counts["view"] == 75_693 + 2_351
    assert counts["add_to_cart"] == 4_494
    assert counts["purchase"] == 1_749
    assert notes["catalog_items"] == 55_233
    assert result.catalog["category_id"].nunique() == 2_911
    _check_accounting(result)
    purchases = result.events[result.events["event"] == "purchase"]
    assert (purchases["order_id"] == purchases["session_id"]).all()
    assert result.events.loc[result.events["event"] != "purchase", "order_id"].isna().all()
    assert np.issubdtype(result.events["timestamp"].dtype, np.integer)
    _check_written(tmp_path / "out", result)


def test_ingest_never_writes_over_a_dataset_or_a_file(tmp_path: Path) -> None:
    src = tmp_path / "instacart"
    _write_instacart_sample(src)
    out = tmp_path / "out"
    ingest("instacart", src, out)
    before = (out / "events.parquet").read_bytes()
    with pytest.raises(DataError, match=r"already holds a dataset .*--force"):
        ingest("instacart", src, out)
    assert (out / "events.parquet").read_bytes() == before
    assert len(ingest("instacart", src, out, force=True).events) == 7
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="is not a directory"):
        ingest("instacart", src, tmp_path / "file")
