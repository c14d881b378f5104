"""The mixer: fusion math on stub sources, and per-category mixes through the engine."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from numpy.typing import NDArray

from recset.config import Config, MixConfig, config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.recall import Candidates, RecallBase
from recset.recall.mixer import Mixer
from recset.testing import recommend_dense

# -- stub sources ------------------------------------------------------------------------


class Stub(RecallBase):
    """A source answering from a fixed table ``{seed: [(item, score), ...]}``, best first."""

    name: ClassVar[str] = "stub"

    def __init__(self, table: dict[int, list[tuple[int, float]]]) -> None:
        super().__init__()
        self.table = table
        self.asked: list[int] = []

    def fit(self, dataset, signals=None, *, fitted=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        self.asked.append(n)
        out = Candidates.empty(len(seeds), n)
        for r, s in enumerate(np.asarray(seeds).tolist()):
            for p, (item, score) in enumerate(self.table.get(s, [])[:n]):
                out.item[r, p] = item
                out.score[r, p] = score
        return out


class Ban(RecallBase):
    """A filter dropping fixed (seed, item) pairs."""

    name: ClassVar[str] = "ban"
    is_filter = True

    def __init__(self, banned: set[tuple[int, int]]) -> None:
        super().__init__()
        self.banned = banned

    def fit(self, dataset, signals=None, *, fitted=None):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return self

    def recall_many(self, seeds: NDArray[np.int32], n: int) -> Candidates:
        return Candidates.empty(len(seeds), n)

    def keep(self, seeds: NDArray[np.int32], items: NDArray[np.int32]) -> NDArray[np.bool_]:
        return np.array(
            [
                [(int(s), int(i)) not in self.banned for i in row]
                for s, row in zip(seeds, items, strict=True)
            ],
            dtype=bool,
        ).reshape(items.shape)


A_TABLE = {0: [(1, 0.9), (2, 0.5), (3, 0.1)], 1: [(0, 0.8), (2, 0.7)]}
B_TABLE = {0: [(3, 7.0), (4, 6.0), (0, 5.0)], 1: [(2, 3.0)]}


def _mixer(**mix: object) -> tuple[Mixer, Stub, Stub]:
    a, b = Stub(A_TABLE), Stub(B_TABLE)
    sources: dict[str, RecallBase] = {"a": a, "b": b, "ban": Ban({(0, 2)})}
    cfg = MixConfig.model_validate({"sources": ["a", "b"], "filters": [], **mix})
    return Mixer(sources, [cfg], np.zeros(5, np.int32), ("a", "b"), fallback="a"), a, b


def _row(m: Candidates, r: int = 0) -> list[int]:
    return m.item[r][m.item[r] >= 0].tolist()


def test_rrf_fusion_math() -> None:
    """score = sum over proposing sources of weight / (rrf_k + rank + 1), best first."""
    mixer, _, _ = _mixer(weights={"b": 2.0}, rrf_k=10.0)
    m = mixer.mix(np.array([0], np.int32), 10)
    expected = {
        1: 1 / 11,
        2: 1 / 12,
        3: 1 / 13 + 2 / 11,  # proposed by both: rises to the top
        4: 2 / 12,
    }  # item 0 is the seed: dropped
    assert _row(m) == [3, 4, 1, 2]
    np.testing.assert_allclose(m.score[0, :4], [expected[i] for i in _row(m)], rtol=1e-6)
    assert np.isneginf(m.score[0, 4:]).all() and (m.item[0, 4:] == -1).all()
    # each source's own score and 0-based rank, NaN / -1 where it did not propose the item
    np.testing.assert_array_equal(m.source_rank[0, :4], [[2, 0], [-1, 1], [0, -1], [1, -1]])
    np.testing.assert_allclose(m.source_score[0, 0], [0.1, 7.0])
    assert np.isnan(m.source_score[0, 1, 0]) and m.source_score[0, 1, 1] == 6.0
    assert m.sources == ("a", "b")
    np.testing.assert_array_equal(m.n_sources_per_candidate()[0, :4], [2, 1, 1, 1])


@pytest.mark.filterwarnings("error::RuntimeWarning")  # rrf_k=0 used to divide by 0
def test_rrf_ties_broken_by_item_id_and_rrf_k() -> None:
    """Equal fused scores keep a deterministic order (lower item id first); rrf_k=0 works
    without dividing by zero for absent sources."""
    mixer, _, _ = _mixer(rrf_k=0.0)
    m = mixer.mix(np.array([1], np.int32), 10)
    # seed 1: a -> [0 (rank 0), 2 (rank 1)], b -> [2 (rank 0)]: 2 scores 1/2 + 1, 0 scores 1
    assert _row(m) == [2, 0]
    np.testing.assert_allclose(m.score[0, :2], [1.5, 1.0])
    tie, _, _ = _mixer(weights={"a": 0.5})
    # seed 1, rrf_k=10: item 0 = 0.5/11, item 2 = 0.5/12 + 1/11
    m = tie.mix(np.array([1], np.int32), 10)
    assert _row(m) == [2, 0]
    zero_a, _, _ = _mixer(weights={"a": 0.0, "b": 0.0})
    m = zero_a.mix(np.array([0], np.int32), 10)
    assert _row(m) == [1, 2, 3, 4]  # all scores 0: item id order, nothing dropped
    assert (m.score[0, :4] == 0).all()


def test_sequential_fusion_order() -> None:
    """All of the first source's candidates in its order, then the second's new ones."""
    mixer, _, _ = _mixer(fusion="sequential")
    m = mixer.mix(np.array([0, 1], np.int32), 10)
    assert _row(m, 0) == [1, 2, 3, 4]
    assert _row(m, 1) == [0, 2]
    # item 3 keeps both reasons although it is placed by source a
    np.testing.assert_array_equal(m.source_rank[0, 2], [2, 0])
    reversed_mixer, _, _ = _mixer(fusion="sequential", sources=["b", "a"])
    assert _row(reversed_mixer.mix(np.array([0], np.int32), 10)) == [3, 4, 1, 2]


def test_sequential_scores_follow_the_order() -> None:
    """Sequential fusion scores the fused list's own reciprocal rank, 1 / (rrf_k + pos + 1):
    strictly falling along the row whatever the sources' ranks (the RRF score of item 3,
    proposed by both sources, would put it first), and ``weights`` do not apply."""
    for mixer, seed, row in [
        (_mixer(fusion="sequential")[0], 0, [1, 2, 3, 4]),
        (_mixer(fusion="sequential", rrf_k=0.0, weights={"b": 5.0})[0], 0, [1, 2, 3, 4]),
        (_mixer(fusion="sequential", sources=["b", "a"])[0], 0, [3, 4, 1, 2]),
        (_mixer(fusion="sequential")[0], 1, [0, 2]),
    ]:
        m = mixer.mix(np.array([seed], np.int32), 10)
        assert _row(m) == row
        n = len(row)
        s = m.score[0, :n]
        assert (np.diff(s) < 0).all(), s.tolist()
        rrf_k = mixer.mixes[0].rrf_k
        np.testing.assert_allclose(s, 1.0 / (rrf_k + np.arange(n) + 1.0), rtol=1e-6)
        assert np.isneginf(m.score[0, n:]).all()


def test_limits_cap_each_source() -> None:
    """A source's limit is the n it is asked for; the others get the mix width."""
    mixer, a, b = _mixer(limits={"a": 1})
    m = mixer.mix(np.array([0], np.int32), 10)
    assert a.asked == [1] and b.asked == [10]
    # a proposes only item 1 (1/11); b: 3 (1/11), 4 (1/12); the tie goes to the lower id
    assert _row(m) == [1, 3, 4]
    assert (m.source_rank[0, :, 0] <= 0).all()
    mixer, a, b = _mixer(limits={"a": 0, "b": 1})
    assert _row(mixer.mix(np.array([0], np.int32), 10)) == [3]


