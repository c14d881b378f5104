"""Discovery: the history features, the discovery candidates, mode="discover" end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recset.cli import main
from recset.config import config_from_dict
from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.errors import ConfigError, DataError
from recset.ranking import (
    FeatureSpace,
    Ranker,
    _candidates,
    fit_features,
    ranking_candidates,
    train_ranker,
)
from recset.ranking._candidates import discovery_candidates
from recset.ranking._discover_features import popular_candidates
from recset.testing import recommend_dense


def _ds(baskets: list[tuple[str, list[str], int]]) -> Dataset:
    """One order per entry (user, items, day)."""
    rows = []
    for o, (user, items, day) in enumerate(baskets):
        for j, it in enumerate(items):
            rows.append(
                {
                    "user_id": user,
                    "item_id": it,
                    "event": "purchase",
                    "timestamp": day * 86400 + j,
                    "order_id": f"o{o}",
                }
            )
    items = sorted({r["item_id"] for r in rows})
    cat = pd.DataFrame({"item_id": items, "category_id": ["c"] * len(items)})
    return Dataset.from_frames(cat, pd.DataFrame(rows))


def _query(
    ds: Dataset,
    feats: FeatureSpace,
    seed: str | None,
    user: str | None,
    cands: list[str],
    when: int | None = None,
) -> np.ndarray:
    """The feature rows of one (seed, user) query over ``cands``, asked at ``when``."""
    from recset.pipeline import Candidates

    n = len(cands)
    mixed = Candidates(
        np.array([[ds.items.index_one(c) for c in cands]], np.int32),
        np.zeros((1, n), np.float32),
        np.full((1, n, 1), np.nan, np.float32),
        np.full((1, n, 1), -1, np.int32),
        ("x",),
    )
    s = -1 if seed is None else ds.items.index_one(seed)
    u = -1 if user is None else ds.users.index_one(user)
    at = None if when is None else np.array([when], np.int64)
    return feats.transform(np.array([s], np.int32), np.array([u], np.int32), mixed, at)


def _column(ds: Dataset, name: str, seed: str, user: str | None, cands: list[str]) -> list[float]:
    feats = FeatureSpace.fit(ds, ("x",))
    return _query(ds, feats, seed, user, cands)[:, feats.names.index(name)].tolist()


def test_hist_copurchase_hand_computed() -> None:
    # baskets: {a,b} x2, {a,c}, {b,c}, {d}; user u buys a (twice) and d; P(b|a) = 2/3,
    # P(c|a) = 1/3, d was never bought with anything: mean over u's 2 items
    ds = _ds(
        [("v", ["a", "b"], 0), ("v", ["a", "b"], 1), ("w", ["a", "c"], 2)]
        + [("w", ["b", "c"], 3), ("u", ["a"], 4), ("u", ["a", "d"], 5)]
    )
    # u's baskets {a}, {a,d} also count: a is in 5 baskets, with b in 2, c in 1, d in 1
    got = _column(ds, "hist_copurchase", "c", "u", ["b", "c", "d"])
    # h = a: P(b|a) = 2/5, P(c|a) = 1/5, P(d|a) = 1/5; h = d: P(a|d) = 1, nothing else
    assert got == pytest.approx([2 / 5 / 2, 1 / 5 / 2, 1 / 5 / 2])
    # an unknown user: NaN
    assert np.isnan(_column(ds, "hist_copurchase", "c", None, ["b"])).all()


def test_cand_first_share_hand_computed() -> None:
    # days 0..10: the last fifth starts at day 8; x: u bought it on day 1 and 9 (not new),
    # v first on day 9 (new), w only on day 2 (not recent): 1 of 2 recent buyers is new
    ds = _ds(
        [("u", ["x"], 0), ("u", ["x"], 1), ("w", ["x", "y"], 2), ("u", ["x"], 9)]
        + [("v", ["x", "y"], 9), ("v", ["y"], 10)]
    )
    assert _column(ds, "cand_first_share", "y", "u", ["x", "y"]) == pytest.approx([0.5, 1.0])


def test_popular_candidates_hand_computed() -> None:
    # popularity order 3, 1, 4, 0 (2 unavailable); user 0 bought 3, user 1 nothing
    pop = np.array([1.0, 5.0, 9.0, 7.0, 5.0])
    available = np.array([True, True, False, True, True])

    def bought(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return (users[:, None] == 0) & (items == 3)

    got = popular_candidates(pop, bought, np.array([0, 1, -1]), available, 3)
    assert got.tolist() == [[1, 4, 0], [3, 1, 4], [3, 1, 4]]
    # fewer available items than asked: padded
    assert popular_candidates(pop, bought, np.array([0]), available, 6).tolist() == [
        [1, 4, 0, -1, -1, -1]
    ]


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=300, seed=4))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def trained(ds: Dataset) -> tuple[Engine, Ranker]:
    engine = Engine.build(ds)
    cfg = config_from_dict({"ranker": {"max_queries": 1000, "n_estimators": 20, "discover": True}})
    ranker = train_ranker(
        ds, cfg, mixer=engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32)
    )
    return engine.with_ranker(ranker), ranker


def test_discovery_candidates_are_new_and_reach_beyond_the_mix(
    ds: Dataset, trained: tuple[Engine, Ranker], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, ranker = trained
    feats = ranker.features
    seeds = np.arange(30, dtype=np.int32)
    users = (np.arange(30) * 7 % ds.n_users).astype(np.int32)
    mixed = engine.mixer.top(seeds, 40)
    monkeypatch.setattr(_candidates, "POPULAR_CANDIDATES", 5)
    got = discovery_candidates(mixed, feats, seeds, users, engine.mixer.available, 20)
    real = got.item >= 0
    assert not (feats.bought(users, got.item) & real).any()
    assert not (got.item == seeds[:, None]).any()
    # real items first, distinct
    assert (np.sort(~real, axis=1) == ~real).all()
    for row in got.item:
        r = row[row >= 0]
        assert len(np.unique(r)) == len(r)
    # the history candidates are there, beyond the mix's own list
    beyond = real & ~(got.item[:, :, None] == mixed.item[:, None, :]).any(axis=2)
    assert beyond.any()
    # the user's most popular new items are there
    pop = feats.feature("cand_pop").item_pop_  # type: ignore[union-attr]
    top = popular_candidates(pop, feats.bought, users, engine.mixer.available, 5)
    assert all(set(t[t >= 0]) - {s} <= set(g) for t, g, s in zip(top, got.item, seeds, strict=True))
    # without history and popular candidates: only the mix's new items
    monkeypatch.setattr(_candidates, "POPULAR_CANDIDATES", 0)
    only = discovery_candidates(mixed, feats, seeds, users, engine.mixer.available, 0)
    assert not (
        (only.item >= 0) & ~(only.item[:, :, None] == mixed.item[:, None, :]).any(axis=2)
    ).any()


def test_discover_mode_serves_only_new_items(ds: Dataset, trained: tuple[Engine, Ranker]) -> None:
    engine, ranker = trained
    assert ranker.metrics["discover"]["train_queries"] > 0
    seeds = np.arange(50, dtype=np.int32)
    users = (np.arange(50) % ds.n_users).astype(np.int32)
    plain = recommend_dense(engine, seeds, 10, users=users)
    new = recommend_dense(engine.for_mode("discover"), seeds, 10, users=users)
    assert (new.item >= 0).all()
    assert not ranker.features.bought(users, new.item).any()
    assert ranker.features.bought(users, plain.item).any()  # complete mode repeats
    # the host API: external ids, same lists
    seed_id, user_id = ds.items.id_of(3), ds.users.id_of(int(users[3]))
    recs = engine.recommend(seed_id, user_id, k=10, mode="discover")
    assert [r.item_id for r in recs] == [ds.items.id_of(int(i)) for i in new.item[3]]
    batch = engine.recommend_batch([seed_id], [user_id], k=10, mode="discover")
    assert [r.item_id for r in batch[0]] == [r.item_id for r in recs]
    basket = engine.recommend_basket([seed_id, ds.items.id_of(4)], user_id, k=5, mode="discover")
    bought = set(ranker.features.user_top[int(users[3])].tolist())
    assert len(basket) == 5 and not {ds.items.index_one(r.item_id) for r in basket} & bought
    # the default is today's behaviour
    assert [r.item_id for r in engine.recommend(seed_id, user_id, k=10)] == [
        ds.items.id_of(int(i)) for i in plain.item[3]
    ]
    with pytest.raises(ConfigError, match="mode"):
        engine.recommend(seed_id, user_id, mode="surprise")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="discover"):
        Engine.build(ds).recommend(seed_id, user_id, mode="discover")


def test_discovery_model_round_trips(trained: tuple[Engine, Ranker], tmp_path: Path) -> None:
    _, ranker = trained
    ranker.save(tmp_path / "r")
    again = Ranker.load(tmp_path / "r")
    X = np.random.default_rng(0).random((9, len(ranker.feature_names))).astype(np.float32)
    assert np.allclose(again.score_new(X), ranker.score_new(X))
    (tmp_path / "r" / "discover.txt").unlink()
    with pytest.raises(ConfigError, match="discover.txt"):
        Ranker.load(tmp_path / "r")


def test_cli_recommend_mode_discover(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, store = tmp_path / "data", tmp_path / "store"
    main(["generate", "--items", "200", "--users", "60", "--events", "4000", "--out", str(data)])
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ranker]\nmax_queries = 800\nn_estimators = 10\ndiscover = true\n")
    args = ["--data", str(data), "--store", str(store), "--config", str(cfg)]
    main(["build", *args])
    # served whatever the validation gate says: this test is about discover mode
    main(["train-ranker", *args, "--activate-anyway"])
    events = pd.read_parquet(data / "events.parquet")
    user = events["user_id"].iloc[0]
    seed = events["item_id"].iloc[0]
    capsys.readouterr()
    main(["recommend", "--store", str(store), seed, "--user", user, "--mode", "discover", "--json"])
    recs = json.loads(capsys.readouterr().out.strip())["recommendations"]
    mine = set(events.loc[(events["user_id"] == user) & (events["event"] == "purchase"), "item_id"])
    assert len(recs) == 10 and not {r["item_id"] for r in recs} & mine
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--store", str(store), seed, "--mode", "nope"])
    assert exc.value.code == 2


def test_fit_features_keep_the_history_candidates(ds: Dataset) -> None:
    engine = Engine.build(ds)
    feats = fit_features(ds, engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32))
    hist = feats.feature("hist_copurchase")
    assert hist is not None and hist.new_top_.shape == (ds.n_users, 50)
    assert feats.feature("no_such_feature") is None


def _sar_space(monkeypatch: pytest.MonkeyPatch) -> tuple[Dataset, FeatureSpace]:
    """Users' item sets: u1 {a, b}, u2 {a, b, c}, u3 {c, d}, u {a, d}: user co-occurrence
    ab 2, ac 1, ad 1, bc 1, cd 1, bd 0; bought by a 3 users, b, c, d 2 each."""
    from recset.ranking import _discover_features

    monkeypatch.setattr(_discover_features, "SAR_MIN_SUPPORT", 1)
    ds = _ds(
        [("u1", ["a", "b"], 0), ("u2", ["a", "b", "c"], 1), ("u3", ["c", "d"], 2)]
        + [("u", ["a"], 3), ("u", ["d"], 4)]
    )
    return ds, FeatureSpace.fit(ds, ("x",), extra_features=("hist_sar", "seed_sar"))


def test_sar_features_are_opt_in_and_hand_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    from recset.pipeline import Candidates
    from recset.ranking import BASE_FEATURES

    assert "hist_sar" not in BASE_FEATURES and "seed_sar" not in BASE_FEATURES
    ds, feats = _sar_space(monkeypatch)
    cands = ["b", "c", "d"]
    mixed = Candidates(
        np.array([[ds.items.index_one(c) for c in cands]] * 2, np.int32),
        np.zeros((2, 3), np.float32),
        np.full((2, 3, 1), np.nan, np.float32),
        np.full((2, 3, 1), -1, np.int32),
        ("x",),
    )
    seeds = np.array([ds.items.index_one("a"), ds.items.index_one("b")], np.int32)
    users = np.array([ds.users.index_one("u"), -1], np.int32)
    X = feats.transform(seeds, users, mixed)
    hist = X[:, feats.names.index("hist_sar")]
    seed = X[:, feats.names.index("seed_sar")]
    # cosine: S[a,b] = 2/sqrt(6), S[a,c] = S[a,d] = 1/sqrt(6), S[b,c] = S[c,d] = 1/2
    r6 = 1 / np.sqrt(6)
    # u bought a and d: b 2/sqrt(6), c 1/sqrt(6) + 1/2 (u's best), d S[a,d] = 1/sqrt(6)
    best = r6 + 0.5
    assert hist[:3] == pytest.approx([2 * r6 / best, 1.0, r6 / best], rel=1e-5)
    assert np.isnan(hist[3:]).all()  # an unknown user
    assert seed[:3] == pytest.approx([2 * r6, r6, r6], rel=1e-5)
    assert seed[3:] == pytest.approx([0.0, 0.5, 0.0], rel=1e-5)  # seed b: c only
    # u's never-bought items by the same score: c, then b
    top = feats.feature("hist_sar").new_top_[ds.users.index_one("u")]
    assert [ds.items.id_of(int(i)) for i in top if i >= 0] == ["c", "b"]


def test_sar_candidates_join_the_discovery_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    from recset.pipeline import Candidates

    ds, feats = _sar_space(monkeypatch)
    mixed = Candidates(
        np.full((1, 1), -1, np.int32),
        np.full((1, 1), -np.inf, np.float32),
        np.full((1, 1, 1), np.nan, np.float32),
        np.full((1, 1, 1), -1, np.int32),
        ("x",),
    )
    seeds = np.array([ds.items.index_one("a")], np.int32)
    users = np.array([ds.users.index_one("u")], np.int32)
    ok = np.ones(ds.n_items, bool)

    def ids(n_sar: int) -> list[str]:
        got = discovery_candidates(mixed, feats, seeds, users, ok, 0, n_sar).item[0]
        return [ds.items.id_of(int(i)) for i in got if i >= 0]

    assert ids(0) == []
    assert ids(50) == ["c", "b"]


def test_discovery_model_reads_sar_and_earlier_label_windows(
    ds: Dataset, trained: tuple[Engine, Ranker]
) -> None:
    # the default: hist_sar / seed_sar in the space, three label windows
    _, ranker = trained
    assert {"hist_sar", "seed_sar"} <= set(ranker.feature_names)
    assert ranker.metrics["discover"]["label_windows"] == 3
    cfg = config_from_dict(
        {
            "ranker": {
                "max_queries": 1000,
                "n_estimators": 20,
                "discover": True,
                "discover_sar": 0,
                "discover_windows": 1,
            }
        }
    )
    one = train_ranker(ds, cfg, embeddings=np.zeros((ds.n_items, 0), np.float32))
    assert "hist_sar" not in one.feature_names
    assert one.metrics["discover"]["label_windows"] == 1
    # earlier windows add label queries (each with its own, earlier features)
    assert (
        ranker.metrics["discover"]["train_queries"] > 1.5 * one.metrics["discover"]["train_queries"]
    )
    # without discover, the SAR features stay out of the ranker
    plain = config_from_dict({"ranker": {"max_queries": 1000, "n_estimators": 5}})
    r = train_ranker(ds, plain, embeddings=np.zeros((ds.n_items, 0), np.float32))
    assert "hist_sar" not in r.feature_names and "discover" not in r.metrics


def _columns(
    ds: Dataset, names: tuple[str, ...], seed: str | None, user: str | None, cands: list[str]
) -> dict[str, list[float]]:
    """The opt-in features ``names`` of one (seed, user) query over ``cands``."""
    feats = FeatureSpace.fit(ds, ("x",), extra_features=names)
    X = _query(ds, feats, seed, user, cands)
    return {name: X[:, feats.names.index(name)].tolist() for name in names}


def test_first_purchase_features_are_opt_in_and_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    assert not {"cand_new_buyers", "user_new_category", "seed_confidence"} & set(BASE_FEATURES)
    # first purchases after the user's first trip: u starts y (day 1), w starts z (day 4);
    # v's y is v's first trip, u's and w's x are theirs: 2 such pairs, y and z one each
    ds = _ds(
        [("u", ["x"], 0), ("u", ["x", "y"], 1), ("v", ["y"], 2)]
        + [("w", ["x"], 3), ("w", ["z"], 4)]
    )
    got = _columns(ds, ("cand_new_buyers",), "x", "u", ["x", "y", "z"])["cand_new_buyers"]
    assert got == pytest.approx([0.0, np.log1p(0.5e6), np.log1p(0.5e6)], rel=1e-6)


def test_user_cand_due_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    assert "user_cand_due" not in BASE_FEATURES
    # u's trips 0..5: x on trips 0, 2, 4 (gap 2, last trip 4: the next trip, 6, is 2 after
    # it: due 1.0); y on trips 0 and 1 (gap 1, next trip 5 after: 5.0); z once (NaN);
    # w never bought by u (NaN); an unknown user: NaN
    ds = _ds(
        [("u", ["x", "y"], 0), ("u", ["y"], 1), ("u", ["x"], 2), ("u", ["z"], 3)]
        + [("u", ["x"], 4), ("u", ["z2"], 5), ("v", ["w"], 6)]
    )
    got = _columns(ds, ("user_cand_due",), "x", "u", ["x", "y", "z", "w"])["user_cand_due"]
    assert got[:2] == pytest.approx([1.0, 5.0])
    assert np.isnan(got[2:]).all()
    unknown = _columns(ds, ("user_cand_due",), "x", None, ["x", "y"])["user_cand_due"]
    assert np.isnan(unknown).all()


def test_user_kind_new_rate_hand_computed() -> None:
    # types Y {y1, y2, y3}, M {m1}, z without a type. u's 4 trips: y1 m1 | y1 y2 | y3 m1 |
    # m1 z: after the first trip u starts y2 and y3 (Y: 2 / 4 trips) and z (no type); v's
    # only trip is v's first (starts nothing)
    rows = []
    for o, (user, items) in enumerate(
        [("u", ["y1", "m1"]), ("u", ["y1", "y2"]), ("u", ["y3", "m1"]), ("u", ["m1", "z"])]
        + [("v", ["y1", "m1"])]
    ):
        for it in items:
            rows.append((user, it, "purchase", o * 86400, f"o{o}"))  # one time per order
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    items = ["y1", "y2", "y3", "m1", "z"]
    cat = pd.DataFrame(
        {
            "item_id": items,
            "category_id": ["c"] * 5,
            "product_type": ["Y", "Y", "Y", "M", None],
        }
    )
    ds = Dataset.from_frames(cat, ev)
    name = "user_kind_new_rate"
    got = _columns(ds, (name,), "y1", "u", ["y2", "m1", "y1", "z"])[name]
    assert got[:3] == pytest.approx([0.5, 0.0, 0.5])
    assert np.isnan(got[3])
    assert np.isnan(_columns(ds, (name,), "y1", None, ["y2"])[name]).all()
    # v started nothing: 0 for every typed candidate
    assert _columns(ds, (name,), "y1", "v", ["y2", "m1"])[name] == [0.0, 0.0]


def test_user_new_category_hand_computed() -> None:
    # categories A {a1, a2}, B {b1, b2}, C {c1}. p: a1 then b1 (shares A .5, B .5; starts
    # b1 in B); q: a1 then a1, c1 (A 2/3, C 1/3; starts c1 in C); r: b2 only (B 1, none new)
    rows = []
    for o, (user, items, day) in enumerate(
        [("p", ["a1"], 0), ("p", ["b1"], 1), ("q", ["a1"], 2), ("q", ["a1", "c1"], 3)]
        + [("r", ["b2"], 4)]
    ):
        for j, it in enumerate(items):
            rows.append((user, it, "purchase", day * 86400 + j, f"o{o}"))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    items = ["a1", "a2", "b1", "b2", "c1"]
    cat = pd.DataFrame({"item_id": items, "category_id": [i[0].upper() for i in items]})
    ds = Dataset.from_frames(cat, ev)
    # T[A] = (.5 B + 2/3 C) normalised, T[B] = B, T[C] = C
    tab = {"B": 0.5 / (0.5 + 2 / 3), "C": (2 / 3) / (0.5 + 2 / 3)}
    got = _columns(ds, ("user_new_category",), "a1", "p", ["a2", "b2", "c1"])
    # p: .5 T[A] + .5 T[B]
    assert got["user_new_category"] == pytest.approx(
        [0.0, 0.5 * tab["B"] + 0.5, 0.5 * tab["C"]], rel=1e-5
    )
    got = _columns(ds, ("user_new_category",), "a1", "r", ["a2", "b1", "c1"])
    assert got["user_new_category"] == pytest.approx([0.0, 1.0, 0.0])
    got = _columns(ds, ("user_new_category",), "a1", None, ["b1"])
    assert np.isnan(got["user_new_category"]).all()


def test_seed_confidence_hand_computed() -> None:
    # a is in 5 baskets, with b in 2, c and d in 1 each (as in the hist_copurchase test)
    ds = _ds(
        [("v", ["a", "b"], 0), ("v", ["a", "b"], 1), ("w", ["a", "c"], 2)]
        + [("w", ["b", "c"], 3), ("u", ["a"], 4), ("u", ["a", "d"], 5)]
    )
    got = _columns(ds, ("seed_confidence",), "a", None, ["b", "c", "d"])["seed_confidence"]
    assert got == pytest.approx([2 / 5, 1 / 5, 1 / 5])
    got = _columns(ds, ("seed_confidence",), "d", None, ["a", "b"])["seed_confidence"]
    assert got == pytest.approx([1.0, 0.0])  # d's only basket holds a
    assert np.isnan(_columns(ds, ("seed_confidence",), None, None, ["a"])["seed_confidence"]).all()


def test_trial_confidence_features_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    assert not {"seed_trial_conf", "hist_trial_conf"} & set(BASE_FEATURES)
    # a trial: a user's first purchase of an item on a trip after the user's first trip
    ds = _ds(
        [("u", ["a", "b"], 0), ("u", ["a", "c"], 1), ("u", ["a", "c"], 2)]  # u tries c on day 1
        + [("v", ["a"], 3), ("v", ["a", "b", "d"], 4)]  # v tries b and d
        + [("w", ["b", "c"], 5), ("w", ["a", "c"], 6)]  # w tries a (c is a repeat)
        + [("x", ["e"], 7), ("x", ["a", "c"], 8)]  # x tries a and c
    )
    # a is on 7 trips; tried beside it: c twice (u day 1, x), b and d once (v day 4)
    got = _columns(ds, ("seed_trial_conf",), "a", None, ["b", "c", "d", "e", "a"])
    assert got["seed_trial_conf"] == pytest.approx([1 / 7, 2 / 7, 1 / 7, 0.0, 0.0])
    # c is on 5 trips; a tried beside it twice (w day 6, x)
    got = _columns(ds, ("seed_trial_conf",), "c", "u", ["a", "b"])
    assert got["seed_trial_conf"] == pytest.approx([2 / 5, 0.0])
    assert np.isnan(_columns(ds, ("seed_trial_conf",), None, "u", ["a"])["seed_trial_conf"]).all()
    # b (3 trips): d once. w's history: c, b, a, each weighing 1/3
    got = _columns(ds, ("hist_trial_conf",), "a", "w", ["d", "e"])["hist_trial_conf"]
    assert got == pytest.approx([(1 / 3 + 1 / 7) / 3, 0.0])
    # x's history: e, a, c
    got = _columns(ds, ("hist_trial_conf",), None, "x", ["b", "a"])["hist_trial_conf"]
    assert got == pytest.approx([(1 / 7) / 3, (2 / 5) / 3])
    assert np.isnan(_columns(ds, ("hist_trial_conf",), "a", None, ["b"])["hist_trial_conf"]).all()


def test_discovery_model_objective_and_monotone_constraints(ds: Dataset) -> None:
    from recset.ranking._ranker import DISCOVER_MONOTONE

    cfg = config_from_dict(
        {
            "ranker": {
                "max_queries": 1000,
                "n_estimators": 20,
                "early_stopping_rounds": 20,
                "discover": True,
                "discover_windows": 1,
                "discover_objective": "binary",
                "discover_monotone": True,
            }
        }
    )
    r = train_ranker(ds, cfg, embeddings=np.zeros((ds.n_items, 0), np.float32))
    dump = r.discover_booster.dump_model()
    assert dump["objective"].startswith("binary")
    assert r.booster.dump_model()["objective"].startswith("lambdarank")  # the ranker's own
    names = r.feature_names
    mono = [names.index(n) for n in DISCOVER_MONOTONE if n in names]
    assert {"hist_sar", "seed_sar", "hist_copurchase"} <= {names[j] for j in mono}
    # the score never falls as one of them rises, wherever the others are
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, len(names))).astype(np.float32)
    base = r.discover_booster.predict(X)
    for j in mono:
        up = X.copy()
        up[:, j] += rng.uniform(0.01, 2.0, size=len(X)).astype(np.float32)
        assert (r.discover_booster.predict(up) >= base - 1e-9).all(), names[j]


def test_cv_rounds_run_and_are_deterministic(ds: Dataset) -> None:
    from recset.ranking._ranker import user_folds

    # folds split users, never one user's queries; each query in exactly one held-out fold
    group = np.array([2, 3, 1, 2, 2], np.int64)
    users = np.array([7, 3, 7, 5, 3], np.int32)
    folds = user_folds(group, users, 2, seed=0)
    held = np.concatenate([test for _, test in folds])
    assert sorted(held.tolist()) == list(range(10))
    user_of_row = np.repeat(users, group)
    for train, test in folds:
        assert not set(user_of_row[test]) & set(user_of_row[train])
    with pytest.raises(DataError, match="discover_folds"):
        user_folds(group, users, 4, seed=0)
    cfg = config_from_dict(
        {
            "ranker": {
                "max_queries": 1000,
                "n_estimators": 40,
                "early_stopping_rounds": 10,
                "discover": True,
                "discover_windows": 2,
                "discover_rounds": "cv",
                "discover_folds": 3,
                "discover_models": 1,
            }
        }
    )
    emb = np.zeros((ds.n_items, 0), np.float32)
    a = train_ranker(ds, cfg, embeddings=emb)
    b = train_ranker(ds, cfg, embeddings=emb)
    m = a.metrics["discover"]
    assert m["rounds"] == "cv" and m["cv_folds"] == 3 and m["valid_queries"] == 0
    assert 1 <= m["trees"] <= 40 and a.discover_booster.current_iteration() == m["trees"]
    assert m["cv_users"] >= 3 and 0 < m["valid_ndcg@10"] <= 1
    # the same data and seed: the same trees, the same model
    assert b.metrics["discover"] == m
    assert a.discover_booster.model_to_string() == b.discover_booster.model_to_string()
    # every label query trains the refitted model: the early-stopping users' too
    valid = cfg.ranker.model_copy(update={"discover_rounds": "valid"})
    plain = train_ranker(ds, cfg.model_copy(update={"ranker": valid}), embeddings=emb)
    pm = plain.metrics["discover"]
    assert m["train_queries"] == pm["train_queries"] + pm["valid_queries"]


def test_cv_curve_extends_folds_that_stopped_early() -> None:
    from recset.ranking._ranker import RankerConfig, _cv_curve, _kept_trees

    # fold A peaks early and stops after round 3; fold B runs on and rises to round 4
    curves = [[0.2, 0.8, 0.7], [0.1, 0.2, 0.3, 0.45]]
    mean, spread = _cv_curve(curves)
    # by hand: A is held at its last value 0.7 in round 4
    assert mean == pytest.approx([0.15, 0.5, 0.5, 0.575])
    assert spread == pytest.approx([0.05, 0.3, 0.2, 0.125])
    # the mean peaks at round 4 (averaging only the folds still running would give 0.45 there
    # and pick round 2; cutting every fold to the shortest would pick round 2 too)
    assert _kept_trees(mean, len(mean), RankerConfig()) == 4
    # within 0.08 of the peak (0.495): round 2 is the first
    assert _kept_trees(mean, len(mean), RankerConfig(trees_tolerance=0.08)) == 2
    assert _cv_curve([[0.3, 0.4]]) == (pytest.approx([0.3, 0.4]), pytest.approx([0.0, 0.0]))
    with pytest.raises(ValueError, match="evaluation curve"):
        _cv_curve([[0.3], []])


def test_cv_fold_loop_matches_folds_trained_one_by_one() -> None:
    """The fold loop's curves and tree count equal each fold trained on its own (its rows
    binned with the full set's mappers), and the refit has exactly that many trees."""
    import lightgbm as lgb

    from recset.ranking._ranker import (
        RankerConfig,
        _boost_cv,
        _cv_curve,
        _kept_trees,
        user_folds,
    )

    rng = np.random.default_rng(3)
    n_q, size = 240, 8
    g = np.full(n_q, size, np.int64)
    users = rng.integers(0, 60, n_q).astype(np.int32)
    X = rng.normal(size=(n_q * size, 4)).astype(np.float32)
    # the first feature ranks the positives, the rest is noise: a few trees learn it
    y = (X[:, 0] + rng.normal(scale=1.0, size=len(X)) > 1.2).astype(np.float32)
    names = ["f0", "f1", "f2", "f3"]
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": 7,
        "learning_rate": 0.1,
        "min_child_samples": 5,
        "seed": 0,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbosity": -1,
    }
    rc = RankerConfig(n_estimators=60, early_stopping_rounds=8, discover_folds=3, seed=1)
    booster, m, curve = _boost_cv("t", params, rc, names, (X, y, g, users), False)

    full = lgb.Dataset(X, y, group=g, feature_name=names, params=params).construct()
    ref = []
    for rows_train, rows_held in user_folds(g, users, 3, seed=1):

        def part(rows: np.ndarray) -> lgb.Dataset:
            group = np.full(len(rows) // size, size)  # whole queries of `size` rows
            return lgb.Dataset(X[rows], y[rows], group=group, reference=full, params=params)

        evals: dict = {}
        lgb.train(
            params,
            part(rows_train),
            num_boost_round=60,
            valid_sets=[part(rows_held)],
            callbacks=[lgb.early_stopping(8, verbose=False), lgb.record_evaluation(evals)],
        )
        ref.append(evals["valid_0"]["ndcg@10"])
    want, _ = _cv_curve(ref)
    assert curve == pytest.approx(want)
    assert m["cv_fold_rounds"] == [len(c) for c in ref]
    assert len(set(m["cv_fold_rounds"])) > 1  # the folds stopped at different rounds
    assert m["trees"] == _kept_trees(want, len(want), rc) == booster.current_iteration()
    assert m["valid_ndcg@10"] == pytest.approx(want[m["trees"] - 1])
    assert m["train_queries"] == n_q and m["valid_queries"] == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("discover_rounds", "kfold"),
        ("discover_folds", 1),
        ("discover_folds", 50),
        ("discover_models", 0),
        ("discover_models", 11),
        ("discover_n_estimators", 0),
        ("discover_n_estimators", "many"),
        ("discover_mix_candidates", 1),
    ],
)
def test_cv_rounds_settings_are_validated(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"ranker.{key}"):
        config_from_dict({"ranker": {"discover": True, key: value}})


