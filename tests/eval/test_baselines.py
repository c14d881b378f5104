"""Baselines: planted answers on hand-made data, and each beats random on synthetic data."""

import numpy as np
import pandas as pd
import pytest

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.errors import ConfigError
from recset.eval.backtest import System, evaluate_system
from recset.eval.baselines import (
    BASELINES,
    GRIDS,
    als_system,
    association_rules_system,
    baseline_systems,
    hide_bought,
    item_knn_system,
    popular_system,
    promoted_system,
    sar_personal_system,
    sar_similarity,
    sar_system,
    user_repeat_cooc_system,
    user_repeat_system,
    with_fill,
)
from recset.eval.splits import basket_queries, time_split
from recset.recall import PopularConfig, PopularRecall

EXPECTED = {
    "popular",
    "popular_in_category",
    "item_knn",
    "als",
    "association_rules",
    "sar",
    "sar_lift",
    "sar_personal",
    "user_repeat",
    "user_repeat+cooc",
    "promoted",
}


def _ds(
    baskets: list[tuple[str, list[str]]],
    extra_items: tuple[str, ...] = (),
    promotions: pd.DataFrame | None = None,
) -> Dataset:
    """One order per entry (user, items), one second apart; ``extra_items`` never bought;
    ``promotions``: a promotion calendar."""
    rows, t = [], 0
    for o, (user, items) in enumerate(baskets):
        for it in items:
            t += 1
            rows.append(
                {
                    "user_id": user,
                    "item_id": it,
                    "event": "purchase",
                    "timestamp": t,
                    "order_id": f"o{o}",
                }
            )
    items = sorted({r["item_id"] for r in rows} | set(extra_items))
    cat = pd.DataFrame({"item_id": items, "category_id": ["c"] * len(items)})
    return Dataset.from_frames(cat, pd.DataFrame(rows), promotions=promotions)


def _ids(ds: Dataset, row: np.ndarray) -> list[str]:
    return [ds.items.id_of(int(i)) for i in row if i >= 0]


def _ask(system: System, ds: Dataset, seed: str, user: str | None = None, k: int = 3) -> list[str]:
    items, _ = system.recommend(
        np.array([ds.items.index_one(seed)], np.int32),
        np.array([-1 if user is None else ds.users.index_one(user)], np.int32),
        k,
    )
    assert items.shape == (1, k) and items.dtype == np.int32
    return _ids(ds, items[0])


def _check_rows(items: np.ndarray, seeds: np.ndarray) -> None:
    """Seed never returned, rows deduplicated, real items first and -1 padding after."""
    for row, seed in zip(items, seeds, strict=True):
        real = row[row >= 0]
        assert seed not in real
        assert len(np.unique(real)) == len(real)
        assert (row[len(real) :] == -1).all()


def _blocks() -> Dataset:
    """Two item blocks; every user buys (most of) one block, in several baskets."""
    rng = np.random.default_rng(0)
    baskets = []
    for u in range(40):
        block = "ab"[u % 2]
        items = [f"{block}{i}" for i in range(5)]
        for _ in range(3):
            baskets.append((f"u{u}", list(rng.choice(items, size=3, replace=False))))
    # a calendar for the "promoted" baseline: a0, b1 and never on offer at time 0..1000
    cal = pd.DataFrame({"item_id": ["a0", "b1", "never"], "start": 0, "end": 1000})
    return _ds(baskets, extra_items=("never",), promotions=cal)


# -- registry ----------------------------------------------------------------------------------
def test_registry_names_and_unknown_name() -> None:
    assert set(BASELINES) == EXPECTED
    assert set(GRIDS) == EXPECTED and all(len(g) >= 1 for g in GRIDS.values())
    ds = _ds([("u", ["a", "b"]), ("v", ["a", "c"])])
    systems = baseline_systems(ds, ["popular", "sar_lift"])
    assert [s.name for s in systems] == ["popular", "sar_lift"]
    assert all(s.kind == "baseline" for s in systems)
    with pytest.raises(ConfigError, match="nope"):
        baseline_systems(ds, ["popular", "nope"])