def test_width_cuts_the_fused_list() -> None:
    mixer, _, _ = _mixer()
    m = mixer.mix(np.array([0], np.int32), 2)
    assert m.item.shape == (1, 2) and m.source_rank.shape == (1, 2, 2)
    # each source is asked for 2 too: a -> [1, 2], b -> [3, 4]; 1 and 3 tie at 1/11
    assert _row(m) == [1, 3]


def test_filters_drop_candidates_from_every_source() -> None:
    """A filter removes the pair whichever source proposed it; other seeds are untouched."""
    mixer, _, _ = _mixer(filters=["ban"])
    m = mixer.mix(np.array([0, 1], np.int32), 10)
    assert 2 not in _row(m, 0)
    assert _row(m, 0) == [3, 1, 4]  # 1/13 + 1/11, 1/11, 1/12
    assert 2 in _row(m, 1)


def test_dedup_and_seed_dropped() -> None:
    """An item proposed by several sources appears once; the seed itself never appears."""
    mixer, _, _ = _mixer()
    m = mixer.mix(np.array([0, 1, 0], np.int32), 10)
    for r, seed in enumerate([0, 1, 0]):
        row = _row(m, r)
        assert len(row) == len(set(row)) and seed not in row
    np.testing.assert_array_equal(m.item[0], m.item[2])  # a repeated seed: same answer