def test_split_users_keeps_each_users_queries_together() -> None:
    from recset.ranking._ranker import _split_users

    X = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.array([1, 0, 0, 1, 0, 1], np.float32)
    group = np.array([2, 3, 1], np.int64)
    users = np.array([5, 2, 5], np.int32)
    valid_user = np.zeros(8, bool)
    valid_user[5] = True
    (Xt, yt, gt, ut), (Xv, yv, gv, uv) = _split_users((X, y, group, users), valid_user)
    assert Xv[:, 0].tolist() == [0, 2, 10] and yv.tolist() == [1, 0, 1]
    assert gv.tolist() == [2, 1] and uv.tolist() == [5, 5]
    assert Xt[:, 0].tolist() == [4, 6, 8] and gt.tolist() == [3] and ut.tolist() == [2]


def test_bagged_discovery_models_serve_their_mean(ds: Dataset, tmp_path: Path) -> None:
    base = {
        "max_queries": 1000,
        "n_estimators": 20,
        "discover": True,
        "discover_windows": 1,
        "label_split": "leave_last",
    }
    emb = np.zeros((ds.n_items, 0), np.float32)
    one = train_ranker(
        ds, config_from_dict({"ranker": {**base, "discover_models": 1}}), embeddings=emb
    )
    cfg = config_from_dict({"ranker": {**base, "discover_models": 3}})
    bag = train_ranker(ds, cfg, embeddings=emb)
    assert one.discover_members == () and "members" not in one.metrics["discover"]
    # the first model is the single model; the others are trained under seeds 1 and 2
    assert bag.discover_booster.model_to_string() == one.discover_booster.model_to_string()
    assert len(bag.discover_members) == 2
    m = bag.metrics["discover"]
    assert m["models"] == 3 and [x["seed"] for x in m["members"]] == [0, 1, 2]
    assert m["members"][0]["trees"] == m["trees"]
    # leave-last: each model its own validation users, drawn from the same label queries
    sizes = {x["train_queries"] + x["valid_queries"] for x in m["members"]}
    assert len(sizes) == 1
    assert len({x["valid_queries"] for x in m["members"]}) > 1
    X = np.random.default_rng(1).random((40, len(bag.feature_names))).astype(np.float32)
    boosters = [bag.discover_booster, *bag.discover_members]
    mean = np.mean([b.predict(X) for b in boosters], axis=0)
    assert np.allclose(bag.score_new(X), mean)
    assert not np.allclose(bag.score_new(X), one.score_new(X))
    # saved as discover.txt, discover-1.txt, discover-2.txt and loaded back
    bag.save(tmp_path / "r")
    assert {p.name for p in (tmp_path / "r").glob("discover*.txt")} == {
        "discover.txt",
        "discover-1.txt",
        "discover-2.txt",
    }
    again = Ranker.load(tmp_path / "r")
    assert len(again.discover_members) == 2
    assert np.allclose(again.score_new(X), mean)
    (tmp_path / "r" / "discover-2.txt").unlink()
    with pytest.raises(ConfigError, match="discover-2.txt"):
        Ranker.load(tmp_path / "r")


