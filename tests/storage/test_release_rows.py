"""Release rows (issue 15): one row pins the engine, ranker and neural stage versions a
service loads; activation, rollback, prune (also killed mid-way) and the schema 2 -> 3
migration, on SQLite and (when reachable) PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recset.errors import ConfigError, StorageError
from recset.storage import FAULT_EXIT_CODE, PRUNE_FAULT_PHASES, Store
from recset.storage._models import tables

Backend = Any


def _write(directory: Path) -> None:
    np.save(directory / "a.npy", np.arange(6, dtype=np.int32))


def _catalog(tag: str) -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"{tag}{k}" for k in range(3)], "available": True})


def _statuses(store: Store) -> dict[tuple[str, int], str]:
    return {(r.name, r.version): r.status for r in store.list_artifacts()}


def test_activating_a_stage_records_a_release_pinning_the_others(store: Store) -> None:
    assert store.active_release_record() is None
    store.save_artifact("ranker", _write)  # no engine yet: no release
    assert store.list_releases() == []
    store.save_artifact("engine", _write, catalog=_catalog("a"))
    r = store.active_release_record()
    assert r is not None and r.pins == {"engine": 1, "ranker": 1} and r.id == 1
    store.save_artifact("ranker", _write)
    assert store.active_release_record().pins == {"engine": 1, "ranker": 2}  # type: ignore[union-attr]
    store.save_artifact("other", _write)  # not a served artifact: no release
    assert [x.id for x in store.list_releases()] == [1, 2]


def test_staged_release_then_activation_and_rollback(store: Store) -> None:
    store.save_artifact("engine", _write, catalog=_catalog("a"))
    store.save_artifact("personalizer", _write)
    store.save_artifact("engine", _write, catalog=_catalog("b"), activate=False)
    before = store.active_release_record()
    assert before is not None and before.pins == {"engine": 1, "personalizer": 1}
    staged = store.create_release({"engine": 2}, activate=False, note="test")
    assert staged.status == "staged" and store.active_release_record() == before
    assert store.read_catalog()["item_id"].tolist() == ["a0", "a1", "a2"]
    now = store.activate_release(staged.id)
    assert now.status == "active" and now.note == "test"
    # per-artifact statuses follow the release: an artifact it does not pin has none active
    assert _statuses(store) == {
        ("engine", 1): "retired",
        ("engine", 2): "active",
        ("personalizer", 1): "retired",
    }
    assert store.read_catalog()["item_id"].tolist() == ["b0", "b1", "b2"]
    store.activate_release(before.id)  # roll back: its engine's catalog comes back
    assert store.read_catalog()["item_id"].tolist() == ["a0", "a1", "a2"]
    assert store.active_artifact("personalizer").version == 1  # type: ignore[union-attr]
    assert store.release(staged.id).status == "retired"


def test_bad_releases_are_refused(store: Store) -> None:
    store.save_artifact("engine", _write)
    with pytest.raises(StorageError, match="pins an 'engine' version"):
        store.create_release({"ranker": 1})
    with pytest.raises(StorageError, match="pins an 'engine' version"):
        store.create_release({"engine": 1, "bogus": 1})
    with pytest.raises(
        StorageError, match=r"no artifact 'engine' version 7; known versions: \[1\]"
    ):
        store.create_release({"engine": 7})
    with pytest.raises(StorageError, match=r"no release 9; known releases: \[1\]"):
        store.activate_release(9)
    with pytest.raises(ConfigError, match="'keep'"):
        store.prune(0)


def _history(store: Store) -> None:
    """Engine v1..v4 (each with a catalog and recall lists), rankers v1, v2 and a staged v3;
    releases 1..5; release 2 (engine v2, ranker v1) active."""
    for tag in "abcd":
        rec = store.save_artifact("engine", _write, catalog=_catalog(tag))
        store.write_recall_lists(f"engine-v{rec.version}", [(f"{tag}0", [{"item_id": "x"}])])
        if tag == "a":
            store.save_artifact("ranker", _write)
        if tag == "c":
            store.save_artifact("ranker", _write)
    store.save_artifact("ranker", _write, activate=False)
    store.activate_release(2)


def test_prune_keeps_the_newest_and_the_active(store: Store) -> None:
    _history(store)
    assert [(r.id, r.pins) for r in store.list_releases()] == [
        (1, {"engine": 1}),
        (2, {"engine": 1, "ranker": 1}),
        (3, {"engine": 2, "ranker": 1}),
        (4, {"engine": 3, "ranker": 1}),
        (5, {"engine": 3, "ranker": 2}),
        (6, {"engine": 4, "ranker": 2}),
    ]
    tokens = {r.version: r.release for r in store.list_artifacts("engine")}
    result = store.prune(keep=1)
    assert result.releases == [1, 3, 4, 5]
    assert sorted(result.artifacts) == [("engine", 2), ("engine", 3)]
    assert [r.id for r in store.list_releases()] == [2, 6]
    assert store.active_release_record().id == 2  # type: ignore[union-attr]
    left = sorted((r.name, r.version) for r in store.list_artifacts())
    # ranker v3 was staged after the newest kept release: kept for a later activation
    assert left == [("engine", 1), ("engine", 4), ("ranker", 1), ("ranker", 2), ("ranker", 3)]
    for v in (2, 3):
        assert not (store.artifact_dir / "engine" / f"v{v}").exists()
        assert store.recall_list(f"{'abcd'[v - 1]}0", f"engine-v{v}") is None
        assert len(store.read_catalog(tokens[v])) == 0
    assert store.recall_list("d0", "engine-v4") == [{"item_id": "x"}]
    assert len(store.read_catalog(tokens[4])) == 3
    for r in store.list_artifacts():
        store.verify_artifact(r)
    assert store.prune(keep=1).artifacts == []  # nothing more to do


def test_schema_2_store_is_migrated_to_releases(backend: Backend) -> None:
    store = backend.open()
    store.save_artifact("engine", _write, catalog=_catalog("a"))
    store.save_artifact("ranker", _write)
    store.save_artifact("engine", _write, activate=False)
    t = tables(store.table_prefix)
    with store.engine.begin() as conn:  # back to the layout of schema version 2
        t.release.drop(conn)
        t.artifact_file.drop(conn)
        conn.execute(sa.update(t.meta).where(t.meta.c.key == "schema_version").values(value="2"))
    store.close()
    again = backend.open(store.table_prefix)
    r = again.active_release_record()
    assert r is not None and (r.id, r.pins) == (1, {"engine": 1, "ranker": 1})
    assert "migrated" in r.note
    assert again.save_artifact("ranker", _write).version == 2
    assert again.active_release_record().pins == {"engine": 1, "ranker": 2}  # type: ignore[union-attr]


def _prune_child(target: str, artifact_dir: str | None, prefix: str, fault: str | None) -> None:
    os.environ.pop("RECSET_FAULT", None)
    if fault:
        os.environ["RECSET_FAULT"] = fault
    code = 0
    try:
        with Store.open(target, artifact_dir=artifact_dir, table_prefix=prefix) as st:
            st.prune(1)
    except BaseException:
        code = 1
    os._exit(code)


def _run_prune(store: Store, fault: str | None) -> int:
    """Prune ``store`` in a forked process (dying at ``fault``); its exit status."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        target, art = str(store.artifact_dir.parent), None
    else:
        target, art = url.render_as_string(hide_password=False), str(store.artifact_dir)
    proc = multiprocessing.get_context("fork").Process(
        target=_prune_child, args=(target, art, store.table_prefix, fault)
    )
    proc.start()
    proc.join(120)
    return int(proc.exitcode)  # type: ignore[arg-type]


@pytest.mark.parametrize("phase", PRUNE_FAULT_PHASES)
def test_a_prune_killed_midway_leaves_a_loadable_store(store: Store, phase: str) -> None:
    _history(store)
    before = store.active_release_record()
    assert _run_prune(store, phase) == FAULT_EXIT_CODE
    assert store.active_release_record() == before
    for rel in store.list_releases():  # every remaining release still loads its files
        for name, version in rel.pins.items():
            store.verify_artifact(store.artifact(name, version))
    assert _run_prune(store, None) == 0
    assert [r.id for r in store.list_releases()] == [2, 6]
    dirs = sorted(
        p.relative_to(store.artifact_dir).as_posix() for p in store.artifact_dir.glob("*/v*")
    )
    assert dirs == ["engine/v1", "engine/v4", "ranker/v1", "ranker/v2", "ranker/v3"]