def test_per_seed_mix_selection() -> None:
    """``seed_mix`` picks each seed's mix; unknown seeds use the default (index 0)."""
    a, b = Stub(A_TABLE), Stub(B_TABLE)
    mixes = [
        MixConfig(sources=("a", "b"), filters=()),
        MixConfig(sources=("b",), filters=()),
    ]
    mixer = Mixer({"a": a, "b": b}, mixes, np.array([1, 0, 0], np.int32), ("a", "b"), fallback="a")
    m = mixer.mix(np.array([0, 1, -1], np.int32), 10)
    assert _row(m, 0) == [3, 4]  # seed 0 uses mix 1: only b
    assert (m.source_rank[0, :2, 0] == -1).all()
    assert _row(m, 1) == [2, 0]  # seed 1: default mix
    np.testing.assert_array_equal(mixer.mix_of(np.array([0, 1, -1, 99])), [1, 0, 0, 0])
    with pytest.raises(ValueError, match="not fitted"):
        Mixer({"a": a}, mixes, np.zeros(3, np.int32), ("a", "b"), fallback="a")


def test_no_sources_gives_empty_rows() -> None:
    _, a, _ = _mixer()
    mixes = [MixConfig(sources=(), filters=())]
    mixer = Mixer({"a": a}, mixes, np.zeros(2, np.int32), (), fallback="a")
    m = mixer.mix(np.array([0, 1], np.int32), 4)
    assert (m.item == -1).all() and m.source_rank.shape == (2, 4, 0)


# -- through the engine --------------------------------------------------------------------

CAMERAS = "Electronics > Cameras"
PHONES_ID = "c002"  # "Electronics > Phones > Smartphones", overridden by id
OVERRIDES = {
    CAMERAS: {
        "sources": ["co_view", "popular"],
        "filters": [],
        "fusion": "sequential",
        "limits": {"co_view": 3},
    },
    PHONES_ID: {
        "sources": ["co_purchase", "popular"],
        "weights": {"popular": 0.5},
        "rrf_k": 5.0,
    },
    "Electronics > Phones": {"sources": ["co_view"]},  # less specific than the id: loses
}


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=600, seed=3))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def config() -> Config:
    return config_from_dict({"categories": OVERRIDES})


@pytest.fixture(scope="module")
def engine(ds: Dataset, config: Config) -> Engine:
    return Engine.build(ds, config)


@pytest.fixture(scope="module")
def default_engine(ds: Dataset) -> Engine:
    return Engine.build(ds)


def _seeds_in(ds: Dataset, test: object) -> NDArray[np.int32]:
    cat = ds.catalog.category
    paths = ds.catalog.category_path
    ids = ds.categories.ids(cat)
    keep = [
        i
        for i in range(ds.n_items)
        if test(str(ids[i]), str(paths[cat[i]]))  # type: ignore[operator]
    ]
    return np.array(keep, dtype=np.int32)


def _reason_sources(engine: Engine, seed: int) -> set[str]:
    assert engine.mixer.lists is not None
    _, src, _, _ = engine.mixer.lists.reasons(seed)
    return {engine.source_names[s] for s in src.tolist()}