def test_ranker_saved_before_discover_models_loads_its_one_model(
    trained: tuple[Engine, Ranker], tmp_path: Path
) -> None:
    _, ranker = trained
    ranker.save(tmp_path / "r")
    meta_file = tmp_path / "r" / "ranker.json"
    state = json.loads(meta_file.read_text())
    config = state["meta"]["config"] if "meta" in state else state["config"]
    config.pop("discover_models")
    meta_file.write_text(json.dumps(state))
    for extra in ("discover-1.txt", "discover-2.txt"):
        (tmp_path / "r" / extra).unlink()
    again = Ranker.load(tmp_path / "r")
    assert again.config.discover_models == 1 and again.discover_members == ()
    X = np.random.default_rng(2).random((7, len(ranker.feature_names))).astype(np.float32)
    assert np.allclose(again.score_new(X), ranker.discover_booster.predict(X))


@pytest.mark.parametrize(("cap", "want"), [(12, 12), (None, 5)])
def test_discovery_models_grow_to_their_own_cap(cap: int | None, want: int) -> None:
    from recset.ranking._ranker import RankerConfig, discover_params, fit_discovery, ranker_params

    rng = np.random.default_rng(0)
    group = np.full(40, 10, np.int64)
    X = rng.random((400, 3)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.random(400) > 0.9).astype(np.float32)
    users = np.arange(40, dtype=np.int32)
    empty = (X[:0], y[:0], group[:0], users[:0])
    rc = RankerConfig(n_estimators=5, discover_n_estimators=cap, discover_models=2)
    names = ["a", "b", "c"]
    params = discover_params(ranker_params(rc), rc, names)
    # no validation queries: no early stopping, every model grows to the cap
    boosters, m = fit_discovery((X, y, group, users), empty, params, rc, names, 40)
    assert [b.current_iteration() for b in boosters] == [want, want]
    assert [x["trees"] for x in m["members"]] == [want, want]


