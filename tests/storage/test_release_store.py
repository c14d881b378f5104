"""Releases in the store (issue 12): a version's catalog goes live with it in one
transaction, rollback brings its catalog back, manifests, the build lock, leftovers of dead
builds, the schema migration, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from recset.errors import ConfigError, DataError, StorageError
from recset.storage import Store
from recset.storage._models import tables

Backend = Any


def _catalog(n: int, unavailable: set[int] = frozenset()) -> pd.DataFrame:  # type: ignore[assignment]
    return pd.DataFrame(
        {
            "item_id": [f"i{k}" for k in range(n)],
            "title": [f"item {k}" for k in range(n)],
            "available": [k not in unavailable for k in range(n)],
        }
    )


def _write(directory: Path) -> None:
    (directory / "model.txt").write_text("weights")
    (directory / "sub").mkdir()
    (directory / "sub" / "a.npy").write_bytes(b"")  # replaced below by a real array
    import numpy as np

    np.save(directory / "sub" / "a.npy", np.arange(12, dtype=np.int32).reshape(3, 4))


def _available(store: Store) -> list[bool]:
    return store.read_catalog()["available"].tolist()


def test_catalog_goes_live_with_its_version(store: Store) -> None:
    v1 = store.save_artifact("engine", _write, catalog=_catalog(4))
    assert _available(store) == [True] * 4 and v1.release is not None
    seen: list[list[bool]] = []
    v2 = store.save_artifact(
        "engine", lambda d: (_write(d), seen.append(_available(store))), catalog=_catalog(4, {1})
    )
    assert seen == [[True] * 4]  # while v2 was written, v1's catalog was live
    assert _available(store) == [True, False, True, True]
    assert store.read_catalog(v1.release)["available"].tolist() == [True] * 4
    # Rolling back brings the version's own catalog back, and forward again.
    store.activate("engine", 1)
    assert _available(store) == [True] * 4
    store.activate("engine", 2)
    assert _available(store) == [True, False, True, True]
    assert store.staged_catalogs() == [] and v2.release != v1.release


def test_refused_version_leaves_catalog_and_nothing_staged(store: Store) -> None:
    store.save_artifact("engine", _write, catalog=_catalog(3))

    def refuse(directory: Path) -> None:
        raise StorageError(f"{directory}: cannot load")

    with pytest.raises(StorageError, match="cannot load"):
        store.save_artifact("engine", _write, catalog=_catalog(3, {0, 1}), check=refuse)
    assert _available(store) == [True] * 3
    assert [r.version for r in store.list_artifacts()] == [1]
    assert store.staged_catalogs() == []
    assert sorted(p.name for p in store.artifact_dir.iterdir()) == ["engine"]


def test_duplicate_ids_in_a_release_catalog_are_refused_before_anything(store: Store) -> None:
    cat = pd.DataFrame({"item_id": ["a", "b", "a"]})
    with pytest.raises(DataError, match=r"duplicate item_id values: \['a'\]"):
        store.save_artifact("engine", _write, catalog=cat)
    assert store.list_artifacts() == [] and store.staged_catalogs() == []


def test_staged_version_keeps_the_live_catalog(store: Store) -> None:
    store.replace_catalog(_catalog(2))
    rec = store.save_artifact("engine", _write, catalog=_catalog(2, {0}), activate=False)
    assert _available(store) == [True, True]
    store.activate("engine", rec.version)
    assert _available(store) == [False, True]


def test_manifest_records_sizes_shapes_and_checksums(store: Store) -> None:
    rec = store.save_artifact("m", _write)
    path = store.verify_artifact(rec)
    doc = json.loads((path / "manifest.json").read_text())
    assert set(doc["files"]) == {"model.txt", "sub/a.npy"}
    npy = doc["files"]["sub/a.npy"]
    assert (npy["shape"], npy["dtype"]) == ([3, 4], "<i4")
    assert npy["size"] == (path / "sub" / "a.npy").stat().st_size
    assert len(npy["sha256"]) == 64
    assert rec.manifest is not None and rec.manifest.startswith("sha256:")
    assert store.active_artifact("m") == rec  # the row carries the manifest checksum


def test_damaged_file_is_named(store: Store) -> None:
    rec = store.save_artifact("m", _write)
    (store.artifact_path(rec) / "model.txt").write_text("weightz")
    with pytest.raises(StorageError, match=r"model\.txt: its sha256 differs from the manifest"):
        store.verify_artifact(rec)


def test_symlink_in_a_version_is_refused(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x")

    def write(directory: Path) -> None:
        (directory / "link").symlink_to(outside)

    with pytest.raises(StorageError, match="symbolic link"):
        store.save_artifact("m", write)
    assert store.list_artifacts() == []


def test_version_without_manifest_loads_unchecked(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    rec = store.save_artifact("m", _write)
    a = tables(store.table_prefix).artifact
    with store.engine.begin() as conn:
        conn.execute(sa.update(a).values(manifest=None))
    old = store.active_artifact("m")
    assert old is not None and old.manifest is None
    assert store.verify_artifact(old) == store.artifact_path(rec)
    assert "has no manifest" in caplog.text


def test_leftovers_of_a_dead_build_are_removed_and_others_kept(store: Store) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    store.save_artifact("m", _write)
    owner = json.loads((store.artifact_dir / "m" / "v1" / ".recset-owner").read_text())
    host = owner["host"]

    def leftover(path: Path, pid: int, store_id: str = store.store_id) -> Path:
        path.mkdir(parents=True)
        (path / ".recset-owner").write_text(
            json.dumps({"store_id": store_id, "host": host, "pid": pid})
        )
        return path

    sid = store.store_id
    no_owner_yet = store.artifact_dir / f".tmp-{sid}-{host}-{dead_pid}-m-x0"
    no_owner_yet.mkdir()
    gone = [
        no_owner_yet,
        leftover(store.artifact_dir / f".tmp-{sid}-{host}-{dead_pid}-m-x1", dead_pid),
        leftover(store.artifact_dir / "m" / "v2", dead_pid),
    ]
    kept = [
        leftover(store.artifact_dir / f".tmp-{sid}-{host}-{os.getpid()}-m-x2", os.getpid()),
        leftover(store.artifact_dir / "m" / "v3", dead_pid, store_id="another-store"),
        leftover(store.artifact_dir / "x" / "v1", dead_pid, store_id="another-store"),
    ]
    removed = store.remove_leftovers()
    assert sorted(removed) == sorted(str(p) for p in gone)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in gone)
    # A registered version is never a leftover, whoever wrote it.
    assert (store.artifact_dir / "m" / "v1").is_dir()


def test_orphan_of_a_dead_build_does_not_block_the_next_save(store: Store) -> None:
    store.save_artifact("m", _write)
    orphan = store.artifact_dir / "m" / "v2"
    orphan.mkdir()
    (orphan / ".recset-owner").write_text(
        json.dumps({"store_id": store.store_id, "host": "00000000", "pid": 1})
    )
    # Another host's directory: never touched, the save refuses as before.
    with pytest.raises(StorageError, match="already exists"):
        store.save_artifact("m", _write)
    from recset.storage._lock import host_tag

    (orphan / ".recset-owner").write_text(
        json.dumps({"store_id": store.store_id, "host": host_tag(), "pid": 2**22 + 7})
    )
    assert store.save_artifact("m", _write).version == 2


def _probe_lock(target: str, artifact_dir: str, prefix: str, out: str) -> None:
    """In a forked process: try the store's build lock, write what happened to ``out``."""
    try:
        with Store.open(target, artifact_dir=artifact_dir, table_prefix=prefix) as st:
            with st.build_lock("probe"):
                text = "acquired"
    except StorageError as e:
        text = f"refused: {e}"
    Path(out).write_text(text)
    os._exit(0)