def test_bad_parameters_raise() -> None:
    ds = _ds([("u", ["a", "b"])])
    with pytest.raises(ConfigError, match="metric"):
        association_rules_system(ds, metric="support")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="similarity"):
        sar_system(ds, similarity="cosine")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="min_support"):
        association_rules_system(ds, min_support=0)
    with pytest.raises(ConfigError, match="unit"):
        item_knn_system(ds, unit="session")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="seed_weight"):
        sar_personal_system(ds, seed_weight=-1)


def test_every_baseline_rows_on_hand_data() -> None:
    ds = _blocks()
    seeds = np.arange(ds.n_items, dtype=np.int32)
    users = np.resize(np.arange(ds.n_users, dtype=np.int32), len(seeds))
    for name, make in BASELINES.items():
        items, own = make(ds).recommend(seeds, users, 6)
        assert items.shape == (len(seeds), 6) and own.shape == (len(seeds),), name
        _check_rows(items, seeds)
        assert (own == ((items >= 0).sum(axis=1) >= 6)).all() or name.startswith("popular")
        # k above the precomputed list length still gives well-formed rows
        items, _ = make(ds).recommend(seeds[:3], users[:3], 60)
        assert items.shape == (3, 60)
        _check_rows(items, seeds[:3])


# -- planted answers ----------------------------------------------------------------------------
def test_promoted_lists_the_items_on_offer_at_the_query_time() -> None:
    # popularity: b 3, a 2, c 1 (x never bought); on offer: a, b, x on [0, 100), c on
    # [100, 200), nothing from 200 on
    cal = pd.DataFrame(
        {
            "item_id": ["a", "b", "x", "c"],
            "start": [0, 0, 0, 100],
            "end": [100, 100, 100, 200],
            "reach": [0.2, 1.0, 1.0, 1.0],
        }
    )
    ds = _ds(
        [("u", ["a", "b"]), ("v", ["a", "b", "c"]), ("w", ["b"])],
        extra_items=("x",),
        promotions=cal,
    )
    system = promoted_system(ds)
    assert system.timed and not system.personal
    seeds = np.array([ds.items.index_one(s) for s in ("c", "b", "a", "a", "a")], np.int32)
    when = np.array([50, 50, 150, 99_999, -5])
    items, own = system.recommend(seeds, np.full(5, -1, np.int32), 3, when)
    assert [_ids(ds, r) for r in items] == [["b", "a", "x"], ["a", "x"], ["c"], [], []]
    assert own.tolist() == [True, False, False, False, False]
    # filled like every baseline: the fill keeps the timed call
    fill = PopularRecall(PopularConfig(scope="global", half_life_days=0)).fit(ds)
    filled = with_fill(system, fill)
    assert filled.timed
    items, _ = filled.recommend(seeds[2:3], np.full(1, -1, np.int32), 3, when[2:3])
    assert _ids(ds, items[0]) == ["c", "b"]  # then the popular fill (x was never bought)
    # without a calendar: a clear error
    with pytest.raises(ConfigError, match="'promoted' needs a promotion calendar"):
        promoted_system(_ds([("u", ["a", "b"])]))


def test_popular_excludes_seed() -> None:
    ds = _ds([("u", ["a", "b"]), ("v", ["a", "c"]), ("w", ["a", "b"])])
    assert _ask(popular_system(ds), ds, "a") == ["b", "c"]
    assert _ask(popular_system(ds), ds, "b") == ["a", "c"]