def test_discovery_model_takes_its_own_number_of_mix_candidates(
    ds: Dataset, trained: tuple[Engine, Ranker]
) -> None:
    from dataclasses import replace

    from recset.ranking._stage import DiscoverStage

    engine, ranker = trained
    assert ranker.config.discover_mix_candidates is None and ranker.config.discover_mix == 100
    assert DiscoverStage(ranker, engine.mixer.available).width(10) == 100
    wide = replace(ranker, config=ranker.config.model_copy(update={"discover_mix_candidates": 250}))
    assert DiscoverStage(wide, engine.mixer.available).width(10) == 250
    # served: the wider list reaches items beyond the mix's top 100 for some seed
    seeds = np.arange(60, dtype=np.int32)
    users = (np.arange(60) % ds.n_users).astype(np.int32)
    got = recommend_dense(engine.with_ranker(wide).for_mode("discover"), seeds, 10, users=users)
    top100 = engine.mixer.top(seeds, 100).item
    hist = ranker.features.feature("hist_copurchase").new_top_[users]  # type: ignore[union-attr]
    sar = ranker.features.feature("hist_sar")
    pool = np.concatenate([top100, hist] + ([sar.new_top_[users]] if sar else []), axis=1)  # type: ignore[union-attr]
    assert (~(got.item[:, :, None] == pool[:, None, :]).any(axis=2) & (got.item >= 0)).any()
    # trained: each discovery query scores at most that many mix candidates
    cfg = config_from_dict(
        {
            "ranker": {
                "max_queries": 500,
                "n_estimators": 5,
                "discover": True,
                "discover_windows": 1,
                "discover_models": 1,
                "discover_candidates": 0,
                "discover_sar": 0,
                "user_candidates": 0,
                "discover_mix_candidates": 6,
            }
        }
    )
    narrow = train_ranker(
        ds, cfg, mixer=engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32)
    )
    m = narrow.metrics["discover"]
    assert m["train_queries"] > 0 and m["train_rows"] <= 6 * m["train_queries"]
    assert (
        ranker.metrics["discover"]["train_rows"] > 6 * ranker.metrics["discover"]["train_queries"]
    )