def _probe(store: Store, target: str, out: Path) -> str:
    import multiprocessing

    p = multiprocessing.get_context("fork").Process(
        target=_probe_lock,
        args=(target, str(store.artifact_dir), store.table_prefix, str(out)),
    )
    p.start()
    p.join(120)
    return out.read_text()


def test_build_lock_is_reentrant_and_refuses_another_process(
    backend: Backend, tmp_path: Path
) -> None:
    store = backend.open()
    with store.build_lock("outer"), store.build_lock("inner"):
        got = _probe(store, backend.target, tmp_path / "probe1")
    assert got.startswith("refused: Another recset process is building into the store"), got
    assert f"(outer, pid {os.getpid()} on " in got
    assert _probe(store, backend.target, tmp_path / "probe2") == "acquired"


def test_table_prefix_in_the_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}?table_prefix=shop_"
    with Store.open(url) as st:
        assert st.table_prefix == "shop_"
        st.replace_catalog(_catalog(1))
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}", table_prefix="shop_") as st:
        assert len(st.read_catalog()) == 1
    with pytest.raises(ConfigError, match="give one"):
        Store.open(url, table_prefix="other_")


def test_schema_1_store_is_migrated(backend: Backend) -> None:
    store = backend.open()
    rec = store.save_artifact("m", _write)
    t = tables(store.table_prefix)
    with store.engine.begin() as conn:  # back to the layout of schema version 1
        t.catalog_release.drop(conn)
        for col in ("release", "manifest"):
            conn.execute(sa.text(f'ALTER TABLE "{t.artifact.name}" DROP COLUMN "{col}"'))
        conn.execute(sa.update(t.meta).where(t.meta.c.key == "schema_version").values(value="1"))
    store.close()
    again = backend.open(store.table_prefix)
    old = again.active_artifact("m")
    assert old is not None and old.version == rec.version and old.manifest is None
    assert again.save_artifact("m", _write, catalog=_catalog(2)).version == 2
    assert len(again.read_catalog()) == 2


def test_catalog_saved_in_chunks_keeps_order_and_a_late_bad_row_leaves_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the catalog rows are converted and inserted a chunk at a time (3M rows as dicts would
    # take 2 GiB), in one transaction: a value refused in a late chunk leaves no staged row
    from recset.storage import _store as store_module

    monkeypatch.setattr(store_module, "_CATALOG_CHUNK", 3)
    calls: list[int] = []
    real = store_module._catalog_row_chunks

    def counting(catalog: pd.DataFrame, size: int):  # noqa: ANN202
        for chunk in real(catalog, size):
            calls.append(len(chunk))
            yield chunk

    monkeypatch.setattr(store_module, "_catalog_row_chunks", counting)
    v1 = store.save_artifact("engine", _write, catalog=_catalog(8, {6}))
    assert calls == [3, 3, 2]
    back = store.read_catalog(v1.release)
    assert back["item_id"].tolist() == [f"i{k}" for k in range(8)]
    assert back["available"].tolist() == [k != 6 for k in range(8)]
    bad = _catalog(8).astype({"available": object})
    bad.loc[7, "available"] = "maybe"  # in the third chunk, after two were inserted
    with pytest.raises(DataError, match="catalog row 7: available must be a bool"):
        store.save_artifact("engine", _write, catalog=bad)
    assert store.staged_catalogs() == [] and len(store.list_artifacts()) == 1
    assert _available(store) == [k != 6 for k in range(8)]
    with pytest.raises(DataError, match="catalog row 7: available must be a bool"):
        store.replace_catalog(bad)
    assert _available(store) == [k != 6 for k in range(8)]