def test_association_rules_rank_by_confidence_and_lift() -> None:
    # a with b in 3 baskets, a with c in 2, a alone in 1: P(b|a) = 3/6 > P(c|a) = 2/6
    ds = _ds([("u", ["a", "b"])] * 3 + [("u", ["a", "c"])] * 2 + [("u", ["a"]), ("u", ["d"])])
    assert _ask(association_rules_system(ds), ds, "a") == ["b", "c"]
    # support below 2 is dropped
    ds2 = _ds([("u", ["a", "b"]), ("u", ["a", "c"]), ("u", ["a", "c"])])
    assert _ask(association_rules_system(ds2), ds2, "a") == ["c"]
    # b is common (in 8 of 12 baskets), c rare (2): b wins on confidence, c on lift
    ds3 = _ds(
        [("u", ["a", "b"])] * 3
        + [("u", ["a", "c"])] * 2
        + [("u", ["b", "d"])] * 5
        + [("u", ["e", "f"])] * 2
    )
    # conf(a->b) = 3/5, lift = 0.6 / (8/12) = 0.9; conf(a->c) = 2/5, lift = 0.4 / (2/12) = 2.4
    assert _ask(association_rules_system(ds3), ds3, "a") == ["b", "c"]
    assert _ask(association_rules_system(ds3, metric="lift"), ds3, "a") == ["c", "b"]
    # equal confidence: the higher lift first (x is rarer than y)
    ds4 = _ds([("u", ["s", "x"])] * 2 + [("u", ["s", "y"])] * 2 + [("u", ["y", "z"])] * 3)
    assert _ask(association_rules_system(ds4), ds4, "s") == ["x", "y"]
    # min_confidence cuts weak rules
    assert _ask(association_rules_system(ds3, min_confidence=0.5), ds3, "a") == ["b"]


def test_sar_jaccard_and_lift_values() -> None:
    # users: u1 {a,b}, u2 {a,b}, u3 {a,c}, u4 {c}: C_aa=3, C_bb=2, C_cc=2, C_ab=2, C_ac=1
    ds = _ds([("u1", ["a", "b"]), ("u2", ["a", "b"]), ("u3", ["a", "c"]), ("u4", ["c"])])
    a, b, c = (ds.items.index_one(x) for x in "abc")
    jac = sar_similarity(ds, "jaccard").toarray()
    assert jac[a, b] == pytest.approx(2 / (3 + 2 - 2)) and jac[b, a] == jac[a, b]
    assert jac[a, c] == pytest.approx(1 / (3 + 2 - 1))
    assert jac[b, c] == 0 and np.diag(jac).sum() == 0
    lift = sar_similarity(ds, "lift").toarray()
    assert lift[a, b] == pytest.approx(2 / (3 * 2))
    assert lift[a, c] == pytest.approx(1 / (3 * 2))
    # repeated purchases by one user count once (binary user x item)
    ds2 = _ds([("u1", ["a", "b"]), ("u1", ["a", "b"]), ("u2", ["a"])])
    assert sar_similarity(ds2, "jaccard").toarray()[0, 1] == pytest.approx(1 / (2 + 1 - 1))
    assert _ask(sar_system(ds), ds, "a") == ["b", "c"]
    assert _ask(sar_system(ds, similarity="lift"), ds, "b") == ["a"]
    # threshold drops pairs seen by fewer users
    assert _ask(sar_system(ds, threshold=2), ds, "a") == ["b"]


def test_user_repeat_most_bought_first_ties_by_recency() -> None:
    ds = _ds([("u", ["x", "y"]), ("u", ["x", "z"]), ("u", ["y", "w"]), ("u", ["x"]), ("v", ["s"])])
    # x bought 3 times, y twice, then w (last bought t=6) and z (t=4) once each
    assert _ask(user_repeat_system(ds), ds, "s", "u", k=4) == ["x", "y", "w", "z"]
    # the seed itself is excluded
    assert _ask(user_repeat_system(ds), ds, "x", "u") == ["y", "w", "z"]
    # a user without history (or unknown) gets nothing
    assert _ask(user_repeat_system(ds), ds, "x", None) == []
    assert _ask(user_repeat_system(ds), ds, "x", "v") == ["s"]