def _text_columns(
    ds: Dataset,
    vectors: dict[str, list[float]],
    names: tuple[str, ...],
    user: str | None,
    cands: list[str],
) -> dict[str, list[float]]:
    """The opt-in features ``names`` of one query by ``user`` (seed ``a``) over ``cands``,
    with the items' text vectors set by hand."""
    emb = np.zeros((len(ds.items), 2), np.float32)
    for item, vec in vectors.items():
        emb[ds.items.index_one(item)] = vec
    feats = FeatureSpace.fit(ds, ("x",), extra_features=names, embeddings=emb)
    X = _query(ds, feats, "a", user, cands)
    return {name: X[:, feats.names.index(name)].tolist() for name in names}


def test_history_text_features_hand_computed(tmp_path: Path) -> None:
    # u: a on 3 trips, b on 1; v bought the rest. a = (1, 0), b = (0, 1), c = (.6, .8),
    # d has no vector, e = (2, 0) (not unit length)
    ds = _ds(
        [("u", ["a", "b"], 0), ("u", ["a"], 1), ("u", ["a"], 2), ("v", ["c", "d", "e"], 3)]
        + [("w", ["a"], 4)]
    )
    vectors = {"a": [1, 0], "b": [0, 1], "c": [0.6, 0.8], "e": [2, 0]}
    names = ("hist_text_max", "hist_text_profile")
    got = _text_columns(ds, vectors, names, "u", ["c", "a", "e", "d"])
    # nearest of u's items; a itself left out (only b is left: 0)
    assert got["hist_text_max"][:3] == pytest.approx([0.8, 0.0, 2.0])
    # cosine to the profile (3 a + 1 b) / sqrt(10)
    assert got["hist_text_profile"][:3] == pytest.approx(
        [2.6 / np.sqrt(10), 1 / np.sqrt(1 + 1 / 9), 3 / np.sqrt(10)], rel=1e-5
    )
    for name in names:
        assert np.isnan(got[name][3])  # d has no vector
        assert np.isnan(_text_columns(ds, vectors, (name,), None, ["c"])[name]).all()
    # saved and loaded back: the same columns
    emb = np.zeros((len(ds.items), 2), np.float32)
    for item, vec in vectors.items():
        emb[ds.items.index_one(item)] = vec
    feats = FeatureSpace.fit(ds, ("x",), extra_features=names, embeddings=emb)
    feats.save(tmp_path / "f")
    again = FeatureSpace.load(tmp_path / "f")
    np.testing.assert_array_equal(
        _query(ds, again, "a", "u", ["c", "a", "e", "d"]),
        _query(ds, feats, "a", "u", ["c", "a", "e", "d"]),
    )
    # w bought only a: no other item to compare a with, c is compared with a
    got_w = _text_columns(ds, vectors, ("hist_text_max",), "w", ["a", "c"])["hist_text_max"]
    assert np.isnan(got_w[0]) and got_w[1] == pytest.approx(0.6)


