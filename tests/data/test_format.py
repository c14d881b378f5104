"""Validation of the canonical dataset format: bad rows are reported with file and row."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recset.data import load_dataset, read_validated, write_dataset
from recset.data._format import _parse_timestamps, default_time_range
from recset.errors import ConfigError, DataError

CATALOG = pd.DataFrame(
    {
        "item_id": ["i1", "i2", "i3"],
        "title": ["Camera X", "SD card", "Bag"],
        "category_id": ["c1", "c2", "c2"],
        "category_path": ["Electronics > Cameras", "Electronics > Memory", "Electronics > Memory"],
        "price": [300.0, 10.0, None],
        "aspects": ['{"model": "X"}', '{"compatible_model": "X"}', None],
    }
)
EVENTS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u2"],
        "item_id": ["i1", "i2", "i1", "i3"],
        "event": ["purchase", "purchase", "view", "purchase"],
        "timestamp": [100, 101, 200, 300],
        "order_id": ["o1", "o1", None, "o2"],
    }
)


def _write_csv(tmp: Path, catalog: pd.DataFrame, events: pd.DataFrame) -> Path:
    d = tmp / "ds"
    d.mkdir(exist_ok=True)
    catalog.to_csv(d / "catalog.csv", index=False)
    events.to_csv(d / "events.csv", index=False)
    return d


def test_parquet_round_trip(tmp_path: Path) -> None:
    write_dataset(CATALOG, EVENTS, tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert ds.n_items == 3 and ds.n_users == 2 and len(ds.events) == 4
    assert ds.catalog.aspect(ds.items.index_one("i1")) == {"model": "X"}
    assert ds.catalog.available.all()
    assert ds.load_report is not None and ds.load_report.n_bad == 0


def test_csv_and_iso_timestamps(tmp_path: Path) -> None:
    ev = EVENTS.assign(timestamp=["1970-01-01T00:01:40Z", "101", "1970-01-01 00:03:20", 300])
    ds = load_dataset(_write_csv(tmp_path, CATALOG, ev))
    assert sorted(ds.events.timestamp.tolist()) == [100, 101, 200, 300]


BAD_ROWS = {
    "missing user": {"user_id": None},
    "missing item": {"item_id": ""},
    "unknown event": {"event": "click"},
    "bad timestamp": {"timestamp": "yesterday"},
    "unknown item": {"item_id": "nope"},
}


@settings(
    max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(BAD_ROWS)), st.integers(0, 3)), min_size=1, max_size=6
    )
)
def test_bad_rows_reported_with_row_numbers(tmp_path: Path, bad: list[tuple[str, int]]) -> None:
    rows = EVENTS.astype(object).to_dict("records")
    expected_rows = set()
    for kind, base in bad:
        rows.append({**rows[base], **BAD_ROWS[kind]})
        expected_rows.add(len(rows))  # 1-based data row of the appended row
    ev = pd.DataFrame(rows)
    d = _write_csv(tmp_path, CATALOG, ev)
    with pytest.raises(DataError) as info:
        read_validated(d)
    msg = str(info.value)
    assert f"{len(expected_rows)} bad rows" in msg
    assert "events.csv: row" in msg and "--on-bad-rows skip" in msg
    q = tmp_path / "q"
    cat, events, report = read_validated(d, on_bad_rows="skip", quarantine_dir=q)
    assert len(events) == len(EVENTS)
    assert {e.row for e in report.errors} == expected_rows
    bad_file = pd.read_csv(q / "events.bad-rows.csv")
    assert set(bad_file["row"]) == expected_rows
    assert bad_file["error"].notna().all()
    assert report.rows_read["events.csv"] - report.rows_kept["events.csv"] == len(expected_rows)


def test_catalog_errors(tmp_path: Path) -> None:
    cat = pd.concat([CATALOG, CATALOG.iloc[[0]]], ignore_index=True)
    cat["price"] = cat["price"].astype(object)
    cat.loc[3, "aspects"] = "not json"
    cat.loc[1, "price"] = "cheap"
    with pytest.raises(DataError) as info:
        read_validated(_write_csv(tmp_path, cat, EVENTS))
    msg = str(info.value)
    assert "catalog.csv: row 4: duplicate item_id" in msg
    assert "catalog.csv: row 4: aspects is not a JSON object" in msg
    assert "catalog.csv: row 2: price is not a number" in msg


def test_skip_needs_quarantine_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="quarantine_dir"):
        read_validated(tmp_path, on_bad_rows="skip")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a dataset directory"):
        read_validated(tmp_path / "absent")
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="no catalog.parquet or catalog.csv"):
        read_validated(tmp_path / "d")
    (tmp_path / "d" / "catalog.csv").write_text("item_id\n")
    with pytest.raises(DataError, match="holds no rows"):
        read_validated(tmp_path / "d")
    (tmp_path / "d" / "catalog.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        read_validated(tmp_path / "d")


def test_missing_required_column(tmp_path: Path) -> None:
    d = _write_csv(tmp_path, CATALOG, EVENTS.drop(columns=["event"]))
    with pytest.raises(DataError, match=r"missing required columns \['event'\]"):
        read_validated(d)


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(CATALOG, EVENTS, tmp_path / "ds")
    before = (tmp_path / "ds" / "events.parquet").read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError):
        write_dataset(CATALOG, EVENTS.iloc[:1], tmp_path / "ds")
    assert (tmp_path / "ds" / "events.parquet").read_bytes() == before
    assert not [p for p in (tmp_path / "ds").iterdir() if p.name.endswith(".tmp")]


# --- issue 12: timestamps in a plausible range, ids read as text ---------------------------

NOW = default_time_range()[1]  # the default upper bound moves with the clock: keep margins


@settings(max_examples=200, deadline=None)
@given(st.integers(0, NOW), st.sampled_from(["int", "str", "float", "iso", "datetime"]))
def test_plausible_timestamps_parse_exactly(t: int, form: str) -> None:
    value: object = {
        "int": t,
        "str": f" {t} ",
        "float": float(t),
        "iso": pd.Timestamp(t, unit="s", tz="UTC").isoformat(),
        "datetime": pd.Timestamp(t, unit="s"),
    }[form]
    col = pd.Series([value], dtype=object if form in ("str", "iso") else None)
    assert _parse_timestamps(col).tolist() == [float(t)]


@settings(
    max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.integers(100_000_000, NOW),
    st.sampled_from([("milliseconds", 10**3), ("microseconds", 10**6), ("nanoseconds", 10**9)]),
    st.integers(0, 3),
)
def test_scaled_timestamps_are_refused_with_their_unit(
    tmp_path: Path, t: int, unit: tuple[str, int], row: int
) -> None:
    name, scale = unit
    ev = EVENTS.astype({"timestamp": object})
    ev.loc[row, "timestamp"] = str(t * scale)
    with pytest.raises(DataError) as info:
        read_validated(_write_csv(tmp_path, CATALOG, ev))
    assert f"events.csv: row {row + 1}: timestamp" in str(info.value)
    assert f"looks like {name}" in str(info.value)


@settings(
    max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.one_of(
        st.integers(NOW + 3600, 2**63 - 1),
        st.integers(-(2**63), -1),
        st.floats(allow_nan=False).filter(lambda x: abs(x) > NOW + 3600),
    )
)
def test_implausible_timestamps_are_refused_never_wrapped(tmp_path: Path, t: float) -> None:
    ev = EVENTS.astype({"timestamp": object})
    ev.loc[2, "timestamp"] = repr(t) if isinstance(t, float) else str(t)
    d = _write_csv(tmp_path, CATALOG, ev)
    with pytest.raises(DataError, match=r"events.csv: row 3: .*(plausible range|unparseable)"):
        read_validated(d)
    cat, events, _ = read_validated(d, on_bad_rows="skip", quarantine_dir=tmp_path / "q")
    assert events["timestamp"].between(0, NOW).all() and len(events) == len(EVENTS) - 1


def test_time_range_is_configurable(tmp_path: Path) -> None:
    d = _write_csv(tmp_path, CATALOG, EVENTS)
    with pytest.raises(DataError, match="row 1: timestamp '100' is outside"):
        read_validated(d, time_range=(101, None))
    _, events, _ = read_validated(d, time_range=(None, 300))
    assert len(events) == len(EVENTS)


@settings(
    max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(st.lists(st.integers(-(2**53), 2**53), min_size=2, max_size=8, unique=True))
def test_integer_ids_with_a_null_stay_integers(tmp_path: Path, ids: list[int]) -> None:
    d = tmp_path / "ds"
    d.mkdir(exist_ok=True)
    pd.DataFrame({"item_id": ids}).to_parquet(d / "catalog.parquet")
    item = pd.Series([*ids, None], dtype="Int64")  # a null: pandas would read float64
    pd.DataFrame(
        {"user_id": [1] * len(item), "item_id": item, "event": "view", "timestamp": 5}
    ).to_parquet(d / "events.parquet")
    cat, events, report = read_validated(d, on_bad_rows="skip", quarantine_dir=tmp_path / "q")
    assert list(cat["item_id"]) == [str(i) for i in ids]
    assert list(events["item_id"]) == [str(i) for i in ids]
    assert [e.row for e in report.errors] == [len(ids) + 1]


def test_stale_quarantine_never_survives(tmp_path: Path) -> None:
    q = tmp_path / "q"
    bad = EVENTS.assign(event=["purchase", "click", "view", "purchase"])
    read_validated(_write_csv(tmp_path, CATALOG, bad), on_bad_rows="skip", quarantine_dir=q)
    assert (q / "events.bad-rows.csv").exists()
    read_validated(_write_csv(tmp_path, CATALOG, EVENTS), quarantine_dir=q)
    assert not (q / "events.bad-rows.csv").exists()


def test_reject_chars_names_the_row(tmp_path: Path) -> None:
    cat = CATALOG.assign(title=["ok", "bad\x00title", "ok"])
    d = tmp_path / "nul"
    write_dataset(cat, EVENTS, d)
    with pytest.raises(DataError, match=r"catalog.parquet: row 2: title .*U\+0000"):
        read_validated(d, reject_chars="\x00")
    assert len(read_validated(d)[0]) == 3  # SQLite holds a NUL: no check without reject_chars


def test_price_must_be_finite_and_not_negative(tmp_path: Path) -> None:
    cat = CATALOG.assign(price=[float("inf"), -1.0, 0.0])
    write_dataset(cat, EVENTS, tmp_path / "p")
    with pytest.raises(DataError) as info:
        read_validated(tmp_path / "p")
    assert "row 1: price inf is not finite" in str(info.value)
    assert "row 2: price -1.0 is negative" in str(info.value)


# -- timestamps on disk: microsecond Parquet timestamps, older files still read -----------


def _ts_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    cat = pd.DataFrame({"item_id": ["a", "b", "c"]})
    ev = pd.DataFrame(
        {
            "user_id": ["u", "u", "v"],
            "item_id": ["a", "b", "c"],
            "event": ["purchase", "view", "purchase"],
            "timestamp": [1_600_000_000, 1_600_000_005, 1_650_000_007],
        }
    )
    return cat, ev


def test_write_dataset_stores_utc_microsecond_timestamps(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    cat, ev = _ts_frames()
    write_dataset(cat, ev, tmp_path)
    column = pq.ParquetFile(tmp_path / "events.parquet").schema.column(3)
    assert column.name == "timestamp"
    assert column.converted_type == "TIMESTAMP_MICROS"
    assert "isAdjustedToUTC=true" in str(column.logical_type)
    _, events, _ = read_validated(tmp_path)
    assert events["timestamp"].dtype == np.int64
    assert events["timestamp"].tolist() == ev["timestamp"].tolist()


@pytest.mark.parametrize("old", ["int_seconds", "pandas_ns", "ns_utc"])
def test_older_timestamp_files_still_read(tmp_path: Path, old: str) -> None:
    """Files written before microsecond timestamps (integer seconds) and pandas' default
    nanosecond timestamps (naive or UTC) read to the same epoch seconds."""
    import pyarrow.parquet as pq

    cat, ev = _ts_frames()
    write_dataset(cat, ev, tmp_path)
    secs = ev["timestamp"]
    if old == "int_seconds":
        written = ev
    else:
        ns = pd.to_datetime(secs, unit="s").astype("datetime64[ns]")
        written = ev.assign(timestamp=ns.dt.tz_localize("UTC") if old == "ns_utc" else ns)
    written.to_parquet(tmp_path / "events.parquet", index=False)
    unit = pq.read_schema(tmp_path / "events.parquet").field("timestamp").type
    assert str(unit) == {"int_seconds": "int64", "pandas_ns": "timestamp[ns]"}.get(
        old, "timestamp[ns, tz=UTC]"
    )
    _, events, _ = read_validated(tmp_path)
    assert events["timestamp"].tolist() == secs.tolist()


def test_timestamp_beyond_microsecond_range_is_refused(tmp_path: Path) -> None:
    cat, ev = _ts_frames()
    ev.loc[1, "timestamp"] = 2**61
    with pytest.raises(DataError, match="microsecond Parquet timestamp"):
        write_dataset(cat, ev, tmp_path)
    assert not (tmp_path / "events.parquet").exists()
