"""Tests of the synthetic generator: format, determinism and the planted structure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recset.data import load_dataset
from recset.data._format import CATALOG_COLUMNS, EVENT_COLUMNS, EVENT_TYPES, read_validated
from recset.data.synthetic import SyntheticConfig, SyntheticData, generate, write_synthetic
from recset.errors import ConfigError, DataError

SMALL = SyntheticConfig(n_items=3000, n_events=40_000, seed=11)


@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(SMALL)


@pytest.fixture(scope="module")
def purchases(data: SyntheticData) -> pd.DataFrame:
    """Purchases joined with the catalog attributes of the item and the planted user prefs."""
    ev = data.events
    p = ev[ev["event"] == "purchase"].merge(data.catalog, on="item_id", how="left")
    prefs = pd.DataFrame.from_dict(data.truth["user_preferences"], orient="index")
    p = p.merge(
        prefs[["brand", "color"]].add_prefix("user_"),
        left_on="user_id",
        right_index=True,
        how="left",
    )
    p["model"] = p["aspects"].map(lambda s: json.loads(s).get("model"))
    p["compatible_model"] = p["aspects"].map(lambda s: json.loads(s).get("compatible_model"))
    return p


# --------------------------------------------------------------------------- format


def test_columns_and_types(data: SyntheticData) -> None:
    cat, ev = data.catalog, data.events
    assert list(cat.columns) == list(CATALOG_COLUMNS)
    assert list(ev.columns) == list(EVENT_COLUMNS)
    assert len(cat) == SMALL.n_items
    assert cat["item_id"].is_unique
    assert cat["title"].notna().all() and cat["product_type"].notna().all()
    assert cat["brand"].notna().all() and (cat["price"] > 0).all()
    assert cat["available"].dtype == bool
    assert 0 < (~cat["available"]).mean() < 0.1
    for text in cat["aspects"]:
        assert isinstance(json.loads(text), dict)
    assert set(ev["event"]) == set(EVENT_TYPES)
    assert ev["timestamp"].dtype == np.int64
    assert ev["item_id"].isin(cat["item_id"]).all()
    assert ev["session_id"].notna().all()
    # order ids exactly on purchases; one order never spans sessions or users
    assert ev["order_id"].notna().eq(ev["event"] == "purchase").all()
    orders = ev.dropna(subset=["order_id"]).groupby("order_id")
    assert (orders["session_id"].nunique() == 1).all()
    assert (orders["user_id"].nunique() == 1).all()


def test_event_count_close_to_target(data: SyntheticData) -> None:
    assert SMALL.n_events - 40 <= len(data.events) <= SMALL.n_events
    assert data.truth["n_events"] == len(data.events)


def test_defaults_derive_from_n_items() -> None:
    d = generate(SyntheticConfig(n_items=1000, seed=3))
    assert len(d.catalog) == 1000
    assert len(d.truth["user_preferences"]) == 333
    assert 9_900 <= len(d.events) <= 10_000


def test_timestamps_increase_per_user_within_span(data: SyntheticData) -> None:
    ev = data.events
    assert ev["timestamp"].is_monotonic_increasing
    by_user = ev.sort_values(["user_id", "timestamp"], kind="stable")
    same_user = by_user["user_id"].eq(by_user["user_id"].shift())
    assert (by_user["timestamp"].diff()[same_user] > 0).all()
    assert ev["timestamp"].min() >= SMALL.start_time
    assert ev["timestamp"].max() < SMALL.start_time + SMALL.days * 86_400
    assert ev["timestamp"].max() - ev["timestamp"].min() > 0.9 * SMALL.days * 86_400


def test_written_dir_validates_without_bad_rows(tmp_path) -> None:
    config = SyntheticConfig(n_items=500, n_events=4000, seed=2)
    out = write_synthetic(config, tmp_path / "ds")
    assert {p.name for p in out.iterdir()} >= {"catalog.parquet", "events.parquet", "truth.json"}
    cat, ev, report = read_validated(out)
    assert report.n_bad == 0 and not report.errors
    assert len(cat) == 500
    truth = json.loads((out / "truth.json").read_text())
    assert truth["n_events"] == len(ev)
    expected = generate(config)
    pd.testing.assert_frame_equal(
        ev.reset_index(drop=True),
        expected.events.astype(ev.dtypes.to_dict()),
        check_dtype=False,
    )


def test_write_refuses_to_overwrite_without_force(tmp_path) -> None:
    config = SyntheticConfig(n_items=200, n_events=1000, seed=0)
    out = write_synthetic(config, tmp_path / "ds")
    before = (out / "events.parquet").read_bytes()
    with pytest.raises(DataError, match="ds"):
        write_synthetic(SyntheticConfig(n_items=200, n_events=1000, seed=1), out)
    assert (out / "events.parquet").read_bytes() == before
    write_synthetic(SyntheticConfig(n_items=200, n_events=1000, seed=1), out, force=True)
    assert (out / "events.parquet").read_bytes() != before


def test_write_into_existing_empty_dir(tmp_path) -> None:
    write_synthetic(SyntheticConfig(n_items=200, n_events=500), tmp_path)
    assert (tmp_path / "truth.json").exists()


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_data() -> None:
    a = generate(SyntheticConfig(n_items=600, n_events=5000, seed=5))
    b = generate(SyntheticConfig(n_items=600, n_events=5000, seed=5))
    pd.testing.assert_frame_equal(a.catalog, b.catalog)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)


def test_different_seeds_differ() -> None:
    a = generate(SyntheticConfig(n_items=600, n_events=5000, seed=5))
    b = generate(SyntheticConfig(n_items=600, n_events=5000, seed=6))
    assert not a.catalog.equals(b.catalog)
    assert not a.events.equals(b.events)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_items": 10}, "n_items"),
        ({"n_items": 1000.5}, "n_items"),
        ({"n_users": 0}, "n_users"),
        ({"n_events": -1}, "n_events"),
        ({"cold_start_share": 0.95}, "cold_start_share"),
        ({"brand_affinity": 1.5}, "brand_affinity"),
        ({"purchase_session_share": 0.8, "view_session_share": 0.5}, "view_session_share"),
        ({"max_complements": 0}, "max_complements"),
        ({"type_copies": 0}, "type_copies"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_config_names_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=f"'{name}'"):
        SyntheticConfig(**kwargs)


# --------------------------------------------------------------------------- planted truth


def test_truth_is_json_and_consistent(data: SyntheticData) -> None:
    truth = json.loads(json.dumps(data.truth))
    cat = data.catalog.set_index("item_id")
    types = set(cat["product_type"])
    assert len(types) >= 30
    assert set(truth["complementary_types"]) == types
    assert set(truth["type_category"]) == types
    assert sorted(t for ts in truth["categories"].values() for t in ts) == sorted(types)
    for t, c in truth["type_category"].items():
        assert t in truth["categories"][c]
        assert (cat.loc[cat["product_type"] == t, "category_id"] == c).all()
        paths = cat.loc[cat["product_type"] == t, "category_path"]
        assert (paths == truth["category_paths"][c]).all()
    # several categories (and types) per top-level department
    departments = pd.Series(truth["category_paths"]).str.split(" > ").str[0]
    assert (departments.value_counts() >= 2).all()
    groups = truth["substitute_groups"]
    assert sorted(i for items in groups.values() for i in items) == sorted(cat.index)
    for t, items in groups.items():
        assert (cat.loc[items, "product_type"] == t).all()
    assert set(truth["user_preferences"]) == set(data.events["user_id"]) | set(
        truth["user_preferences"]
    )
    for prefs in truth["user_preferences"].values():
        assert prefs["brand"] in truth["brands"] and prefs["color"] in truth["colors"]
        assert 1 <= len(prefs["favorites"]) <= 3
        assert set(prefs["interests"]) <= set(truth["anchor_types"])


def test_transition_graph_is_asymmetric(data: SyntheticData) -> None:
    graph = data.truth["complementary_types"]
    anchors = set(data.truth["anchor_types"])
    assert len(anchors) >= 8
    for t, comps in graph.items():
        if t in anchors:
            assert 2 <= len(comps) <= 4
        else:
            assert comps == []
        for c in comps:
            assert t not in graph[c]
    assert "sd_card" in graph["camera"] and "camera" not in graph["sd_card"]


def test_co_purchases_are_complementary_far_above_chance(
    data: SyntheticData, purchases: pd.DataFrame
) -> None:
    graph = data.truth["complementary_types"]
    anchors = set(data.truth["anchor_types"])
    p = purchases[["order_id", "item_id", "product_type"]]
    a = p[p["product_type"].isin(anchors)]
    pairs = a.merge(p, on="order_id", suffixes=("_a", "_b"))
    pairs = pairs[pairs["item_id_a"] != pairs["item_id_b"]]
    assert len(pairs) > 1000

    def complement_rate(frame: pd.DataFrame) -> float:
        pairs = zip(frame["product_type_a"], frame["product_type_b"], strict=True)
        return float(np.mean([tb in graph[ta] for ta, tb in pairs]))

    observed = complement_rate(pairs)
    shuffled = pairs.copy()
    rng = np.random.default_rng(0)
    # chance: the same anchors paired with types drawn from all purchases
    shuffled["product_type_b"] = rng.choice(p["product_type"].to_numpy(), size=len(pairs))
    chance = complement_rate(shuffled)
    assert observed > 0.85
    assert observed > 5 * chance


def test_no_order_pairs_an_anchor_with_an_incompatible_accessory(
    data: SyntheticData, purchases: pd.DataFrame
) -> None:
    compat_types = data.truth["compatibility_types"]  # accessory type -> anchor type
    anchors = purchases[purchases["model"].notna()][["order_id", "product_type", "model"]]
    acc = purchases[purchases["product_type"].isin(compat_types)]
    acc = acc.assign(anchor_type=acc["product_type"].map(compat_types))
    pairs = anchors.merge(
        acc,
        left_on=["order_id", "product_type"],
        right_on=["order_id", "anchor_type"],
        suffixes=("", "_acc"),
    )
    assert len(pairs) > 200
    assert (pairs["model"] == pairs["compatible_model"]).all()
    # the truth lists the pairs too
    listed = {tuple(x) for x in data.truth["compatible_pairs"]}
    a_items = purchases[purchases["model"].notna()][["order_id", "item_id"]]
    got = a_items.merge(acc[["order_id", "item_id"]], on="order_id", suffixes=("_a", "_c"))
    assert all((x, y) in listed for x, y in zip(got["item_id_a"], got["item_id_c"], strict=True))


def test_compatible_models_cover_every_anchor_model(data: SyntheticData) -> None:
    models = data.truth["compatible_models"]
    cat = data.catalog.set_index("item_id")
    aspects = cat["aspects"].map(json.loads)
    anchor_models = {a["model"] for a in aspects if "model" in a}
    assert set(models) == anchor_models
    for m, entry in list(models.items())[:50]:
        assert all(aspects[i]["model"] == m for i in entry["anchor_items"])
        assert all(aspects[i]["compatible_model"] == m for i in entry["accessory_items"])
    n_pairs = sum(len(e["anchor_items"]) * len(e["accessory_items"]) for e in models.values())
    assert len(data.truth["compatible_pairs"]) == n_pairs


def test_cold_start_items_have_no_events(data: SyntheticData) -> None:
    cold = set(data.truth["cold_start_items"])
    assert len(cold) == round(SMALL.cold_start_share * SMALL.n_items)
    assert cold <= set(data.catalog["item_id"])
    assert not cold & set(data.events["item_id"])
    # every type keeps warm items
    warm_types = data.catalog[~data.catalog["item_id"].isin(cold)]["product_type"].nunique()
    assert warm_types == data.catalog["product_type"].nunique()


def test_purchases_lean_to_planted_brand_and_colour(
    data: SyntheticData, purchases: pd.DataFrame
) -> None:
    same_brand = (purchases["brand"] == purchases["user_brand"]).mean()
    base_brand = purchases["user_brand"].map(data.catalog["brand"].value_counts(normalize=True))
    assert same_brand > 0.45
    assert same_brand > 3 * base_brand.mean()
    colour = purchases["aspects"].map(lambda s: json.loads(s)["color"])
    assert (colour == purchases["user_color"]).mean() > 0.3


def test_favourites_are_bought_repeatedly(data: SyntheticData, purchases: pd.DataFrame) -> None:
    prefs = data.truth["user_preferences"]
    fav_pairs = {(u, i) for u, p in prefs.items() for i in p["favorites"]}
    counts = purchases.groupby(["user_id", "item_id"]).size()
    fav_counts = counts[[k in fav_pairs for k in counts.index]]
    other = counts[[k not in fav_pairs for k in counts.index]]
    assert len(fav_counts) > 100
    assert fav_counts.mean() > 1.5 * other.mean()
    assert (fav_counts >= 2).mean() > 0.3


def test_sessions_view_substitutes_then_buy_one(data: SyntheticData) -> None:
    ev = data.events.merge(data.catalog[["item_id", "product_type"]], on="item_id")
    views = ev[ev["event"] == "view"]
    # co-view: most view pairs within a session share the product type
    type_counts = views.groupby(["session_id", "product_type"]).size()
    per_session = type_counts.groupby(level=0).max() / type_counts.groupby(level=0).sum()
    assert per_session.mean() > 0.8
    # purchase after view: anchors bought were viewed earlier in the session
    anchors = set(data.truth["anchor_types"])
    buys = ev[(ev["event"] == "purchase") & ev["product_type"].isin(anchors)]
    first_view = views.groupby(["session_id", "item_id"])["timestamp"].min()
    key = list(zip(buys["session_id"], buys["item_id"], strict=True))
    seen = first_view.reindex(key)
    assert seen.notna().all()
    assert (seen.to_numpy() < buys["timestamp"].to_numpy()).all()
    # view-only sessions exist, and add_to_cart precedes its purchase
    has_purchase = (ev["event"] == "purchase").groupby(ev["session_id"]).any()
    assert 0.2 < (~has_purchase).mean() < 0.6
    carts = ev[ev["event"] == "add_to_cart"].set_index(["session_id", "item_id"])["timestamp"]
    bought = ev[ev["event"] == "purchase"].groupby(["session_id", "item_id"])["timestamp"].max()
    first_cart = carts.groupby(level=[0, 1]).min()
    assert (first_cart.to_numpy() < bought.reindex(first_cart.index).to_numpy()).all()


def test_popularity_is_skewed_within_type(data: SyntheticData) -> None:
    ev = data.events.merge(data.catalog[["item_id", "product_type"]], on="item_id")
    counts = ev.groupby(["product_type", "item_id"]).size()
    top_share = counts.groupby(level=0).apply(
        lambda s: s.nlargest(max(1, len(s) // 10)).sum() / s.sum()
    )
    assert top_share.median() > 0.3  # top 10% of a type's items get well over 10% of events


def test_products_group_variants(data: SyntheticData) -> None:
    cat = data.catalog
    grouped = cat.dropna(subset=["product_id"]).groupby("product_id")
    assert len(grouped) > 50
    assert (grouped.size() >= 2).all()
    assert (grouped["product_type"].nunique() == 1).all()
    assert (grouped["brand"].nunique() == 1).all()
    assert (grouped["price"].nunique() == 1).all()
    assert cat["product_id"].isna().any()
    anchors = cat["product_type"].isin(data.truth["anchor_types"])
    assert cat.loc[anchors, "price"].median() > 5 * cat.loc[~anchors, "price"].median()
    # titles carry brand, model and colour words
    row = cat[anchors].iloc[0]
    aspects = json.loads(row["aspects"])
    assert row["brand"] in row["title"] and aspects["model"] in row["title"]
    assert aspects["color"] in row["title"].lower()


def test_type_copies_scale_the_vocabulary() -> None:
    d = generate(SyntheticConfig(n_items=2000, n_events=8000, type_copies=3, seed=1))
    graph = d.truth["complementary_types"]
    assert "camera_2" in graph and graph["camera_2"] == [f"{t}_2" for t in graph["camera"]]
    assert d.catalog["product_type"].nunique() == 3 * 46
    assert len(d.truth["categories"]) == 3 * 22


def test_large_pair_lists_fall_back_to_models() -> None:
    d = generate(SyntheticConfig(n_items=1000, n_events=2000, max_truth_pairs=10))
    assert d.truth["compatible_pairs"] is None
    assert d.truth["compatible_models"]


@pytest.mark.slow
def test_100k_items_1m_events_written(tmp_path) -> None:
    # its speed (under a minute) is bench/generate.py's to measure, not a unit test's
    write_synthetic(SyntheticConfig(n_items=100_000, n_events=1_000_000), tmp_path / "big")
    ds = load_dataset(tmp_path / "big")
    assert ds.n_items == 100_000
    assert len(ds.events.item) >= 990_000