def test_history_text_features_without_vectors_are_nan() -> None:
    ds = _ds([("u", ["a", "b"], 0), ("v", ["c"], 1)])
    names = ("hist_text_max", "hist_text_profile")
    feats = FeatureSpace.fit(
        ds, ("x",), extra_features=names, embeddings=np.zeros((3, 0), np.float32)
    )
    X = _query(ds, feats, "a", "u", ["b", "c"])
    assert np.isnan(X[:, [feats.names.index(n) for n in names]]).all()


def test_request_time_recency_features_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    names = ("user_cand_days_due", "user_cand_days_now")
    assert not set(names) & set(BASE_FEATURES)
    # u: x on days 0, 2, 4 (gap 2 days); y at second 1 of day 0 and on day 1; z once (day
    # 3); w never bought by u
    ds = _ds(
        [("u", ["x", "y"], 0), ("u", ["y"], 1), ("u", ["x"], 2), ("u", ["z"], 3)]
        + [("u", ["x"], 4), ("v", ["w"], 6)]
    )
    feats = FeatureSpace.fit(ds, ("x",), extra_features=names)
    col = [feats.names.index(n) for n in names]
    day = 86400
    X = _query(ds, feats, "x", "u", ["x", "y", "z", "w"], when=8 * day)[:, col]
    # asked on day 8: x 4 days after its last purchase, 2 its usual gap: due 2
    assert X[0].tolist() == pytest.approx([2.0, 4.0])
    assert X[1].tolist() == pytest.approx([(7 * day) / (day - 1), 7.0])
    assert np.isnan(X[2, 0]) and X[2, 1] == pytest.approx(5.0)  # z: bought once
    assert np.isnan(X[3]).all()  # never bought
    # asked on day 3, before x's last purchase: NaN; y is 2 days old then
    X = _query(ds, feats, "x", "u", ["x", "y"], when=3 * day)[:, col]
    assert np.isnan(X[0]).all()
    assert X[1].tolist() == pytest.approx([(2 * day) / (day - 1), 2.0])
    X = _query(ds, feats, "x", None, ["x", "y"], when=8 * day)[:, col]
    assert np.isnan(X).all()


def test_user_cat_days_due_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    name = "user_cat_days_due"
    assert name not in BASE_FEATURES
    # categories A {a1, a2, a3}, B {b1}, C {c1}, n without one. u's trips: day 0 a1 b1 |
    # day 3 a2 | day 4 b1 | day 6 a1 a2 c1 (A on three trips, two A items on the last
    # counting one trip); v buys a3, new to u, on day 8
    rows = []
    for o, (user, items, d) in enumerate(
        [("u", ["a1", "b1"], 0), ("u", ["a2"], 3), ("u", ["b1"], 4)]
        + [("u", ["a1", "a2", "c1"], 6), ("v", ["a3", "n"], 8)]
    ):
        for j, it in enumerate(items):
            rows.append((user, it, "purchase", d * 86400 + j, f"o{o}"))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    items = ["a1", "a2", "a3", "b1", "c1", "n"]
    cat = pd.DataFrame({"item_id": items, "category_id": ["A", "A", "A", "B", "C", None]})
    ds = Dataset.from_frames(cat, ev)
    feats = FeatureSpace.fit(ds, ("x",), extra_features=(name,))
    col = feats.names.index(name)
    day = 86400
    cands = ["a3", "a1", "b1", "c1", "n"]
    got = _query(ds, feats, "a1", "u", cands, when=12 * day)[:, col]
    # A: first purchase at 0, last at 6 days + 1 s, three trips: the usual gap (6d + 1) / 2,
    # 6d - 1 since the last; the same for the new a3 and the bought a1
    a_due = (6 * day - 1) / ((6 * day + 1) / 2)
    assert got[:2].tolist() == pytest.approx([a_due, a_due])
    # B: 1 s and 4 days, two trips: gap 4d - 1, 8 days since
    assert got[2] == pytest.approx(8 * day / (4 * day - 1))
    assert np.isnan(got[3:]).all()  # C on one trip; n without a category
    # asked on day 5, before A's last purchase: NaN; B is 1 day old then
    got = _query(ds, feats, "a1", "u", ["a3", "b1"], when=5 * day)[:, col]
    assert np.isnan(got[0]) and got[1] == pytest.approx(day / (4 * day - 1))
    assert np.isnan(_query(ds, feats, "a1", None, cands, when=12 * day)[:, col]).all()
    # v bought A on one trip only
    assert np.isnan(_query(ds, feats, "a1", "v", ["a1"], when=12 * day)[:, col]).all()