def test_user_repeat_cooc_breaks_ties_by_cooccurrence_then_fills() -> None:
    ds = _ds(
        [("u", ["x"]), ("u", ["x"]), ("u", ["y"]), ("u", ["y"])]  # tie: y more recent
        + [("v", ["s", "x", "t"]), ("v", ["s", "x", "t"]), ("w", ["s", "t"])]
    )
    # plain repeat: y first (most recent)
    assert _ask(user_repeat_system(ds), ds, "s", "u") == ["y", "x"]
    # with seed s: x co-occurs with s in 2 baskets, y in none; then s's co-purchases fill
    # (t: 3 baskets with s; x already listed)
    assert _ask(user_repeat_cooc_system(ds), ds, "s", "u", k=4) == ["x", "y", "t"]
    # no history: the seed's co-purchases by count
    assert _ask(user_repeat_cooc_system(ds), ds, "s", None) == ["t", "x"]
    # the count still dominates co-occurrence
    ds2 = _ds([("u", ["y"])] * 3 + [("u", ["x"])] + [("v", ["s", "x"])] * 2)
    assert _ask(user_repeat_cooc_system(ds2), ds2, "s", "u") == ["y", "x"]


def test_item_knn_and_als_find_the_block() -> None:
    ds = _blocks()
    never = ds.items.index_one("never")
    for system in (item_knn_system(ds), als_system(ds, factors=8), als_system(ds)):
        for seed in ("a0", "b3"):
            got = _ask(system, ds, seed, k=3)
            assert len(got) == 3 and all(g[0] == seed[0] for g in got), (system.name, got)
        items, own = system.recommend(np.array([never], np.int32), np.array([-1], np.int32), 3)
        assert (items == -1).all() and not own[0]
        everything, _ = system.recommend(
            np.arange(ds.n_items, dtype=np.int32), np.full(ds.n_items, -1, np.int32), 20
        )
        assert never not in everything


def test_item_knn_is_cosine_on_the_0_1_matrix_ties_by_popularity() -> None:
    # users as vectors: a = (u1, u2, u3), b = (u1, u4), c = (u2, u3), d = (u4); u1 buys a
    # three times, which must not count (0/1): cos(a, b) = 1 / sqrt(3 * 2) = 0.41,
    # cos(a, c) = 2 / sqrt(3 * 2) = 0.82 (on raw counts a, b would win: 3 / sqrt(11 * 2))
    ds = _ds(
        [("u1", ["a", "b"]), ("u1", ["a"]), ("u1", ["a"]), ("u2", ["a", "c"])]
        + [("u3", ["a", "c"]), ("u4", ["b", "d"])]
    )
    assert _ask(item_knn_system(ds), ds, "a") == ["c", "b"]
    # cos(b, d) = 1 / sqrt(2) > cos(b, a) = 0.41; c shares no user with b
    assert _ask(item_knn_system(ds), ds, "b") == ["d", "a"]
    # equal cosines: the more bought item first (z: 2 purchases, y: 1), not the lower id
    ds2 = _ds([("u5", ["x", "y"]), ("u6", ["x", "z"]), ("u6", ["z"])])
    assert _ask(item_knn_system(ds2), ds2, "x") == ["z", "y"]
    # per basket: baskets {x, y}, {x, z}, {z}: cos(x, y) = 1 / sqrt(2) > cos(x, z) = 1 / 2
    assert _ask(item_knn_system(ds2, unit="basket"), ds2, "x") == ["y", "z"]


def test_sar_personal_hand_computed() -> None:
    # users u1 {a,b}, u2 {a,b}, u3 {a,c}, u4 {c,d}, u5 {d}; Jaccard: S_ab = 2/3,
    # S_ac = 1/4, S_cd = 1/3, every other pair 0
    ds = _ds(
        [("u1", ["a", "b"]), ("u2", ["a", "b"]), ("u3", ["a", "c"]), ("u4", ["c", "d"])]
        + [("u5", ["d"])]
    )
    plain = sar_personal_system(ds, half_life_days=0, seed_weight=0)
    # u4's affinity c = d = 1: c scores S_dc = 1/3, d scores S_cd = 1/3 (tie, equal
    # popularity: lower id), a scores S_ca = 1/4; b nothing; the seed a is never listed
    assert _ask(plain, ds, "b", "u4", k=4) == ["c", "d", "a"]
    assert _ask(plain, ds, "a", "u4", k=4) == ["c", "d"]
    # with the seed: b = S_ab = 2/3, c = 1/3 + 1/4, d = 1/3
    seeded = sar_personal_system(ds, half_life_days=0, seed_weight=1)
    assert _ask(seeded, ds, "a", "u4", k=4) == ["b", "c", "d"]
    # the user's own purchases hidden: only b is new to u4
    assert _ask(hide_bought(seeded, ds), ds, "a", "u4", k=4) == ["b"]
    # no user: the seed's similar items alone
    assert _ask(seeded, ds, "a", None, k=4) == ["b", "c"]


