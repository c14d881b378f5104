"""The storage layer, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recset.errors import ConfigError, DataError, RecsetError, StorageError
from recset.storage import (
    SCHEMA_VERSION,
    ArtifactRecord,
    Store,
    atomic_write_bytes,
    atomic_write_text,
)
from recset.storage import _store as store_module
from recset.storage._models import CATALOG_COLUMNS, tables

# The ``backend`` fixture is conftest.Backend (tests/ is not a package, so it is not imported).
Backend = Any

# ----------------------------------------------------------------------------- helpers


def _catalog() -> pd.DataFrame:
    # Deliberately not sorted by item_id: reading must return the written order.
    return pd.DataFrame(
        {
            "item_id": ["cam-1", "sd-9", "bag-2", "tripod-4"],
            "title": ["Camera", "SD card 64GB", None, "Tripod \u00e9l\u00e9gant"],
            "category_id": ["10", "11", "12", None],
            "category_path": ["Electronics/Cameras", "Electronics/Memory", None, None],
            "product_id": ["p1", None, "p3", "p4"],
            "product_type": ["camera", "memory_card", "bag", None],
            "brand": ["Acme", "Acme", None, "Stand"],
            "price": [499.99, 12.5, np.nan, 0.1],
            "available": [True, False, True, False],
            "aspects": ['{"mount": "EF"}', None, '{"colour": "black", "size": [1, 2]}', "{}"],
        }
    )


def _candidates(seed: str, n: int = 3) -> list[dict[str, object]]:
    return [
        {
            "item_id": f"{seed}-c{r}",
            "score": 1.0 / (r + 1),
            "sources": {"co_purchase": {"score": 0.5 / (r + 1), "rank": r}},
        }
        for r in range(n)
    ]


def _write_file(content: str) -> object:
    def write(directory: Path) -> None:
        (directory / "model.txt").write_text(content)

    return write


# ----------------------------------------------------------------------------- opening


def test_schema_version_is_recorded(backend: Backend) -> None:
    store = backend.open()
    meta = tables(store.table_prefix).meta
    with store.engine.connect() as conn:
        value = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version"))
        assert value.scalar_one() == str(SCHEMA_VERSION) == "3"
    # Reopening an existing store of the same version works and keeps the data.
    store.write_recall_lists("b", [("s", _candidates("s"))])
    again = backend.open(store.table_prefix, create=False)
    assert again.recall_list("s", "b") == _candidates("s")


def test_schema_version_mismatch_is_refused(backend: Backend) -> None:
    store = backend.open()
    meta = tables(store.table_prefix).meta
    with store.engine.begin() as conn:
        conn.execute(sa.update(meta).where(meta.c.key == "schema_version").values(value="99"))
    with pytest.raises(StorageError) as info:
        backend.open(store.table_prefix)
    message = str(info.value)
    assert store.url in message
    assert "schema version 99" in message
    assert f"expects schema version {SCHEMA_VERSION}" in message


def test_create_false_on_missing_store_errors(backend: Backend) -> None:
    with pytest.raises(StorageError, match="no recset store at"):
        backend.open(create=False)


def test_open_directory_creates_sqlite_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "store"
    with Store.open(target) as store:
        assert (target / "recset.sqlite").is_file()
        assert store.artifact_dir == (target / "artifacts").resolve()
        assert store.artifact_dir.is_dir()
        assert store.url == f"sqlite:///{(target / 'recset.sqlite').resolve()}"
    with Store.open(target, create=False) as store:
        assert store.list_artifacts() == []


def test_create_false_does_not_create_a_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no recset store at"):
        Store.open(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(StorageError, match="no recset store at"):
        Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", create=False)
    assert not (tmp_path / "db.sqlite").exists()


def test_sqlite_url_defaults_artifacts_beside_the_file(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'x.sqlite'}") as store:
        assert store.artifact_dir == (tmp_path / "artifacts").resolve()


def test_url_without_artifact_dir_still_needs_the_server() -> None:
    # (a reachable new database store keeps its files in the database: test_remote_artifacts)
    with pytest.raises(StorageError, match="Cannot open the recset store"):
        Store.open("postgresql://user:secret@127.0.0.1:5432/test")


def test_unreachable_database_error_masks_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg2://user:s3cr3t@127.0.0.1:1/test"  # nothing listens on port 1
    with pytest.raises(StorageError) as info:
        Store.open(url, artifact_dir=tmp_path)
    assert "s3cr3t" not in str(info.value)
    assert "user:***@127.0.0.1:1/test" in str(info.value)


def test_a_file_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StorageError, match="it is a file"):
        Store.open(tmp_path / "f")


@pytest.mark.parametrize("prefix", ["Recset_", "1x_", "a-b", "x" * 41])
def test_invalid_table_prefix(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigError, match="table_prefix"):
        Store.open(tmp_path, table_prefix=prefix)


def test_closed_store_refuses_calls(backend: Backend) -> None:
    store = backend.open()
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.recall_list("s", "b")
    with pytest.raises(StorageError, match="closed"):
        store.list_artifacts()


def test_context_manager_closes(backend: Backend) -> None:
    with backend.open() as store:
        store.record_backtest(
            dataset="d",
            config={},
            metrics={},
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
        )
    with pytest.raises(StorageError):
        store.list_backtests()


def test_errors_are_recset_errors() -> None:
    assert issubclass(StorageError, RecsetError)


# ----------------------------------------------------------------------------- catalog


def test_catalog_round_trip(store: Store) -> None:
    catalog = _catalog()
    assert store.replace_catalog(catalog) == 4
    back = store.read_catalog()
    assert list(back.columns) == list(CATALOG_COLUMNS)
    assert back["item_id"].tolist() == catalog["item_id"].tolist()  # written order kept
    # pandas 3 turns the None of a str column into NaN on the way in; null comes back None.
    assert back["title"].tolist() == ["Camera", "SD card 64GB", None, "Tripod \u00e9l\u00e9gant"]
    assert back["title"].iloc[2] is None
    assert back["category_id"].tolist() == ["10", "11", "12", None]
    assert back["price"].dtype == np.float64
    np.testing.assert_array_equal(back["price"].to_numpy(), catalog["price"].to_numpy())
    assert back["available"].dtype == bool
    assert back["available"].tolist() == [True, False, True, False]
    assert back["aspects"].tolist() == [
        '{"mount": "EF"}',
        None,
        '{"colour": "black", "size": [1, 2]}',
        "{}",
    ]
    assert json.loads(back["aspects"].iloc[2]) == {"colour": "black", "size": [1, 2]}

    item = store.catalog_item("bag-2")
    assert item == {
        "item_id": "bag-2",
        "title": None,
        "category_id": "12",
        "category_path": None,
        "product_id": "p3",
        "product_type": "bag",
        "brand": None,
        "price": None,
        "available": True,
        "aspects": '{"colour": "black", "size": [1, 2]}',
    }
    assert store.catalog_item("sd-9")["available"] is False  # type: ignore[index]
    assert store.catalog_item("nope") is None


# Strings that need escaping in PostgreSQL's COPY format (or are its NULL marker).
AWKWARD = [
    "tab\there",
    "line\nbreak\r\n",
    "back\\slash",
    "\\N",
    "",
    "\u00e9\u6f22\U0001f4f7",
    "'\";,",
]


def test_catalog_round_trips_awkward_strings(store: Store) -> None:
    n = len(AWKWARD)
    catalog = pd.DataFrame(
        {
            "item_id": [f"id {s}" for s in AWKWARD],
            "title": AWKWARD,
            "brand": [None] * n,
            "price": [float("inf"), -0.0, 1e-300, 1.7976931348623157e308, 0.1, 2.5, -3.0],
            "aspects": [json.dumps({"k": s}) for s in AWKWARD],
        }
    )
    store.replace_catalog(catalog)
    back = store.read_catalog()
    assert back["item_id"].tolist() == [f"id {s}" for s in AWKWARD]
    assert back["title"].tolist() == AWKWARD  # "" stays "", distinct from null
    assert back["brand"].tolist() == [None] * n
    assert back["price"].tolist() == catalog["price"].tolist()
    assert [json.loads(a)["k"] for a in back["aspects"]] == AWKWARD
    assert store.catalog_item("id \\N")["title"] == "\\N"  # type: ignore[index]


def test_catalog_defaults_and_conversions(store: Store) -> None:
    catalog = pd.DataFrame(
        {
            "item_id": [1, 2, 3],  # non-string ids are stored as text
            "available": [None, False, np.nan],
            "aspects": [{"a": np.int64(1)}, None, {"b": "x"}],
            "price": ["1.5", None, 3],
            "extra": ["ignored"] * 3,
        }
    )
    store.replace_catalog(catalog)
    back = store.read_catalog()
    assert back["item_id"].tolist() == ["1", "2", "3"]
    assert back["available"].tolist() == [True, False, True]  # null means available
    assert [None if a is None else json.loads(a) for a in back["aspects"]] == [
        {"a": 1},
        None,
        {"b": "x"},
    ]
    assert back["price"].iloc[0] == 1.5 and np.isnan(back["price"].iloc[1])
    assert back["brand"].tolist() == [None, None, None]
    assert "extra" not in back.columns


def test_empty_catalog(store: Store) -> None:
    store.replace_catalog(_catalog())
    assert store.replace_catalog(pd.DataFrame({"item_id": pd.Series([], dtype=object)})) == 0
    back = store.read_catalog()
    assert len(back) == 0 and list(back.columns) == list(CATALOG_COLUMNS)


def test_failing_catalog_replace_leaves_the_old_catalog(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.replace_catalog(_catalog())
    before = store.read_catalog()
    # Small chunks: the delete and the first inserts have run when the duplicate fails.
    monkeypatch.setattr(store_module, "_CATALOG_CHUNK", 2)
    bad = pd.DataFrame({"item_id": ["a", "b", "c", "d", "e", "a"], "title": list("abcdef")})
    with pytest.raises(StorageError, match=r"unchanged.*duplicate item_id values: \['a'\]"):
        store.replace_catalog(bad)
    pd.testing.assert_frame_equal(store.read_catalog(), before)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (pd.DataFrame({"title": ["x"]}), "no 'item_id' column"),
        (pd.DataFrame({"item_id": ["a", None]}), "have no item_id"),
        (pd.DataFrame({"item_id": ["a"], "price": ["cheap"]}), "'price' must be numeric"),
        (pd.DataFrame({"item_id": ["a"], "available": ["yes"]}), "available must be a bool"),
        (pd.DataFrame({"item_id": ["a"], "aspects": [3]}), "aspects must be JSON text"),
    ],
)
def test_invalid_catalog_is_rejected_before_writing(
    store: Store, bad: pd.DataFrame, match: str
) -> None:
    store.replace_catalog(_catalog())
    with pytest.raises(DataError, match=match):
        store.replace_catalog(bad)
    assert store.read_catalog()["item_id"].tolist() == _catalog()["item_id"].tolist()


# ----------------------------------------------------------------------------- recall lists


def test_recall_lists_write_read_replace(store: Store) -> None:
    lists = [(f"s{i}", _candidates(f"s{i}", n=i)) for i in range(7)]
    assert store.write_recall_lists("b1", iter(lists), chunk_size=3) == 7
    assert store.write_recall_lists("b2", [("s1", _candidates("other"))]) == 1
    assert store.recall_list("s3", "b1") == _candidates("s3", n=3)
    assert store.recall_list("s0", "b1") == []  # an empty list is not a missing one
    assert store.recall_list("s1", "b2") == _candidates("other")
    assert store.recall_list("missing", "b1") is None
    assert store.recall_list("s3", "no-such-build") is None
    assert list(store.recall_lists("b1")) == sorted(lists)

    # Rewriting a build replaces all of its seeds and leaves other builds alone.
    assert store.write_recall_lists("b1", [("s9", _candidates("s9"))]) == 1
    assert store.recall_list("s3", "b1") is None
    assert store.recall_list("s9", "b1") == _candidates("s9")
    assert store.recall_list("s1", "b2") == _candidates("other")

    assert store.delete_recall_lists("b1") == 1
    assert store.recall_list("s9", "b1") is None
    assert list(store.recall_lists("b1")) == []
    assert store.delete_recall_lists("b1") == 0


def test_recall_lists_round_trip_awkward_strings(store: Store) -> None:
    lists = [(f"seed {s}", [{"item_id": s, "score": 0.5, "sources": {}}]) for s in AWKWARD]
    store.write_recall_lists("b", lists, chunk_size=2)
    for seed, candidates in lists:
        assert store.recall_list(seed, "b") == candidates
    assert dict(store.recall_lists("b")) == dict(lists)


def test_recall_lists_accept_numpy_scores(store: Store) -> None:
    candidates = [
        {
            "item_id": "x",
            "score": np.float32(0.5),
            "sources": {"co_view": {"score": np.float64(0.25), "rank": np.int64(0)}},
        }
    ]
    store.write_recall_lists("b", [("s", candidates)])
    assert store.recall_list("s", "b") == [
        {"item_id": "x", "score": 0.5, "sources": {"co_view": {"score": 0.25, "rank": 0}}}
    ]


def test_failing_recall_write_changes_nothing(store: Store) -> None:
    store.write_recall_lists("b", [("s1", _candidates("s1")), ("s2", _candidates("s2"))])
    duplicated = [("n1", []), ("n2", []), ("n1", [])]
    with pytest.raises(StorageError, match="nothing was changed"):
        store.write_recall_lists("b", duplicated, chunk_size=1)
    with pytest.raises(DataError, match="seed ids must be str"):
        store.write_recall_lists("b", [("n1", []), (7, [])], chunk_size=1)  # type: ignore[list-item]
    with pytest.raises(DataError, match="cannot be stored as JSON"):
        store.write_recall_lists("b", [("n1", [{"item_id": object()}])])
    assert [seed for seed, _ in store.recall_lists("b")] == ["s1", "s2"]


@pytest.mark.parametrize("build_id", ["", "has space", 3])
def test_invalid_build_id(store: Store, build_id: object) -> None:
    with pytest.raises(StorageError, match="build_id"):
        store.write_recall_lists(build_id, [])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- artifacts


def test_artifact_versions_activate_and_rollback(store: Store) -> None:
    r1 = store.save_artifact(
        "ranker",
        _write_file("one"),
        metrics={"hit@10": np.float64(0.3)},
        params={"k": 10},
        config_hash="abc",
    )
    assert (r1.name, r1.version, r1.status, r1.path) == ("ranker", 1, "active", "ranker/v1")
    assert r1.metrics == {"hit@10": 0.3} and r1.params == {"k": 10} and r1.config_hash == "abc"
    assert r1.created_at.tzinfo is not None
    assert abs(datetime.now(UTC) - r1.created_at) < timedelta(minutes=1)
    path1 = store.artifact_path(r1)
    assert path1 == store.artifact_dir / "ranker" / "v1"
    assert (path1 / "model.txt").read_text() == "one"

    r2 = store.save_artifact("ranker", _write_file("two"))
    assert (r2.version, r2.status) == (2, "active")
    assert store.artifact("ranker", 1).status == "retired"
    assert store.active_artifact("ranker") == r2
    assert (store.artifact_path(store.active_artifact("ranker")) / "model.txt").read_text() == "two"  # type: ignore[arg-type]

    r3 = store.save_artifact("ranker", _write_file("three"), activate=False)
    assert (r3.version, r3.status) == (3, "staged")
    assert store.active_artifact("ranker") == r2

    # Rollback: activate an older version; the active one is retired.
    back = store.activate("ranker", 1)
    assert back.status == "active" and back.version == 1
    assert store.active_artifact("ranker") == back
    assert [(r.version, r.status) for r in store.list_artifacts("ranker")] == [
        (1, "active"),
        (2, "retired"),
        (3, "staged"),
    ]
    assert store.activate("ranker", 1) == back  # already active: unchanged

    store.save_artifact("engine", _write_file("e"))
    assert [(r.name, r.version) for r in store.list_artifacts()] == [
        ("engine", 1),
        ("ranker", 1),
        ("ranker", 2),
        ("ranker", 3),
    ]
    assert store.active_artifact("nothing") is None
    assert store.list_artifacts("nothing") == []


def test_unknown_artifact_version(store: Store) -> None:
    store.save_artifact("m", _write_file("x"))
    with pytest.raises(StorageError, match=r"no artifact 'm' version 5; known versions: \[1\]"):
        store.artifact("m", 5)
    with pytest.raises(StorageError, match="known versions: none"):
        store.activate("other", 1)


def test_raising_writer_leaves_no_directory_and_no_row(store: Store) -> None:
    def failing(directory: Path) -> None:
        (directory / "half-written").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.save_artifact("m", failing)
    assert store.list_artifacts() == []
    assert list(store.artifact_dir.iterdir()) == []

    ok = store.save_artifact("m", _write_file("ok"))
    with pytest.raises(RuntimeError):
        store.save_artifact("m", failing)
    assert store.list_artifacts() == [ok]
    assert sorted(p.name for p in store.artifact_dir.iterdir()) == ["m"]
    assert sorted(p.name for p in (store.artifact_dir / "m").iterdir()) == ["v1"]
    # The version number was not used up by the failure.
    assert store.save_artifact("m", _write_file("ok")).version == 2


def test_unserialisable_metrics_leave_nothing(store: Store) -> None:
    with pytest.raises(DataError, match="metrics of artifact 'm'"):
        store.save_artifact("m", _write_file("x"), metrics={"bad": object()})
    assert store.list_artifacts() == [] and list(store.artifact_dir.iterdir()) == []


def test_artifact_path_on_deleted_files_errors(store: Store) -> None:
    import shutil

    r1 = store.save_artifact("m", _write_file("1"))
    store.save_artifact("m", _write_file("2"))
    shutil.rmtree(store.artifact_dir / "m" / "v1")
    with pytest.raises(StorageError, match=r"files of artifact 'm' v1 are missing"):
        store.artifact_path(r1)
    with pytest.raises(StorageError, match="missing"):
        store.activate("m", 1)  # never roll back onto missing files
    assert store.active_artifact("m").version == 2  # type: ignore[union-attr]


def test_existing_target_directory_is_not_overwritten(store: Store) -> None:
    (store.artifact_dir / "m" / "v1").mkdir(parents=True)
    with pytest.raises(StorageError, match="already exists"):
        store.save_artifact("m", _write_file("x"))
    assert store.list_artifacts() == []
    assert [p.name for p in store.artifact_dir.iterdir()] == ["m"]


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "a b"])
def test_invalid_artifact_name(store: Store, name: str) -> None:
    with pytest.raises(StorageError, match="artifact name"):
        store.save_artifact(name, _write_file("x"))


def test_concurrent_saves_get_distinct_versions(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(3):
                store.save_artifact("m", _write_file(f"{i}-{j}"))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    records = store.list_artifacts("m")
    assert [r.version for r in records] == list(range(1, 13))
    assert [r.status for r in records].count("active") == 1
    for r in records:
        assert (store.artifact_path(r) / "model.txt").is_file()


# ----------------------------------------------------------------------------- backtests


def test_backtests_recorded_and_listed(store: Store) -> None:
    t0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    cet = timezone(timedelta(hours=2))
    id1 = store.record_backtest(
        dataset="retail",
        config={"k": [5, 10], "sources": ["co_purchase"]},
        metrics={"hit@10": np.float32(0.25), "coverage": 0.5},
        started_at=t0,
        finished_at=t0 + timedelta(minutes=3),
        report_path=Path("/reports/1"),
    )
    id2 = store.record_backtest(
        dataset="fashion",
        config={},
        metrics={"hit@10": 0.1},
        started_at=datetime(2024, 5, 2, 14, 0, tzinfo=cet),  # converted to UTC
        finished_at=datetime(2024, 5, 2, 12, 30),  # naive: taken as UTC
    )
    assert id2 > id1
    runs = store.list_backtests()
    assert [r.id for r in runs] == [id1, id2]
    r1, r2 = runs
    assert r1.dataset == "retail" and r1.config == {"k": [5, 10], "sources": ["co_purchase"]}
    assert r1.metrics == {"hit@10": 0.25, "coverage": 0.5}
    assert r1.started_at == t0 and r1.finished_at == t0 + timedelta(minutes=3)
    assert r1.report_path == "/reports/1"
    assert r1.created_at.tzinfo is not None
    assert r2.started_at == datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
    assert r2.finished_at == datetime(2024, 5, 2, 12, 30, tzinfo=UTC)
    assert r2.report_path is None
    assert [r.id for r in store.list_backtests("fashion")] == [id2]
    assert store.list_backtests("none") == []


# ----------------------------------------------------------------------------- prefixes


def test_two_prefixes_in_one_database_are_independent(backend: Backend, tmp_path: Path) -> None:
    a = backend.open(backend.new_prefix(), artifact_dir=tmp_path / "art-a")
    b = backend.open(backend.new_prefix(), artifact_dir=tmp_path / "art-b")
    assert a.table_prefix != b.table_prefix
    a.replace_catalog(_catalog())
    a.write_recall_lists("b", [("s", _candidates("s"))])
    a.save_artifact("m", _write_file("a"))
    a.record_backtest(
        dataset="d",
        config={},
        metrics={},
        started_at=datetime.now(UTC),
        finished_at=datetime.now(UTC),
    )
    assert len(b.read_catalog()) == 0
    assert b.recall_list("s", "b") is None
    assert b.list_artifacts() == [] and b.active_artifact("m") is None
    assert b.list_backtests() == []
    b.save_artifact("m", _write_file("b"))
    assert a.active_artifact("m").version == b.active_artifact("m").version == 1  # type: ignore[union-attr]
    names = set(sa.inspect(a.engine).get_table_names())
    assert {f"{a.table_prefix}catalog", f"{b.table_prefix}catalog"} <= names


# ----------------------------------------------------------------------------- files


def test_atomic_write(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.json"
    assert atomic_write_text(target, '{"a": 1}') == target
    assert json.loads(target.read_text()) == {"a": 1}
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temp files left


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_record_is_frozen() -> None:
    record = ArtifactRecord("m", 1, datetime.now(UTC), "active", "m/v1", {}, {}, None)
    with pytest.raises(AttributeError):
        record.version = 2  # type: ignore[misc]


@pytest.mark.postgres
def test_bare_postgresql_url_works(pg_backend: Backend, tmp_path: Path) -> None:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the store falls back to psycopg2.
    backend = pg_backend
    bare = sa.make_url(backend.url).set(drivername="postgresql")
    prefix = backend.new_prefix()
    with Store.open(
        bare.render_as_string(hide_password=False), artifact_dir=tmp_path, table_prefix=prefix
    ) as store:
        assert store.list_artifacts() == []


def test_recall_list_sees_writes_of_another_store(backend: Backend, tmp_path: Path) -> None:
    reader = backend.open()
    writer = backend.open(reader.table_prefix)
    assert reader.recall_list("s", "b") is None  # the reader's connection now exists
    writer.write_recall_lists("b", [("s", _candidates("s"))])
    assert reader.recall_list("s", "b") == _candidates("s")
    writer.write_recall_lists("b", [("s", [])])
    assert reader.recall_list("s", "b") == []


def test_recall_list_from_many_threads(store: Store) -> None:
    store.write_recall_lists("b", [(f"s{i}", _candidates(f"s{i}")) for i in range(50)])
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for i in range(50):
                assert store.recall_list(f"s{i}", "b") == _candidates(f"s{i}")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