def test_user_cat_price_log_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    name = "user_cat_price_log"
    assert name not in BASE_FEATURES
    # A {a1: 2, a2: 8, a3: 4, n: no price}, B {b1: 3}, C {c1: 5}, z without a category.
    # u buys a1 twice, a2 and n once in A, b1 in B; v buys the rest
    rows = []
    for o, (user, items) in enumerate(
        [("u", ["a1", "b1"]), ("u", ["a1", "a2", "n"]), ("v", ["a3", "c1", "z"])]
    ):
        for j, it in enumerate(items):
            rows.append((user, it, "purchase", o * 86400 + j, f"o{o}"))
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    cat = pd.DataFrame(
        {
            "item_id": ["a1", "a2", "a3", "n", "b1", "c1", "z"],
            "category_id": ["A", "A", "A", "A", "B", "C", None],
            "price": [2.0, 8.0, 4.0, None, 3.0, 5.0, 1.0],
        }
    )
    ds = Dataset.from_frames(cat, ev)
    got = _columns(ds, (name,), "a1", "u", ["a3", "a2", "b1", "c1", "n", "z"])[name]
    # A: u's mean log price (log 2 + log 2 + log 8) / 3 = 5/3 log 2
    assert got[:3] == pytest.approx(
        [np.log(4) - 5 / 3 * np.log(2), np.log(8) - 5 / 3 * np.log(2), 0.0], abs=1e-6
    )
    assert np.isnan(got[3:]).all()  # C never bought by u; n without a price; z without a category
    assert np.isnan(_columns(ds, (name,), "a1", None, ["a3"])[name]).all()


def test_user_seed_cand_share_hand_computed(tmp_path: Path) -> None:
    from recset.ranking import BASE_FEATURES

    name = "user_seed_cand_share"
    assert name not in BASE_FEATURES
    # u's trips: {s, a, b}, {s, a}, {s}, {a, b}; v's: {s, b}; c is bought by w only
    ds = _ds(
        [("u", ["s", "a", "b"], 0), ("u", ["s", "a"], 1), ("u", ["s"], 2), ("u", ["a", "b"], 3)]
        + [("v", ["s", "b"], 4), ("w", ["c"], 5)]
    )
    feats = FeatureSpace.fit(ds, ("x",), extra_features=(name,))
    j = feats.names.index(name)
    got = _query(ds, feats, "s", "u", ["a", "b", "c"])[:, j]
    assert got.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])  # of u's 3 trips with s
    assert _query(ds, feats, "s", "v", ["a", "b"])[:, j].tolist() == pytest.approx([0.0, 1.0])
    assert np.isnan(_query(ds, feats, "c", "u", ["a"])[:, j]).all()  # u never bought c
    assert np.isnan(_query(ds, feats, "s", None, ["a"])[:, j]).all()
    # how many trips the share is of
    trips = FeatureSpace.fit(ds, ("x",), extra_features=("user_seed_trips",))
    k = trips.names.index("user_seed_trips")
    assert _query(ds, trips, "s", "u", ["a", "b"])[:, k].tolist() == [3.0, 3.0]
    assert _query(ds, trips, "c", "u", ["a"])[:, k].tolist() == [0.0]
    assert np.isnan(_query(ds, trips, "s", None, ["a"])[:, k]).all()
    feats.save(tmp_path / "f")
    again = FeatureSpace.load(tmp_path / "f")
    np.testing.assert_array_equal(
        _query(ds, again, "s", "u", ["a", "b", "c"]), _query(ds, feats, "s", "u", ["a", "b", "c"])
    )