def test_fill_takes_the_fallback_order_without_repeats() -> None:
    # one rule a -> b (support 2); popularity: b 4, c 3, a 2, d 2 (tie: lower id), e 1
    ds = _ds(
        [("u", ["a", "b"])] * 2 + [("v", ["b", "c"])] * 2 + [("w", ["c", "d"]), ("w", ["d", "e"])]
    )
    rules = association_rules_system(ds, min_support=2)
    assert _ask(rules, ds, "a", k=4) == ["b"]
    fill = PopularRecall(PopularConfig(scope="global", half_life_days=0)).fit(ds)
    filled = with_fill(rules, fill)
    assert _ask(filled, ds, "a", k=4) == ["b", "c", "d", "e"]
    items, own = filled.recommend(np.array([ds.items.index_one("a")], np.int32), np.array([-1]), 4)
    assert not own[0]  # coverage counts the baseline's own items, before the fill
    # a seed without rules: the fallback list, seed excluded
    assert _ask(filled, ds, "e", k=3) == ["b", "c", "a"]


def test_hide_bought_removes_the_users_items_and_keeps_k() -> None:
    ds = _ds([("u", ["a", "b"]), ("u", ["c"]), ("v", ["a", "b", "c", "d", "e"])])
    pop = popular_system(ds, half_life_days=0)
    assert _ask(pop, ds, "e", "u", k=2) == ["a", "b"]
    hidden = hide_bought(pop, ds)
    assert hidden.personal and hidden.name == "popular/new"
    assert _ask(hidden, ds, "e", "u", k=2) == ["d"]
    # an unknown user hides nothing
    assert _ask(hidden, ds, "e", None, k=2) == ["a", "b"]


def test_tuning_uses_the_validation_window_and_records_the_grid() -> None:
    from recset.eval import tune_baselines, validation_split

    syn = generate(SyntheticConfig(n_items=400, seed=3))
    train = time_split(Dataset.from_frames(syn.catalog, syn.events)).train
    grids = {"association_rules": [{"min_support": 10_000}, {"min_support": 1}]}
    tuned = tune_baselines(train, ["association_rules"], grids=grids, max_queries=500)
    t = tuned["association_rules"]
    # no rule has 10,000 baskets: that list is empty, the planted co-purchases win
    assert t.params == {"min_support": 1}
    assert [p for p, _ in t.tried] == grids["association_rules"]
    assert t.tried[0][1] == 0.0 < t.score == t.tried[1][1]
    assert t.to_json()["params"] == {"min_support": 1}
    # the window is cut from the training part: it ends where train ends
    val = validation_split(train, "time")
    assert val.test.time_range[1] <= train.time_range[1]
    systems = baseline_systems(train, ["association_rules"], params={"association_rules": t.params})
    assert systems[0].params == {"min_support": 1}


# -- synthetic: better than random -----------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_split():  # noqa: ANN201
    syn = generate(SyntheticConfig(n_items=1200, seed=5))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    sp = time_split(ds)
    return sp, basket_queries(sp.test)


