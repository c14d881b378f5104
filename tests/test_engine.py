"""Engine: build, recommend (incl. cold start), exclusions, availability, save/load."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recset import Engine, Recommendation, StorageError
from recset.config import config_from_dict
from recset.data import Dataset

# popular alone, unfiltered: the foundation's fallback behaviour, checked exactly
POPULAR_ONLY = config_from_dict({"mix": {"sources": ["popular"], "filters": []}})

CATALOG = pd.DataFrame(
    {
        "item_id": [f"i{i}" for i in range(8)],
        "title": [f"item {i}" for i in range(8)],
        "category_id": ["a", "a", "a", "a", "b", "b", "b", "b"],
        "available": [True, True, True, False, True, True, True, True],
    }
)


def _events() -> pd.DataFrame:
    # popularity within category a: i3 (unavailable) > i2 > i1 > i0; category b: i7 > i6 > i5 > i4
    counts = {"i0": 1, "i1": 2, "i2": 3, "i3": 9, "i4": 1, "i5": 4, "i6": 6, "i7": 8}
    rows = []
    t = 0
    for item, c in counts.items():
        for j in range(c):
            t += 1
            rows.append(
                {
                    "user_id": f"u{j}",
                    "item_id": item,
                    "event": "purchase",
                    "timestamp": 1000 + t,
                    "order_id": f"o{t}",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.build(Dataset.from_frames(CATALOG, _events()), POPULAR_ONLY)


def _ids(recs: list[Recommendation]) -> list[str]:
    return [r.item_id for r in recs]


def test_popular_in_category_then_global(engine: Engine) -> None:
    recs = engine.recommend("i0", k=4)
    # category a first (seed and unavailable i3 excluded), then global fill from category b
    assert _ids(recs) == ["i2", "i1", "i7", "i6"]
    assert all(r.reasons[0].source == "popular" for r in recs)
    assert [r.reasons[0].rank for r in recs[:2]] == [0, 1]


def test_unknown_seed_gets_cold_start(engine: Engine) -> None:
    recs = engine.recommend("never-seen", k=3)
    assert _ids(recs) == ["i7", "i6", "i5"]


def test_exclude_and_k(engine: Engine) -> None:
    recs = engine.recommend("i4", k=3, exclude=["i7", "unknown"])
    assert _ids(recs) == ["i6", "i5", "i2"]
    with pytest.raises(ValueError, match="'k' parameter"):
        engine.recommend("i4", k=0)


def test_never_serves_unavailable(engine: Engine) -> None:
    for seed in CATALOG["item_id"]:
        assert "i3" not in _ids(engine.recommend(seed, k=7))


def test_batch_matches_single(engine: Engine) -> None:
    seeds = np.array([0, 4, -1], dtype=np.int32)
    batch = engine.recommend_many(seeds, 3)
    for row, seed in enumerate(["i0", "i4", "zzz"]):
        single = _ids(engine.recommend(seed, k=3))
        assert engine.items.ids(batch.item[row]).tolist() == single


def test_save_load_round_trip(engine: Engine, tmp_path: Path) -> None:
    ds = Dataset.from_frames(CATALOG, _events())
    rec1 = engine.save(tmp_path / "store", dataset=ds)
    rec2 = engine.save(tmp_path / "store", dataset=ds)
    assert (rec1.version, rec2.version) == (1, 2)
    loaded = Engine.load(tmp_path / "store")
    for seed in ["i0", "i5", "nope"]:
        assert loaded.recommend(seed, k=5) == engine.recommend(seed, k=5)
    assert Engine.load(tmp_path / "store", version=1).recommend("i0") == engine.recommend("i0")


def test_availability_from_store_catalog(engine: Engine, tmp_path: Path) -> None:
    from recset.storage import Store

    ds = Dataset.from_frames(CATALOG, _events())
    engine.save(tmp_path / "s", dataset=ds)
    with Store.open(tmp_path / "s") as store:
        cat = store.read_catalog()
        cat.loc[cat["item_id"] == "i2", "available"] = False
        store.replace_catalog(cat)
    assert "i2" not in _ids(Engine.load(tmp_path / "s").recommend("i0", k=5))


def test_load_without_engine_is_clear(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        Engine.load(tmp_path / "empty")