def test_user_seed_cand_share_in_blocks_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from recset.ranking import _builtin_features

    syn = generate(SyntheticConfig(n_items=120, n_users=60, seed=3))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    name = "user_seed_cand_share"
    feats = FeatureSpace.fit(ds, ("x",), extra_features=(name,))
    feature = feats.feature(name)
    rng = np.random.default_rng(0)
    users = rng.integers(0, len(ds.users), 40).astype(np.int32)
    seeds = rng.integers(0, len(ds.items), 40).astype(np.int32)
    # seeds the users bought, so most rows have trips to expand
    for i, u in enumerate(users):
        row = feature.ui_keys_[(feature.ui_keys_ // len(ds.items)) == u]
        if len(row):
            seeds[i] = row[i % len(row)] % len(ds.items)
    from recset.pipeline import Candidates

    item = rng.integers(0, len(ds.items), (40, 30)).astype(np.int32)
    mixed = Candidates(
        item,
        np.zeros(item.shape, np.float32),
        np.full((*item.shape, 1), np.nan, np.float32),
        np.full((*item.shape, 1), -1, np.int32),
        ("x",),
    )
    j = feats.names.index(name)
    whole = feats.transform(seeds, users, mixed)[:, j]
    # each row alone (a served request) takes the one-row path: the same values
    alone = []
    for i in range(len(seeds)):
        row = Candidates(
            item[i : i + 1],
            mixed.score[i : i + 1],
            mixed.source_score[i : i + 1],
            mixed.source_rank[i : i + 1],
            ("x",),
        )
        alone.append(feats.transform(seeds[i : i + 1], users[i : i + 1], row)[:, j])
    np.testing.assert_array_equal(np.concatenate(alone), whole)
    monkeypatch.setattr(_builtin_features, "_SEED_TRIP_BLOCK", 7)
    blocks = feats.transform(seeds, users, mixed)[:, j]
    np.testing.assert_array_equal(whole, blocks)
    assert np.isfinite(whole).mean() > 0.5 and (whole > 0).any()


def test_bundle_features_are_read_by_default_and_can_be_turned_off() -> None:
    from recset.config import config_from_dict
    from recset.ranking._ranker import BUNDLE_FEATURES, RankerConfig, discover_features

    assert discover_features(RankerConfig())[: len(BUNDLE_FEATURES)] == BUNDLE_FEATURES
    for off in ({"bundle_features": False}, {"personal_features": False}):
        assert not set(BUNDLE_FEATURES) & set(discover_features(RankerConfig(**off)))
    # named in extra_features too: read once, where named
    rc = RankerConfig(extra_features=("user_cand_due", "user_seed_trips"))
    assert discover_features(rc) == ("user_seed_cand_share", "user_cand_due", "user_seed_trips")
    cfg = config_from_dict({"ranker": {"bundle_features": False}})
    assert cfg.ranker.bundle_features is False
    with pytest.raises(ConfigError, match="bundle_features"):
        config_from_dict({"ranker": {"bundle_features": "sometimes"}})


def test_time_features_are_read_by_default_after_the_calendar_and_can_be_turned_off(
    ds: Dataset,
) -> None:
    from recset.config import config_from_dict
    from recset.ranking._ranker import TIME_FEATURES, RankerConfig, ranker_features

    assert ranker_features(RankerConfig(), ds)[-len(TIME_FEATURES) :] == TIME_FEATURES
    assert not set(TIME_FEATURES) & set(ranker_features(RankerConfig(time_features=False), ds))
    # named in extra_features too: read once, where named
    rc = RankerConfig(extra_features=("cand_time_lift", "user_cand_due"))
    assert ranker_features(rc, ds).count("cand_time_lift") == 1
    assert config_from_dict({"ranker": {"time_features": False}}).ranker.time_features is False
    with pytest.raises(ConfigError, match="time_features"):
        config_from_dict({"ranker": {"time_features": "sometimes"}})


def test_stages_skip_only_the_columns_no_tree_splits_on(
    ds: Dataset, trained: tuple[Engine, Ranker]
) -> None:
    engine, ranker = trained
    feats, names = ranker.features, ranker.feature_names
    seeds = np.arange(40, dtype=np.int32)
    users = (np.arange(40) * 3 % ds.n_users).astype(np.int32)
    top = engine.mixer.top(seeds, 30)
    rc = ranker.config
    for mode, score in (("complete", ranker.score), ("discover", ranker.score_new)):
        used = ranker.used_columns(mode)
        assert used.shape == (len(names),) and used.any()
        mixed = (
            ranking_candidates(top, feats, seeds, users, engine.mixer.available)
            if mode == "complete"
            else discovery_candidates(
                top, feats, seeds, users, engine.mixer.available, rc.discover_candidates
            )
        )
        valid = mixed.item.ravel() >= 0
        full = feats.transform(seeds, users, mixed)[valid]
        lean = feats.transform(seeds, users, mixed, columns=used)[valid]
        skipped = [j for j, _ in feats._per_call if not used[j]]
        assert np.isnan(lean[:, skipped]).all()
        np.testing.assert_array_equal(score(lean), score(full))  # the same scores
        # leaving out a column the trees do split on changes them: the check can fail
        split = [j for j, _ in feats._per_call if used[j]]
        off = used.copy()
        off[split] = False
        assert not np.array_equal(
            score(feats.transform(seeds, users, mixed, columns=off)[valid]), score(full)
        )
    # a repeat feature is constant (0) over items new to the user: no discovery tree reads it
    assert not ranker.used_columns("discover")[names.index("user_bought_cand")]


def test_quiet_hours_offset_and_time_buckets() -> None:
    from recset.ranking._builtin_features import trip_time_bucket
    from recset.ranking._feature_base import quiet_hours_offset

    hour = 3600
    # purchases at every UTC hour but 5-10: the shops' night starts at 05:00 UTC
    busy = [h for h in range(24) if not 5 <= h <= 10]
    assert quiet_hours_offset(np.array(busy * 3) * hour) == -5
    # 1970-01-03 was a Saturday: 12:30 UTC is band 12-16 on a weekend; 13 hours earlier,
    # 23:30 on Friday, the band from 20 on a weekday
    t = np.array([2 * 86400 + 12 * hour + 1800])
    assert trip_time_bucket(t, 0).tolist() == [1 * 2 + 1]
    assert trip_time_bucket(t, -13).tolist() == [3 * 2 + 0]


def test_time_of_week_features_hand_computed() -> None:
    from recset.ranking import BASE_FEATURES

    name = "user_cand_time_share"
    assert name not in BASE_FEATURES
    day, hour = 86400, 3600  # 1970-01-05 (day 4) was a Monday
    trips = [
        ("u", ["a", "b"], 4 * day + 9 * hour),  # Monday morning
        ("u", ["a"], 5 * day + 9 * hour),  # Tuesday morning
        ("u", ["c"], 6 * day + 18 * hour),  # Wednesday 16-20
        ("u", ["b", "c"], 9 * day + 10 * hour),  # Saturday morning
        ("v", ["a", "d"], 7 * day + 13 * hour),  # Thursday 12-16
    ]
    rows = [
        (user, it, "purchase", t + j, f"o{o}")
        for o, (user, items, t) in enumerate(trips)
        for j, it in enumerate(items)
    ]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "event", "timestamp", "order_id"])
    cat = pd.DataFrame({"item_id": list("abcd"), "category_id": ["c"] * 4})
    ds = Dataset.from_frames(cat, ev)
    feats = FeatureSpace.fit(ds, ("x",), extra_features=(name, "cand_time_lift"))
    j = feats.names.index(name)

    def at(when: int, user: str | None = "u") -> list[float]:
        return _query(ds, feats, "a", user, ["a", "b", "c", "d"], when=when)[:, j].tolist()

    # u's overall trip shares: a, b, c 2/4 each; two pseudo-trips at those shares
    # a Monday morning: u's 2 weekday-morning trips hold a twice, b once, c never
    assert at(11 * day + 8 * hour) == pytest.approx([3 / 4, 2 / 4, 1 / 4, 0.0])
    # a Sunday morning: u's one weekend-morning trip holds b and c
    assert at(10 * day + 11 * hour) == pytest.approx([1 / 3, 2 / 3, 2 / 3, 0.0])
    # a Monday night: no trip of u then, the overall shares
    assert at(11 * day + 22 * hour) == pytest.approx([0.5, 0.5, 0.5, 0.0])
    assert np.isnan(at(11 * day, user=None)).all()
    # cand_time_lift: 8 purchases, 3 on weekday mornings (a twice, b once); each item's
    # counts shrunk by 20 pseudo-purchases spread as all purchases are
    k = feats.names.index("cand_time_lift")
    lift = _query(ds, feats, "a", None, ["a", "b", "c", "d"], when=11 * day + 8 * hour)[:, k]
    p = 3 / 8
    want = [(2 + 20 * p) / 23, (1 + 20 * p) / 22, (20 * p) / 22, (20 * p) / 21]
    assert lift.tolist() == pytest.approx(np.log(np.array(want) / p).tolist())
    # no purchase ever on a Monday night: no lift either way
    lift = _query(ds, feats, "a", None, ["a", "d"], when=11 * day + 22 * hour)[:, k]
    assert lift.tolist() == [0.0, 0.0]
    # several requests at different times in one call (a backtest batch) read each item's
    # row directly; each alone reads the cached values of its bucket: the same numbers
    from recset.pipeline import Candidates

    times = [11 * day + 8 * hour, 10 * day + 11 * hour, 11 * day + 22 * hour, 7 * day + 13 * hour]
    rng = np.random.default_rng(0)
    items = rng.integers(0, 4, size=(len(times), 6)).astype(np.int32)
    n = items.shape[1]

    def batch_of(rows: np.ndarray) -> Candidates:
        shape = (len(rows), n)
        return Candidates(
            items[rows],
            np.zeros(shape, np.float32),
            np.full((*shape, 1), np.nan, np.float32),
            np.full((*shape, 1), -1, np.int32),
            ("x",),
        )

    seeds, users = np.zeros(len(times), np.int32), np.zeros(len(times), np.int32)
    at_times = np.array(times, np.int64)
    whole = feats.transform(seeds, users, batch_of(np.arange(len(times))), at_times)[:, k]
    alone = [
        feats.transform(seeds[:1], users[:1], batch_of(np.array([r])), at_times[r : r + 1])[:, k]
        for r in range(len(times))
    ]
    assert whole.tolist() == np.concatenate(alone).tolist()
