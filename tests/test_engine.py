"""Engine: build, recommend (incl. cold start), exclusions, availability, save/load."""

from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from numpy.typing import NDArray

from recset import Engine, Recommendation, StorageError
from recset.config import config_from_dict
from recset.data import Dataset, IdMap
from recset.recall import Candidates, Mixer, RecallBase
from recset.testing import recommend_dense

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
    batch = recommend_dense(engine, seeds, 3)
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


# -- filling short lists from the fallback ------------------------------------------------

N_STUB = 1000


class _Stub(RecallBase):
    """A source fitted by construction."""

    def fit(self, dataset, signals=None, *, fitted=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        return Candidates.empty(len(seeds), n)


class _Nothing(_Stub):
    """A mix source that never answers: every row is left to the fallback."""

    name: ClassVar[str] = "nothing"

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        return Candidates.empty(len(seeds), n)


class _Lists(_Stub):
    """A fallback: items 1..300 for a known seed (the seed left out), 500..999 for -1."""

    name: ClassVar[str] = "lists"

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[tuple[int, ...], int]] = []

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        self.asked.append((tuple(np.asarray(seeds).tolist()), n))
        out = Candidates.empty(len(seeds), n)
        for r, s in enumerate(np.asarray(seeds).tolist()):
            row = np.arange(500, N_STUB) if s < 0 else np.setdiff1d(np.arange(1, 301), [s])
            row = row[:n]
            out.item[r, : len(row)] = row
            out.score[r, : len(row)] = 1000.0 - np.arange(len(row))
        return out


class _Rules(_Stub):
    """A filter: seed 0 takes items >= 250 only, seed 2 nothing; other seeds anything."""

    name: ClassVar[str] = "rules"
    is_filter = True

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        s = np.asarray(seeds)[:, None]
        return np.where(s == 0, items >= 250, s != 2)


def _stub_engine(fallback: _Lists) -> Engine:
    config = config_from_dict({"mix": {"sources": ["co_view"], "filters": ["compatibility"]}})
    available = np.ones(N_STUB, dtype=bool)
    available[[260, 501]] = False
    sources = {"co_view": _Nothing(), "popular": fallback, "compatibility": _Rules()}
    mixer = Mixer.from_config(config, sources, np.zeros(N_STUB, np.int32), available)
    return Engine(config, IdMap([f"i{i}" for i in range(N_STUB)]), mixer)


def test_fill_goes_deeper_only_for_short_rows() -> None:
    """A row the filter starves gets the fallback's list in doubling widths, then its
    cold-start list; a row filled at once asks nothing more; a row nothing can fill stops
    once the lists are exhausted. Filled scores never rise; reasons give the list ranks.
    Regression: _fill asked for a fixed 2k + 10 candidates and left such rows short."""
    fallback = _Lists()
    engine = _stub_engine(fallback)
    k = 100
    m = recommend_dense(engine, np.array([0, 1, 2], np.int32), k)
    # seed 0: nothing valid in the first 210 (items 1..211), 250..300 but 260 in 420 (the
    # whole list: 300 items, exhausted), then the cold-start list without 501
    own = [i for i in range(250, 301) if i != 260]
    cold = [i for i in range(500, N_STUB) if i != 501][: k - len(own)]
    assert m.item[0].tolist() == own + cold
    src = engine.source_names.index("popular")
    assert m.source_rank[0, :, src].tolist() == [i - 1 for i in own] + [i - 500 for i in cold]
    assert m.item[1].tolist() == list(range(2, 102))  # filled from the first 210
    assert (m.item[2] == -1).all()  # nothing passes: left empty, after finite asks
    assert fallback.asked == [
        ((0, 1, 2), 210),
        ((0, 2), 420),  # 299 and 300 items < 420: both lists exhausted
        ((-1, -1), 210),  # seed 0 filled here; seed 2 goes on to the end of the list
        ((-1,), 420),
        ((-1,), 840),
    ]
    filled = m.score[:2]
    assert np.isfinite(filled).all() and (np.diff(filled, axis=1) < 0).all()
    np.testing.assert_allclose(m.score[1, :3], 1.0 / (10.0 + np.arange(1, 4)), rtol=1e-6)


def test_fill_in_chunks_gives_the_same_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounding the entries asked of the fallback at once changes the calls, not the lists."""
    seeds = np.array([0, 1, 2, 0, -1, 5], np.int32)
    whole = recommend_dense(_stub_engine(_Lists()), seeds, 100)
    monkeypatch.setattr("recset.recall.mixer._FILL_ENTRIES", 500)  # 2 rows of 210 per call
    fallback = _Lists()
    chunked = recommend_dense(_stub_engine(fallback), seeds, 100)
    assert max(len(s) for s, _ in fallback.asked) <= 2
    for f in ("item", "score", "source_score", "source_rank"):
        np.testing.assert_array_equal(getattr(whole, f), getattr(chunked, f))
