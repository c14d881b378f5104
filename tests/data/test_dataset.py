"""Dataset: dense ids, sparse views, baskets, sessions and the time split."""

import numpy as np
import pandas as pd
import pytest

from recset.data import Dataset, catalog_frame
from recset.errors import ConfigError

CATALOG = pd.DataFrame(
    {
        "item_id": ["a", "b", "c", "d"],
        "category_id": ["x", "x", "y", None],
        "category_path": ["X", "X", "Y", None],
        "product_type": ["cam", "card", "bag", None],
        "available": [True, True, False, True],
    }
)
EVENTS = pd.DataFrame(
    {
        "user_id": ["u", "u", "u", "v", "v", "v", "u"],
        "item_id": ["a", "b", "a", "b", "c", "b", "d"],
        "event": ["view", "view", "purchase", "purchase", "purchase", "purchase", "purchase"],
        "timestamp": [1, 2, 3, 10, 11, 12, 20],
        "session_id": ["s1", "s1", "s1", "s2", "s2", "s2", None],
        "order_id": [None, None, "o1", "o2", "o2", "o2", "o3"],
    }
)


@pytest.fixture
def ds() -> Dataset:
    # shuffled input: the dataset sorts by time itself
    return Dataset.from_frames(CATALOG, EVENTS.sample(frac=1.0, random_state=3), name="t")


def test_ids_and_catalog(ds: Dataset) -> None:
    assert ds.n_items == 4 and ds.n_users == 2 and ds.n_categories == 2
    assert ds.items.ids(np.arange(4)).tolist() == ["a", "b", "c", "d"]
    assert ds.catalog.category.tolist() == [0, 0, 1, -1]
    assert ds.catalog.available.tolist() == [True, True, False, True]
    assert list(np.diff(ds.events.timestamp) >= 0) == [True] * 6


def test_interactions(ds: Dataset) -> None:
    m = ds.interactions("purchase")
    v = ds.users.index_one("v")
    b = ds.items.index_one("b")
    assert m.shape == (2, 4) and m.dtype == np.float32
    assert m[v, b] == 2.0
    assert ds.interactions("purchase", binary=True)[v, b] == 1.0
    decayed = ds.interactions("purchase", half_life_days=0.001)
    assert decayed[v, b] < 2.0
    assert ds.interactions("view").nnz == 2
    with pytest.raises(ConfigError, match="'event' parameter"):
        ds.interactions("click")  # type: ignore[arg-type]


def test_baskets_and_sessions(ds: Dataset) -> None:
    b = ds.baskets
    assert len(b) == 3
    sets = {
        ds.orders_map.id_of(int(k)): ds.items.ids(b.items_of(g)).tolist()
        for g, k in enumerate(b.key)
    }
    assert sets == {"o1": ["a"], "o2": ["b", "c"], "o3": ["d"]}  # distinct, in time order
    s = ds.sessions
    sess = {
        ds.sessions_map.id_of(int(k)): ds.items.ids(s.items_of(g)).tolist()
        for g, k in enumerate(s.key)
    }
    assert sess == {"s1": ["a", "b"], "s2": ["b", "c"]}
    assert ds.session_events("view").sizes().tolist() == [2]
    assert b.matrix(ds.n_items).sum() == 4


def test_time_split_keeps_ids_and_leaks_nothing(ds: Dataset) -> None:
    train, test = ds.split_time(11)
    assert train.events.timestamp.max() < 11 <= test.events.timestamp.min()
    assert train.items == ds.items and test.users == ds.users
    assert len(train.events) + len(test.events) == len(ds.events)
    assert ds.order_time_quantile(0.5) == 10
    with pytest.raises(ConfigError, match="'q' parameter"):
        ds.order_time_quantile(1.0)


def test_catalog_frame_round_trip(ds: Dataset) -> None:
    frame = catalog_frame(ds)
    again = Dataset.from_frames(frame, EVENTS)
    assert again.items == ds.items
    assert np.array_equal(again.catalog.category, ds.catalog.category)
    assert not frame.loc[2, "available"]


@pytest.mark.parametrize("shuffle", [False, True])
def test_event_ids_coded_as_after_a_stable_time_sort(shuffle: bool) -> None:
    # the events are coded without sorting the frame: ids must still be numbered by their
    # first appearance in time order (ties kept in input order), nulls -1, as an IdMap built
    # from the time-sorted columns numbers them
    from recset.data import IdMap

    rng = np.random.default_rng(7)
    n = 400
    items = [f"i{k}" for k in range(30)]
    frame = pd.DataFrame(
        {
            "user_id": [f"u{k}" for k in rng.integers(0, 40, n)],
            "item_id": [items[k] for k in rng.integers(0, 30, n)],
            "event": rng.choice(["view", "purchase"], n),
            "timestamp": np.sort(rng.integers(0, 50, n)),  # many ties
            "session_id": [None if k < 3 else f"s{k}" for k in rng.integers(0, 60, n)],
            "order_id": [None if k < 30 else f"o{k}" for k in rng.integers(0, 90, n)],
        }
    )
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    ds = Dataset.from_frames(pd.DataFrame({"item_id": items}), frame)
    ref = frame.sort_values("timestamp", kind="stable")
    for col, idmap, codes in [
        ("user_id", ds.users, ds.events.user),
        ("session_id", ds.sessions_map, ds.events.session),
        ("order_id", ds.orders_map, ds.events.order),
    ]:
        expected = IdMap.from_values(ref[col])
        assert idmap == expected
        np.testing.assert_array_equal(codes, expected.index(ref[col]))
    assert (ds.events.session < 0).sum() == ref["session_id"].isna().sum() > 0
    np.testing.assert_array_equal(ds.items.ids(ds.events.item), ref["item_id"].to_numpy())
    np.testing.assert_array_equal(ds.events.timestamp, ref["timestamp"].to_numpy())
    kinds = np.array(["view", "add_to_cart", "purchase"])[ds.events.event]
    np.testing.assert_array_equal(kinds, ref["event"].to_numpy())


def test_events_naming_unknown_items_are_refused() -> None:
    from recset.errors import DataError

    ev = EVENTS.assign(item_id=["a", "zz", "a", "b", "c", "b", "yy"])
    with pytest.raises(DataError, match=r"2 events name items absent.*'zz', 'yy'"):
        Dataset.from_frames(CATALOG, ev)


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_id_column_with_only_nulls_codes_every_row_minus_one(shuffle: bool) -> None:
    # e.g. a prefix split whose events carry no session at all
    events = EVENTS.assign(session_id=pd.Series([None] * len(EVENTS), dtype="string"))
    if shuffle:
        events = events.sample(frac=1.0, random_state=5)
    ds = Dataset.from_frames(CATALOG, events, name="t")
    assert (ds.events.session == -1).all()
    assert len(ds.sessions_map) == 0
    assert (ds.events.order >= 0).sum() == EVENTS["order_id"].notna().sum()