def test_category_overrides_select_the_mix(ds: Dataset, engine: Engine) -> None:
    cameras = _seeds_in(ds, lambda _, p: p.startswith(CAMERAS + " > "))
    phones = _seeds_in(ds, lambda i, _: i == PHONES_ID)
    phone_acc = _seeds_in(ds, lambda i, p: p.startswith("Electronics > Phones") and i != PHONES_ID)
    others = _seeds_in(
        ds, lambda _, p: not p.startswith(("Electronics > Cameras", "Electronics > Ph"))
    )
    assert min(len(cameras), len(phones), len(phone_acc), len(others)) > 5
    default = config_from_dict({}).mix.model_dump(mode="json")

    info = engine.explain(ds.items.id_of(int(cameras[0])))
    assert info["mix"] == {
        **default,
        "category_override": CAMERAS,
        "sources": ["co_view", "popular"],
        "filters": [],
        "fusion": "sequential",
        "limits": {"co_view": 3},
    }
    info = engine.explain(ds.items.id_of(int(phones[0])))
    assert info["mix"] == {  # the id beats the path prefix; merged over [mix], not over it
        **default,
        "category_override": PHONES_ID,
        "sources": ["co_purchase", "popular"],
        "weights": {"popular": 0.5},
        "rrf_k": 5.0,
    }
    info = engine.explain(ds.items.id_of(int(phone_acc[0])))
    assert info["mix"]["category_override"] == "Electronics > Phones"
    assert info["mix"]["sources"] == ["co_view"]
    info = engine.explain(ds.items.id_of(int(others[0])))
    assert info["mix"] == {**default, "category_override": None}


def test_overridden_categories_use_only_their_sources(ds: Dataset, engine: Engine) -> None:
    """Every precomputed candidate of an overridden category comes from its sources only;
    other categories keep the default mix (and do use sources outside the overrides)."""
    groups = {
        "cameras": (_seeds_in(ds, lambda _, p: p.startswith(CAMERAS)), {"co_view", "popular"}),
        "phones": (_seeds_in(ds, lambda i, _: i == PHONES_ID), {"co_purchase", "popular"}),
        "phone_acc": (
            _seeds_in(ds, lambda i, p: p.startswith("Electronics > Phones") and i != PHONES_ID),
            {"co_view"},
        ),
    }
    for name, (seeds, allowed) in groups.items():
        used: set[str] = set()
        for s in seeds.tolist():
            got = _reason_sources(engine, s)
            assert got <= allowed, (name, s, got)
            used |= got
        assert used, name
    others = _seeds_in(
        ds, lambda _, p: not p.startswith(("Electronics > Cameras", "Electronics > Ph"))
    )
    used = set().union(*(_reason_sources(engine, s) for s in others.tolist()))
    assert {"co_purchase_only", "compatibility", "co_purchase"} <= used


def test_override_limits_weights_and_filters(ds: Dataset, engine: Engine) -> None:
    """limits cap co_view at 3 in Cameras (filters off: co-viewed cameras come through);
    the phones' weights and rrf_k give each precomputed candidate its exact fused score."""
    assert engine.mixer.lists is not None
    idx = {n: i for i, n in enumerate(engine.source_names)}
    cameras = _seeds_in(ds, lambda _, p: p.startswith(CAMERAS))
    ranks = []
    same_type = 0
    for s in cameras.tolist():
        _, src, _, rank = engine.mixer.lists.reasons(s)
        ranks += rank[src == idx["co_view"]].tolist()
        row = engine.mixer.lists.item[s]
        row = row[row >= 0]
        same_type += int((ds.catalog.product_type[row] == ds.catalog.product_type[s]).sum())
    assert ranks and max(ranks) <= 2
    assert same_type > 0  # no substitutes filter in this override
    w = {"co_purchase": 1.0, "popular": 0.5}
    for s in _seeds_in(ds, lambda i, _: i == PHONES_ID).tolist():
        pos, src, _, rank = engine.mixer.lists.reasons(s)
        fused = np.zeros(engine.mixer.lists.item.shape[1])
        for p, j, r in zip(pos.tolist(), src.tolist(), rank.tolist(), strict=True):
            fused[p] += w[engine.source_names[j]] / (5.0 + r + 1.0)
        n = int((engine.mixer.lists.item[s] >= 0).sum())
        np.testing.assert_allclose(engine.mixer.lists.score[s, :n], fused[:n], rtol=1e-5)


