"""A self-contained store (issue 15): artifact files in the database or at an fsspec URL, so a
second machine (a fresh cache directory, no artifact directory) loads the engine by the
store's URL alone and recommends the same lists."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from recset import Engine
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.errors import StorageError
from recset.storage import Store
from recset.storage._remote import CACHE_ENV
from recset.testing import releases


@pytest.fixture(scope="module")
def built() -> tuple[Dataset, Engine]:
    syn = generate(SyntheticConfig(n_items=120, n_users=60, n_events=2500, seed=4))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    return ds, Engine.build(ds)


def _lists(engine: Engine) -> list[list[tuple[str, float]]]:
    seeds = [str(s) for s in engine.items.values]
    return [[(r.item_id, r.score) for r in row] for row in engine.recommend_batch(seeds, k=10)]


@pytest.fixture
def pg_target() -> Iterator[str]:
    url = releases.pg_url()
    reason = releases.pg_unreachable_reason(url)
    if reason is not None:
        pytest.skip(f"PostgreSQL is not reachable ({reason})")
    prefix = f"tr{uuid.uuid4().hex[:8]}_"
    try:
        yield releases.with_prefix(url, prefix)
    finally:
        releases.drop_store(url, [prefix])


def test_a_second_machine_loads_a_postgres_store_by_url_alone(
    built: tuple[Dataset, Engine],
    pg_target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds, engine = built
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "machine-1"))
    record = engine.save(pg_target, dataset=ds)  # no artifact_dir: the files go in the database
    with Store.open(pg_target, create=False) as st:
        assert st.remote is not None and st.remote.location == "db"
        assert st.artifact_dir.is_relative_to(tmp_path / "machine-1")
    served_here = _lists(Engine.load(pg_target))
    # Machine 2: an empty cache, no artifact directory, only the URL.
    cache2 = tmp_path / "machine-2"
    monkeypatch.setenv(CACHE_ENV, str(cache2))
    loaded = Engine.load(pg_target)
    assert loaded.version is not None and loaded.version.pins == {"engine": record.version}
    assert _lists(loaded) == served_here == _lists(engine)
    fetched = list(cache2.glob("*/engine/v1/manifest.json"))
    assert len(fetched) == 1  # materialised once, checked against the manifest
    # A damaged cached copy is refused, naming the file; removing it fetches it again.
    npy = sorted(fetched[0].parent.rglob("*.npy"))[0]
    arr = np.load(npy)
    np.save(npy, arr[::-1].copy())
    with pytest.raises(StorageError, match="differs from the manifest"):
        Engine.load(pg_target)
    import shutil

    shutil.rmtree(fetched[0].parent)
    assert _lists(Engine.load(pg_target)) == served_here


def test_files_at_an_fsspec_url(
    built: tuple[Dataset, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("fsspec")
    ds, engine = built
    remote = f"memory://recset-test-{uuid.uuid4().hex[:8]}/artifacts"
    store = tmp_path / "store"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "machine-1"))
    engine.save(store, artifact_dir=remote, dataset=ds)
    engine.save(store, dataset=ds)  # the location is recorded: no artifact_dir needed
    with Store.open(store, create=False) as st:
        assert st.remote is not None and st.remote.location == remote
        with pytest.raises(StorageError, match="keeps its artifacts at"):
            Store.open(store, artifact_dir="db", create=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "machine-2"))
    loaded = Engine.load(store)
    assert loaded.version is not None and loaded.version.pins == {"engine": 2}
    assert _lists(loaded) == _lists(engine)
    with Store.open(store, create=False) as st:
        assert st.prune(keep=1).artifacts == [("engine", 1)]
        fs = st.remote._fs  # type: ignore[union-attr]
        root = remote.removeprefix("memory://")
        assert not fs.exists(f"/{root}/engine/v1") and fs.exists(f"/{root}/engine/v2")


def test_a_store_with_files_on_a_filesystem_still_needs_its_directory(
    pg_target: str, tmp_path: Path
) -> None:
    with Store.open(pg_target, artifact_dir=tmp_path / "art") as st:  # as before schema 3
        st.save_artifact("model", lambda d: (d / "f.txt").write_text("x"))
        assert st.remote is None
    with pytest.raises(StorageError, match="needs an artifact_dir.*records no artifact location"):
        Store.open(pg_target)
    with Store.open(tmp_path / "s") as st:  # a directory store: artifacts beside the database
        assert st.remote is None and st.artifact_dir == (tmp_path / "s" / "artifacts").resolve()
