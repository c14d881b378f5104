"""load_dataset codes the event log column by column inside Arrow: the same Dataset as a
straightforward load through Python strings, in compact dtypes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recset.data import EVENT_TYPES, Dataset, IdMap, load_dataset
from recset.data.synthetic import SyntheticConfig, write_synthetic


def _reference(directory: Path) -> dict[str, object]:
    """The dataset by the plain route: every id a Python string, the frame sorted by time
    (stable), id maps built from the sorted columns, codes looked up one column at a time."""
    cat = pq.read_table(directory / "catalog.parquet").to_pandas(types_mapper=None)
    cat = cat.astype({c: object for c in cat.columns if c not in ("price", "available")})
    cat = cat.where(cat.notna(), None)
    ev = pq.read_table(directory / "events.parquet").to_pandas()
    ts = ev["timestamp"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ev["timestamp"] = ts.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[s]")
        ev["timestamp"] = ev["timestamp"].astype(np.int64)
    ev = ev.sort_values("timestamp", kind="stable").reset_index(drop=True)
    ev = ev.astype({c: object for c in ("user_id", "item_id", "event", "session_id", "order_id")})
    ev = ev.where(ev.notna(), None)
    items = IdMap(cat["item_id"].tolist())
    maps = {col: IdMap.from_values(ev[col]) for col in ("user_id", "session_id", "order_id")}
    return {
        "items": items,
        "users": maps["user_id"],
        "sessions": maps["session_id"],
        "orders": maps["order_id"],
        "user": maps["user_id"].index(ev["user_id"]),
        "item": items.index(ev["item_id"]),
        "event": np.array([EVENT_TYPES.index(e) for e in ev["event"]], dtype=np.int8),
        "timestamp": ev["timestamp"].to_numpy(dtype=np.int64),
        "session": maps["session_id"].index(ev["session_id"]),
        "order": maps["order_id"].index(ev["order_id"]),
        "categories": IdMap.from_values(cat["category_id"]),
        "title": cat["title"].to_numpy(dtype=object),
        "aspects": cat["aspects"].to_numpy(dtype=object),
    }


def _assert_like_reference(ds: Dataset, ref: dict[str, object]) -> None:
    assert ds.items == ref["items"]
    assert ds.users == ref["users"]
    assert ds.sessions_map == ref["sessions"]
    assert ds.orders_map == ref["orders"]
    assert ds.categories == ref["categories"]
    for name in ("user", "item", "event", "timestamp", "session", "order"):
        np.testing.assert_array_equal(getattr(ds.events, name), ref[name], err_msg=name)
    np.testing.assert_array_equal(
        ds.catalog.category, ref["categories"].index(ds.categories.ids(ds.catalog.category))
    )
    assert ds.catalog.title.tolist() == ref["title"].tolist()
    assert ds.catalog.aspects.tolist() == ref["aspects"].tolist()
    # compact dtypes: 25 bytes an event, no object column
    ev = ds.events
    dtypes = {n: getattr(ev, n).dtype for n in ("user", "item", "session", "order")}
    assert set(dtypes.values()) == {np.dtype(np.int32)}, dtypes
    assert ev.event.dtype == np.int8 and ev.timestamp.dtype == np.int64
    per_event = sum(getattr(ev, n).nbytes for n in (*dtypes, "event", "timestamp")) / len(ev)
    assert per_event == 25.0
    for idmap in (ds.users, ds.items, ds.sessions_map, ds.orders_map):
        assert all(type(v) is str for v in idmap.values)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    write_synthetic(SyntheticConfig(n_items=400, n_events=6000, seed=4), out)
    return out


def test_load_matches_a_plain_load_of_a_generated_dataset(generated: Path) -> None:
    ds = load_dataset(generated)
    assert len(ds.events) > 5000 and (ds.events.session < 0).sum() == 0
    assert (ds.events.order < 0).any() and (ds.events.order >= 0).any()
    _assert_like_reference(ds, _reference(generated))


def test_load_matches_when_events_come_shuffled_in_many_row_groups(
    generated: Path, tmp_path: Path
) -> None:
    # many Arrow chunks (one dictionary must span them) and an unsorted log (codes renumbered
    # by first appearance in time order); some null sessions
    table = pq.read_table(generated / "events.parquet")
    rng = np.random.default_rng(0)
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    session = table.column("session_id").to_pylist()
    for i in rng.choice(len(session), 200, replace=False):
        session[i] = None
    table = table.set_column(
        table.column_names.index("session_id"), "session_id", pa.array(session, pa.string())
    )
    (tmp_path / "catalog.parquet").write_bytes((generated / "catalog.parquet").read_bytes())
    pq.write_table(table, tmp_path / "events.parquet", row_group_size=700)
    assert pq.ParquetFile(tmp_path / "events.parquet").num_row_groups > 5
    ds = load_dataset(tmp_path)
    assert (ds.events.session < 0).sum() == 200
    _assert_like_reference(ds, _reference(tmp_path))
    # the same events as the sorted single-group file (tied events may change places)
    plain = load_dataset(generated)
    assert ds.items == plain.items

    def rows(d: Dataset) -> list[tuple[object, ...]]:
        e = d.events
        return sorted(
            zip(
                d.users.ids(e.user),
                d.items.ids(e.item),
                e.event.tolist(),
                e.timestamp.tolist(),
                d.orders_map.ids(e.order),
                strict=True,
            )
        )

    assert rows(ds) == rows(plain)


def test_from_frames_leaves_the_callers_frame_intact(generated: Path) -> None:
    # load_dataset hands its own frame over column by column; from_frames must not
    events = pd.read_parquet(generated / "events.parquet")
    catalog = pd.read_parquet(generated / "catalog.parquet")
    before = events.copy()
    ds = Dataset.from_frames(catalog, events)
    pd.testing.assert_frame_equal(events, before)
    assert len(ds.events) == len(events)