def test_served_scores_fall_along_every_list(ds: Dataset, engine: Engine) -> None:
    """Served scores never rise along a list, under sequential fusion (Cameras) as under RRF,
    fallback fills included; Engine.recommend returns the same falling scores."""
    cameras = _seeds_in(ds, lambda _, p: p.startswith(CAMERAS))
    seeds = np.arange(ds.n_items, dtype=np.int32)
    for k in (5, 20, 60):  # limits co_view to 3 in Cameras: most camera rows are filled
        m = recommend_dense(engine, seeds, k)
        s = np.where(m.item >= 0, m.score.astype(np.float64), np.finfo(np.float64).min)
        rising = np.diff(s, axis=1) > 0
        assert not rising.any(), np.argwhere(rising)[:5].tolist()
        assert np.isfinite(m.score[m.item >= 0]).all()
        filled = m.source_rank[:, :, engine.source_names.index("popular")] >= 0
        assert filled[cameras].any()
    for s_ in cameras[:20].tolist():
        scores = [r.score for r in engine.recommend(ds.items.id_of(s_), k=10)]
        assert len(scores) == 10 and scores == sorted(scores, reverse=True), scores


def test_every_candidate_keeps_every_source_reason(ds: Dataset, default_engine: Engine) -> None:
    """Cross-check: the mixer's per-source score and rank of each candidate are exactly the
    source's own ``recall_many`` output (the candidate's rank there), and absent sources are
    NaN / -1. With the default filters some proposals are dropped, never their reasons."""
    e = default_engine
    seeds = np.arange(0, ds.n_items, 37, dtype=np.int32)
    mixed = e.mixer.mix(seeds, 50)  # every source asked for its top 50 (no limits)
    checked = 0
    for j, name in enumerate(mixed.sources):
        own = e.mixer.sources[name].recall_many(seeds, 50)  # type: ignore[attr-defined]
        for r in range(len(seeds)):
            ranks = {int(i): p for p, i in enumerate(own.item[r].tolist()) if i >= 0}
            for p, item in enumerate(mixed.item[r].tolist()):
                if item < 0:
                    continue
                if item in ranks:
                    assert mixed.source_rank[r, p, j] == ranks[item]
                    assert mixed.source_score[r, p, j] == own.score[r, ranks[item]]
                    checked += 1
                else:
                    assert mixed.source_rank[r, p, j] == -1
                    assert np.isnan(mixed.source_score[r, p, j])
    assert checked > 200
    # and the engine's precomputed reasons are the same as the live mix
    assert e.mixer.lists is not None
    width = e.mixer.lists.item.shape[1]
    live = e.mixer.mix(seeds, width)
    pre = e.mixer.candidates(seeds, width)
    np.testing.assert_array_equal(live.item, pre.item)
    np.testing.assert_array_equal(live.source_rank, pre.source_rank)
    np.testing.assert_array_equal(live.source_score, pre.source_score)


def test_top_cache_answers_as_without_it(ds: Dataset, config: Config) -> None:
    """Mixer.cache_top: the same answers as computing them, for hits and misses in one batch
    and unknown seeds; copies handed out; bounded; emptied when availability is replaced."""
    import copy

    mixer = copy.copy(Engine.build(ds, config).mixer)  # its own cache, the fixture's untouched
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, ds.n_items, 40).astype(np.int32)
    seeds[3] = -1
    k = 60
    want = mixer.top(seeds, k)
    mixer.cache_top(1 << 30)
    first = mixer.top(seeds[:25], k)
    again = mixer.top(seeds, k)  # 25 hits, 15 misses
    for a, b in ((want, again), (mixer._top(seeds[:25], k), first)):
        assert a.sources == b.sources
        for f in ("item", "score", "source_score", "source_rank"):
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
    cache = mixer._top_cache
    assert cache is not None and cache.hits >= 25
    again.item[:] = -1  # a stage editing its candidates in place never edits the cache
    assert np.array_equal(mixer.top(seeds, k).item, want.item)
    # a new availability empties the cache: an item made unavailable is gone at once
    gone = int(want.item[0, 0])
    mixer.available = mixer.available.copy()
    mixer.available[gone] = False
    assert gone not in mixer.top(seeds[:1], k).item[0]
    # bounded: room for about three rows keeps at most that many
    row = sum(getattr(want, f)[0].nbytes for f in ("item", "score", "source_score", "source_rank"))
    mixer.cache_top(3 * row + 1)
    mixer.top(seeds, k)
    assert mixer._top_cache is not None and len(mixer._top_cache._rows) <= 3
    assert mixer._top_cache.nbytes <= 3 * row + 1
    mixer.cache_top(0)
    assert mixer._top_cache is None