@pytest.mark.parametrize("name", sorted(EXPECTED - {"promoted"}))  # no calendar here
def test_every_baseline_beats_random(synthetic_split, name: str) -> None:  # noqa: ANN001
    sp, q = synthetic_split
    system = BASELINES[name](sp.train)
    m = evaluate_system(system, sp, q)["item"]
    # random: 10 distinct items out of n_items - 1 (not the seed); a query hits when one of
    # its targets is drawn: 1 - C(n - 1 - t, 10) / C(n - 1, 10) <= 1 - (1 - 10 / (n - 1))^t
    n = sp.train.n_items
    t = q.targets.sizes()
    random_hit10 = float(np.mean(1 - (1 - 10 / (n - 1)) ** t))
    assert m["hit@10"] > 2 * random_hit10, (name, m["hit@10"], random_hit10)
    items, _ = system.recommend(q.seed[:500], q.user[:500], 20)
    _check_rows(items, q.seed[:500])


# -- co-occurrence in row blocks --------------------------------------------------------------
@pytest.fixture(scope="module")
def small_synthetic() -> Dataset:
    syn = generate(SyntheticConfig(n_items=300, n_users=120, seed=3))
    return Dataset.from_frames(syn.catalog, syn.events)


def test_cooccurrence_blocks_equal_the_whole_product(small_synthetic, monkeypatch) -> None:  # noqa: ANN001
    from recset.eval import baselines as bl

    m = small_synthetic.interactions("purchase", binary=True).tocsr()
    dense = (m.T @ m).toarray().astype(np.float64)
    diag = dense.diagonal().copy()
    np.fill_diagonal(dense, 0.0)
    monkeypatch.setattr(bl, "COOC_BLOCK_ENTRIES", 500)
    for keep in (False, True):
        blocks = bl.CoBlocks(m, keep=keep)
        parts = list(blocks)
        assert len(parts) > 5  # really cut into blocks
        assert [lo for lo, _ in parts] == sorted({lo for lo, _ in parts})
        assert sum(b.shape[0] for _, b in parts) == m.shape[1]
        np.testing.assert_array_equal(blocks.whole().toarray(), dense)
        np.testing.assert_array_equal(blocks.d, diag)
        for lo, b in parts:
            assert b.dtype == np.float64 and b.has_sorted_indices
            assert not (b.indices == np.repeat(np.arange(b.shape[0]), np.diff(b.indptr)) + lo).any()


BLOCKED_CASES = [
    ("sar", {}),
    ("sar", {"threshold": 2}),
    ("sar_lift", {"threshold": 2}),
    ("sar_personal", {"similarity": "jaccard", "threshold": 1, "half_life_days": 0.0}),
    ("sar_personal", {"similarity": "lift", "threshold": 3, "half_life_days": 30.0}),
    ("association_rules", {"metric": "confidence", "min_support": 1}),
    ("association_rules", {"metric": "lift", "min_support": 2}),
    ("item_knn", {"unit": "basket"}),
    ("user_repeat+cooc", {}),
]


@pytest.mark.parametrize(("name", "params"), BLOCKED_CASES)
def test_blocked_baselines_equal_unblocked(small_synthetic, monkeypatch, name, params) -> None:  # noqa: ANN001
    """Every co-occurrence baseline gives the same lists with its matrix cut into many row
    blocks, kept (the tuning grid's shared copy) or recomputed, as with one block."""
    from recset.eval import baselines as bl

    ds = small_synthetic
    seeds = np.repeat(np.arange(ds.n_items, dtype=np.int32), 2)
    users = np.resize(np.arange(ds.n_users, dtype=np.int32), len(seeds))
    users[::7] = -1

    def lists() -> np.ndarray:
        return BASELINES[name](ds, **params).recommend(seeds, users, 20)[0]

    monkeypatch.setattr(bl, "COOC_BLOCK_ENTRIES", 10**12)
    whole = lists()
    monkeypatch.setattr(bl, "COOC_BLOCK_ENTRIES", 500)
    assert len(bl.CoBlocks(ds.interactions("purchase", binary=True))._blocks) > 5
    blocked = lists()
    with bl.shared_cooccurrence():
        shared = lists()
        shared_again = lists()
    assert (whole >= 0).sum() > len(seeds)  # the lists are not empty
    np.testing.assert_array_equal(blocked, whole)
    np.testing.assert_array_equal(shared, whole)
    np.testing.assert_array_equal(shared_again, whole)
