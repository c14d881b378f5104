"""Ranker: batch features vs a slow reference, planted signal, artifacts, refusal."""

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sparse
from hypothesis import given
from hypothesis import strategies as st

from recset.config import config_from_dict
from recset.data import PURCHASE, Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.engine import Engine
from recset.errors import ConfigError
from recset.ranking import (
    BASE_FEATURES,
    FeatureSpace,
    Ranker,
    feature_names,
    fit_features,
    train_ranker,
)
from recset.ranking._features import aspect_tokens
from recset.ranking._ranker import ranker_features
from recset.testing import recommend_dense


@pytest.fixture(scope="module")
def ds() -> Dataset:
    syn = generate(SyntheticConfig(n_items=800, seed=3, brand_affinity=1.0))
    return Dataset.from_frames(syn.catalog, syn.events)


@pytest.fixture(scope="module")
def engine(ds: Dataset) -> Engine:
    return Engine.build(ds)


@dataclass
class _Slot:
    """One (seed, user, candidate) slot of the mix and the extra inputs of the features."""

    seed: int
    user: int
    cand: int
    rank: int  # the candidate's position in the mix
    fused: float
    source_rank: np.ndarray  # (n_sources,)
    embeddings: np.ndarray
    relatedness: dict[tuple[int, int], float]
    compat: tuple[np.ndarray, np.ndarray]


def _reference_row(ds: Dataset, slot: _Slot) -> dict[str, float]:
    """The base features of one (seed, user, candidate), computed the slow, obvious way."""
    seed, user, cand = slot.seed, slot.user, slot.cand
    ev = ds.events
    buy = ev.event == PURCHASE
    pop = np.bincount(ev.item[buy], minlength=ds.n_items).astype(float)
    total = pop.sum()
    cat = ds.catalog.category
    ref = ds.time_range[1]
    out: dict[str, float] = {}
    out["n_sources"] = float((slot.source_rank >= 0).sum())
    out["fused_score"] = slot.fused if math.isfinite(slot.fused) else math.nan
    out["fused_rank"] = float(slot.rank)
    out["cand_pop"] = pop[cand] / total * 1e6
    out["cand_pop_log"] = math.log1p(out["cand_pop"])
    out["seed_pop_log"] = math.log1p(pop[seed] / total * 1e6)
    # recent popularity share (purchases decayed with a 14-day half-life) / overall share
    age_days = np.maximum(ref - ev.timestamp[buy], 0) / 86400
    recent = np.bincount(ev.item[buy], weights=0.5 ** (age_days / 14), minlength=ds.n_items)
    out["cand_trend"] = (
        (recent[cand] / recent.sum()) / (pop[cand] / total) if pop[cand] else math.nan
    )
    cs, cc = int(cat[seed]), int(cat[cand])
    out["category_relatedness"] = (
        slot.relatedness.get((cs, cc), math.nan) if cs >= 0 and cc >= 0 else math.nan
    )
    e_s, e_c = slot.embeddings[seed], slot.embeddings[cand]
    out["text_similarity"] = float(e_s @ e_c) if e_s.any() and e_c.any() else math.nan
    verdicts = {
        bool(a == b)
        for a, b in zip(slot.compat[0][:, seed], slot.compat[1][:, cand], strict=True)
        if a >= 0 and b >= 0
    }
    out["compatible"] = 0.0 if False in verdicts else 1.0 if True in verdicts else math.nan
    cat_pop = pop[cat == cat[cand]].sum() if cat[cand] >= 0 else 0
    out["cand_pop_in_category"] = pop[cand] / cat_pop if cat_pop else math.nan

    def same(arr: np.ndarray) -> float:
        a, b = arr[seed], arr[cand]
        return math.nan if a < 0 or b < 0 else float(a == b)

    out["same_brand"] = same(ds.catalog.brand)
    out["same_category"] = same(ds.catalog.category)
    out["same_type"] = same(ds.catalog.product_type)
    p_s, p_c = ds.catalog.price[seed], ds.catalog.price[cand]
    out["price_ratio_log"] = math.log(p_c / p_s) if p_s > 0 and p_c > 0 else math.nan
    mine = buy & (ev.user == user)
    bought = mine & (ev.item == cand)
    out["user_bought_cand"] = float(bought.sum())
    last_mine = ev.timestamp[mine].max() if mine.any() else math.nan
    out["user_days_since_cand"] = (
        (last_mine - ev.timestamp[bought].max()) / 86400 if bought.any() else math.nan
    )
    # trips: the user's orders (or single purchase times without one), by start time
    trips: dict[object, int] = {}
    for o, t in zip(ev.order[mine].tolist(), ev.timestamp[mine].tolist(), strict=True):
        key = ("o", o) if o >= 0 else ("t", t)
        trips[key] = min(trips.get(key, t), t)
    ordered = sorted(trips, key=lambda k: (trips[k], k))
    with_cand = {
        ("o", o) if o >= 0 else ("t", t)
        for o, t in zip(ev.order[bought].tolist(), ev.timestamp[bought].tolist(), strict=True)
    }
    if mine.any():
        last_idx = max((ordered.index(k) for k in with_cand), default=None)
        out["user_trips_since_cand"] = (
            len(ordered) - 1 - last_idx if last_idx is not None else math.nan
        )
        out["user_cand_trip_share"] = len(with_cand) / len(ordered)
    out["user_n_trips_log"] = math.log1p(len(ordered))
    # repeat propensity of the candidate: buyers with >= 2 trips holding it / its buyers
    trips_by_user: dict[int, set[object]] = {}
    for uu, o, t in zip(
        ev.user[buy & (ev.item == cand)].tolist(),
        ev.order[buy & (ev.item == cand)].tolist(),
        ev.timestamp[buy & (ev.item == cand)].tolist(),
        strict=True,
    ):
        trips_by_user.setdefault(uu, set()).add(("o", o) if o >= 0 else ("t", t))
    n_buyers = len(trips_by_user)
    out["cand_repeat_rate"] = (
        sum(len(v) >= 2 for v in trips_by_user.values()) / n_buyers if n_buyers else math.nan
    )
    n_mine = mine.sum()
    in_cat = (cat[ev.item[mine]] == cat[cand]).sum()
    out["user_category_share"] = in_cat / n_mine if n_mine else 0.0
    br = ds.catalog.brand
    out["user_brand_share"] = (br[ev.item[mine]] == br[cand]).sum() / n_mine if n_mine else 0.0
    out["user_n_purchases_log"] = math.log1p(n_mine)
    out["user_aspect_share"] = _reference_aspect_share(ds, ev.item[mine], cand)
    first = ev.timestamp[ev.item == cand]
    out["cand_age_days"] = (ref - first.min()) / 86400 if len(first) else math.nan
    out["hist_copurchase"] = _reference_hist_copurchase(ds, user, cand)
    # buyers whose last purchase of cand is in the last fifth of the time range: the share
    # of them whose first purchase of it is in that window too
    t0, t1 = ds.time_range
    start = t1 - 0.2 * (t1 - t0)
    by_user: dict[int, list[int]] = {}
    for uu, t in zip(
        ev.user[buy & (ev.item == cand)].tolist(),
        ev.timestamp[buy & (ev.item == cand)].tolist(),
        strict=True,
    ):
        by_user.setdefault(uu, []).append(t)
    recent = [ts for ts in by_user.values() if max(ts) >= start]
    out["cand_first_share"] = (
        sum(min(ts) >= start for ts in recent) / len(recent) if recent else math.nan
    )
    return out


def _reference_hist_copurchase(ds: Dataset, user: int, cand: int) -> float:
    """Mean over the user's 30 most-bought items (trips, then purchases, then lower id) of
    P(cand | h) over baskets, counted only when cand is among h's 50 strongest."""
    ev = ds.events
    buy = ev.event == PURCHASE
    mine = buy & (ev.user == user)
    if not mine.any():
        return 0.0
    items = ev.item[mine].tolist()
    trips = {}
    for it, o in zip(items, ev.order[mine].tolist(), strict=True):
        trips.setdefault(it, set()).add(o)
    counts = {it: items.count(it) for it in trips}
    hist = sorted(trips, key=lambda it: (-(len(trips[it]) + 1e-6 * counts[it]), it))[:30]
    baskets = [
        set(ds.baskets.item[a:b].tolist())
        for a, b in zip(ds.baskets.indptr[:-1], ds.baskets.indptr[1:], strict=True)
    ]
    total = 0.0
    for h in hist:
        with_h = [b for b in baskets if h in b]
        co: dict[int, int] = {}
        for b in with_h:
            for x in b:
                if x != h:
                    co[x] = co.get(x, 0) + 1
        top = sorted(co, key=lambda x: (-co[x], x))[:50]
        if cand in top:
            total += co[cand] / len(with_h)
    return total / len(hist)


def _item_tokens(ds: Dataset, item: int) -> set[str]:
    raw = ds.catalog.aspects[item]
    return {f"{k}={v}" for k, v in (json.loads(raw) if raw else {}).items() if v is not None}


def _reference_aspect_share(ds: Dataset, bought: np.ndarray, cand: int) -> float:
    """Mean over the candidate's shared tokens (on >= 2 items) of the user's purchase share."""
    counts: dict[str, int] = {}
    for i in range(ds.n_items):
        for t in _item_tokens(ds, i):
            counts[t] = counts.get(t, 0) + 1
    toks = [t for t in _item_tokens(ds, cand) if counts[t] >= 2]
    if not toks:
        return math.nan
    shares = [
        sum(t in _item_tokens(ds, int(i)) for i in bought) / len(bought) if len(bought) else 0.0
        for t in toks
    ]
    return sum(shares) / len(shares)


def test_aspect_tokens_keep_shared_scalar_values() -> None:
    aspects = np.array(
        [
            '{"color": "red", "size": [1, 2], "model": "A-1"}',
            '{"color": "red", "organic": true}',
            None,
            '{"color": "blue", "organic": true, "note": null}',
            '{"color": "blue", "model": "B-2"}',
        ],
        dtype=object,
    )
    indptr, tok = aspect_tokens(aspects)
    rows = [sorted(tok[indptr[i] : indptr[i + 1]].tolist()) for i in range(len(aspects))]
    # kept: color=blue, color=red, organic=True (two items each); ids by (-count, text)
    assert rows == [[1], [1, 2], [], [0, 2], [0]]
    indptr, tok = aspect_tokens(aspects, max_tokens=1)
    assert tok.tolist() == [0, 0]  # only color=blue, on items 3 and 4
    assert indptr.tolist() == [0, 0, 0, 0, 1, 2]


def test_feature_file_of_older_version_is_refused(
    ds: Dataset, engine: Engine, tmp_path: Path
) -> None:
    # a ranker directory from before the versioned format holds features.npz only
    feats = fit_features(ds, engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32))
    np.savez(tmp_path / "features.npz", allow_pickle=False, user_n=np.zeros(3))
    with pytest.raises(ConfigError, match=r"features.*missing.*train-ranker"):
        FeatureSpace.load(tmp_path / "features")
    feats.save(tmp_path / "features")
    again = FeatureSpace.load(tmp_path / "features")
    assert again.names == feats.names


def _compat_codes(engine: Engine) -> tuple[np.ndarray, np.ndarray]:
    for src in engine.mixer.sources.values():
        if type(src).name == "compatibility":
            return src.seed_codes_, src.cand_codes_
    raise AssertionError("the test engine has no compatibility source")


@pytest.fixture(scope="module")
def reference_case(ds: Dataset, engine: Engine) -> tuple:
    """Batch features of 12 seeds x 15 candidates and the slow reference of every slot."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((ds.n_items, 4)).astype(np.float32)
    emb[::5] = 0  # items without a text vector
    n_cat = ds.n_categories
    rel = sparse.random(n_cat, n_cat, density=0.5, random_state=0, format="coo")
    compat = _compat_codes(engine)
    feats = FeatureSpace.fit(
        ds,
        engine.source_names,
        embeddings=emb,
        category_relatedness=rel.tocsr(),
        compat_codes=compat,
    )
    seeds = rng.integers(0, ds.n_items, 12).astype(np.int32)
    users = rng.integers(0, ds.n_users, 12).astype(np.int32)
    mixed = recommend_dense(engine, seeds, 15)
    X = feats.transform(seeds, users, mixed)
    relatedness = {
        (int(r), int(c)): float(v) for r, c, v in zip(rel.row, rel.col, rel.data, strict=True)
    }
    refs: dict[tuple[int, int], dict[str, float]] = {}
    for row in range(len(seeds)):
        for j in range(mixed.item.shape[1]):
            cand = int(mixed.item[row, j])
            if cand < 0:
                continue
            slot = _Slot(
                int(seeds[row]),
                int(users[row]),
                cand,
                j,
                float(mixed.score[row, j]),
                mixed.source_rank[row, j],
                emb,
                relatedness,
                compat,
            )
            refs[row, j] = _reference_row(ds, slot)
    return feats, mixed, X, refs


@pytest.mark.parametrize("name", BASE_FEATURES)
def test_batch_features_equal_slow_reference(name: str, reference_case: tuple) -> None:
    feats, mixed, X, refs = reference_case
    col = feats.names.index(name)
    width = mixed.item.shape[1]
    checked = known = 0
    for (row, j), ref in refs.items():
        assert name in ref, f"no slow reference for the built-in feature {name!r}"
        want, value = ref[name], float(X[row * width + j, col])
        if math.isnan(want):
            assert math.isnan(value), (name, row, j, value)
        else:
            assert value == pytest.approx(want, rel=1e-4, abs=1e-4), (name, row, j)
            known += 1
        checked += 1
    assert checked > 100 and known > 0


def test_source_columns_equal_the_mix(reference_case: tuple) -> None:
    # per-source score/rank: NaN exactly where the source did not propose it
    feats, mixed, X, _ = reference_case
    names = feats.names
    Xr = X.reshape(*mixed.item.shape, -1)
    for s, src in enumerate(mixed.sources):
        r = mixed.source_rank[:, :, s]
        rank = Xr[:, :, names.index(f"{src}__rank")]
        score = Xr[:, :, names.index(f"{src}__score")]
        ok = mixed.item >= 0
        assert np.isnan(rank[ok & (r < 0)]).all()
        assert (rank[ok & (r >= 0)] == r[ok & (r >= 0)]).all()
        assert np.array_equal(score[ok], mixed.source_score[:, :, s][ok], equal_nan=True)
    assert np.isnan(Xr[mixed.item < 0]).all()


def test_transform_is_bit_identical_to_each_column_alone(reference_case: tuple) -> None:
    # the fused transform (strided per-source writes, cached masks) must give exactly what
    # each column object computes on its own, for unknown seeds and users too
    from recset.ranking._feature_base import FeatureBatch

    feats, mixed, _, _ = reference_case
    n = mixed.item.shape[0]
    seeds = np.arange(n, dtype=np.int32)
    seeds[0], seeds[1] = -1, feats.n_items + 3  # unknown seeds
    users = np.arange(n, dtype=np.int32) % feats.n_users
    users[2], users[3] = -1, feats.n_users + 5  # unknown users
    X = feats.transform(seeds, users, mixed)
    batch = FeatureBatch(seeds, users, mixed, n_items=feats.n_items, n_users=feats.n_users)
    for j, col in enumerate(feats.columns):
        want = np.asarray(col.transform(batch)).astype(np.float32)
        want[~batch.valid] = np.nan
        assert np.array_equal(X[:, j], want, equal_nan=True), col.name


def test_unknown_user_has_nan_personal_features(ds: Dataset, engine: Engine) -> None:
    feats = fit_features(ds, engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32))
    mixed = recommend_dense(engine, np.array([1], np.int32), 5)
    X = feats.transform(np.array([1]), np.array([-1]), mixed)
    for name in (
        "user_bought_cand",
        "user_days_since_cand",
        "user_trips_since_cand",
        "user_cand_trip_share",
        "user_n_trips_log",
        "user_brand_share",
        "user_aspect_share",
    ):
        assert np.isnan(X[:, feats.names.index(name)]).all()


@pytest.fixture(scope="module")
def ranker(ds: Dataset) -> Ranker:
    cfg = config_from_dict({"ranker": {"max_queries": 3000, "n_estimators": 60}})
    return train_ranker(ds, cfg, embeddings=np.zeros((ds.n_items, 0), np.float32))


def test_planted_signal_ranks_first(ranker: Ranker) -> None:
    # every purchase is of the user's planted brand (brand_affinity=1): the user's brand
    # share must be the ranker's strongest personal signal
    top = [name for name, _ in ranker.importance()[:3]]
    assert "user_brand_share" in top, ranker.importance()[:6]
    assert ranker.metrics["valid_ndcg@10"] > 0.2
    # the model keeps the trees of the best validation round, no more
    trees = ranker.metrics["trees"]
    assert ranker.booster.current_iteration() == trees <= ranker.metrics["best_iteration"]
    assert ranker.metrics["valid_ndcg@10"] == max(ranker.valid_curve[:trees])


def test_kept_trees_by_validation_curve() -> None:
    from recset.ranking._ranker import RankerConfig, _kept_trees

    curve = [0.1, 0.3, 0.395, 0.40, 0.38, 0.41, 0.2]
    assert _kept_trees(curve, 6, RankerConfig()) == 6  # the best of the first 6 rounds
    assert _kept_trees(curve, 5, RankerConfig()) == 4  # rounds after `best` never count
    assert _kept_trees(curve, 6, RankerConfig(trees_tolerance=0.02)) == 3  # 0.395 >= 0.39
    assert _kept_trees(curve, 6, RankerConfig(trees_tolerance=0.01)) == 4
    assert _kept_trees(curve, 6, RankerConfig(trees_tolerance=0.02, max_trees=2)) == 2
    assert _kept_trees(curve, 6, RankerConfig(trees_tolerance=1.0)) == 1
    assert _kept_trees([], 50, RankerConfig(max_trees=30)) == 30  # no validation queries
    assert _kept_trees([], 20, RankerConfig(max_trees=30)) == 20


def test_ranker_beats_mix_order_on_label_window(ds: Dataset, ranker: Ranker) -> None:
    from recset.eval.backtest import System, engine_system, evaluate_system
    from recset.eval.splits import basket_queries, time_split

    sp = time_split(ds)
    engine = Engine.build(sp.train)
    ranker.features = fit_features(
        sp.train,
        engine.mixer,
        embeddings=np.zeros((ds.n_items, 0), np.float32),
        user_candidates=ranker.config.user_candidates,
        extra_features=ranker_features(ranker.config, sp.train),
    )
    q = basket_queries(sp.test)
    plain = evaluate_system(engine_system(engine), sp, q)["item"]
    ranked_engine = engine.with_ranker(ranker)

    def rec(seeds, users, k):  # noqa: ANN001, ANN202
        batch = recommend_dense(ranked_engine, seeds, k, users=users)
        return batch.item, batch.item[:, -1] >= 0

    ranked = evaluate_system(System("mix+ranker", "recset", rec), sp, q)["item"]
    assert ranked["hit@10"] > plain["hit@10"]


def _has_lleaves() -> bool:
    try:
        import lleaves  # noqa: F401
    except ImportError:
        return False
    return True


def test_save_load_and_mismatch_refused(ranker: Ranker, engine: Engine, tmp_path: Path) -> None:
    ranker.save(tmp_path / "r")
    again = Ranker.load(tmp_path / "r", sources=engine.source_names)
    rng = np.random.default_rng(1)
    X = rng.random((300, len(ranker.feature_names))).astype(np.float32)
    X[rng.random(X.shape) < 0.3] = np.nan
    want = np.asarray(ranker.booster.predict(X))
    assert np.ptp(want) > 0
    # the compiled model (recset[fast]) scores as LightGBM does, to 1e-6
    assert again.scorer_kind == ("lleaves" if _has_lleaves() else "lightgbm")
    assert np.abs(again.score(X) - want).max() < 1e-6
    assert np.abs(ranker.score(X) - want).max() < 1e-6
    plain = Ranker.load(tmp_path / "r", compiled=False)
    assert plain.scorer_kind == "lightgbm" and np.array_equal(plain.score(X), want)
    assert again.users == ranker.users and again.metrics == ranker.metrics
    assert again.config == ranker.config
    doc = json.loads((tmp_path / "r" / "ranker.json").read_text())
    doc["meta"]["feature_names"] = doc["meta"]["feature_names"][:-1] + ["renamed_feature"]
    (tmp_path / "r" / "ranker.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="retrain it"):
        Ranker.load(tmp_path / "r", sources=engine.source_names)
    other = Engine.build(
        Dataset.from_frames(*_tiny()), config_from_dict({"mix": {"sources": ["popular"]}})
    )
    with pytest.raises(ConfigError, match="reads sources"):
        other.with_ranker(again)
    assert feature_names(("a",))[:2] == ["a__score", "a__rank"]


def test_old_layout_is_refused_with_retrain(ranker: Ranker, tmp_path: Path) -> None:
    # the layout before the versioned state: ranker.json without a kind, users.json
    d = tmp_path / "r"
    ranker.save(d)
    doc = json.loads((d / "ranker.json").read_text())
    users = doc["meta"].pop("users")
    (d / "ranker.json").write_text(json.dumps(doc["meta"]))
    (d / "users.json").write_text(json.dumps(users))
    (d / "ranker.npz").unlink()
    with pytest.raises(ConfigError, match=r"ranker\.json.*retrain it with `recset train-ranker`"):
        Ranker.load(d)
    # a ranker state of another format version is refused the same way
    ranker.save(tmp_path / "v")
    doc = json.loads((tmp_path / "v" / "ranker.json").read_text())
    doc["format_version"] = 99
    (tmp_path / "v" / "ranker.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="format version 99.*recset train-ranker"):
        Ranker.load(tmp_path / "v")


def _tiny():  # noqa: ANN202
    import pandas as pd

    cat = pd.DataFrame({"item_id": ["a", "b"], "category_id": ["c", "c"]})
    ev = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "item_id": ["a", "b"],
            "event": "purchase",
            "timestamp": [1, 2],
            "order_id": ["o", "o"],
        }
    )
    return cat, ev


def test_ranking_candidates_add_user_history(ds: Dataset, engine: Engine) -> None:
    from recset.ranking import USER_HISTORY, ranking_candidates

    feats = fit_features(
        ds, engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32), user_candidates=10
    )
    assert feats.sources[-1] == USER_HISTORY
    users = np.array([0, 1, -1], np.int32)
    seeds = np.array([5, int(feats.user_top[1, 0]), 7], np.int32)
    mixed = ranking_candidates(
        engine.mixer.top(seeds, 20), feats, seeds, users, engine.mixer.available
    )
    h = len(mixed.sources) - 1
    for r, u in enumerate(users.tolist()):
        row = mixed.item[r]
        real = row[row >= 0]
        assert len(np.unique(real)) == len(real) and seeds[r] not in real
        assert ds.catalog.available[real].all()
        marked = set(row[mixed.source_rank[r, :, h] >= 0].tolist())
        if u < 0:
            assert not marked
            continue
        expect = {
            int(i)
            for i in feats.user_top[u]
            if i >= 0 and i != seeds[r] and ds.catalog.available[i]
        }
        assert marked == expect  # every history item present and marked, nothing else
    X = feats.transform(seeds, users, mixed)
    assert X.shape == (mixed.item.size, len(feats.names))


def test_leave_last_label_window(ds: Dataset) -> None:
    # the label window is each user's last basket: at most one labelled basket per user
    from recset.eval.splits import basket_queries, leave_last_split

    cfg = config_from_dict(
        {"ranker": {"max_queries": 3000, "n_estimators": 20, "label_split": "leave_last"}}
    )
    model = train_ranker(ds, cfg, embeddings=np.zeros((ds.n_items, 0), np.float32))
    n_queries = len(basket_queries(leave_last_split(ds).test))
    used = model.metrics["train_queries"] + model.metrics["valid_queries"]
    assert 0 < used <= n_queries
    assert model.metrics["valid_queries"] > 0


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.integers(1, n),
            st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0]),
        )
    )
)
def test_reserve_share_properties(case: tuple) -> None:
    from recset.ranking._stage import _reserve_share

    valid_l, novel_l, k, share = case
    n = len(valid_l)
    valid = np.array([sorted(valid_l, reverse=True)])  # real candidates first, padding after
    novel = np.array([novel_l]) & valid
    order = np.arange(n)[None, :]
    out = _reserve_share(order, valid, novel, k, share)[0]
    assert sorted(out.tolist()) == list(range(n))  # a permutation of the columns
    n_valid, n_novel = int(valid.sum()), int(novel.sum())
    top = out[:k]
    assert valid[0, top].sum() == min(k, n_valid)  # never fewer real items than available
    assert (valid[0, top[: min(k, n_valid)]]).all()  # real items before padding
    for m in range(1, k + 1):
        got = int(novel[0, top[:m]].sum())
        assert got >= min(int(np.floor(share * m + 1e-9)), n_novel), (m, got)
    # within the novel and within the repeat items, the ranked order is kept
    for flag in (True, False):
        part = [c for c in top.tolist() if valid[0, c] and novel[0, c] == flag]
        assert part == sorted(part)
    if share == 0:
        assert top.tolist()[: min(k, n_valid)] == list(range(min(k, n_valid)))


def test_explore_share_serves_items_the_user_never_bought(ds: Dataset, ranker: Ranker) -> None:
    engine = Engine.build(ds)
    ranker.features = fit_features(
        ds,
        engine.mixer,
        embeddings=np.zeros((ds.n_items, 0), np.float32),
        user_candidates=ranker.config.user_candidates,
        extra_features=ranker_features(ranker.config, ds),
    )
    seeds = np.arange(40, dtype=np.int32)
    users = (np.arange(40) % ds.n_users).astype(np.int32)
    plain = recommend_dense(engine.with_ranker(ranker), seeds, 10, users=users)
    explorer = copy.copy(ranker)
    explorer.config = ranker.config.model_copy(update={"explore_share": 0.4})
    explored = recommend_dense(engine.with_ranker(explorer), seeds, 10, users=users)
    novel_plain = (~ranker.features.bought(users, plain.item) & (plain.item >= 0)).sum(axis=1)
    novel_expl = (~ranker.features.bought(users, explored.item) & (explored.item >= 0)).sum(axis=1)
    assert (novel_expl >= novel_plain).all()
    assert (novel_expl >= 4).mean() > 0.9, novel_expl
    assert ((explored.item >= 0).sum(axis=1) == (plain.item >= 0).sum(axis=1)).all()


def test_boosting_rounds_report_progress_lines(caplog: pytest.LogCaptureFixture) -> None:
    from recset.ranking._ranker import _rounds

    caplog.set_level("INFO", logger="recset.progress")
    with _rounds("ranker: boosting rounds", 4, True, every=0.0) as callbacks:
        for _ in range(3):  # early stopping ends before the 4th round
            for cb in callbacks:
                cb(None)
    lines = [r.getMessage() for r in caplog.records if r.name == "recset.progress"]
    assert [line.split(" (")[0] for line in lines] == [
        "ranker: boosting rounds: 1/4",
        "ranker: boosting rounds: 2/4",
        "ranker: boosting rounds: 3/4",
    ]
    with _rounds("off", 4, False) as callbacks:
        assert callbacks == []


def test_ranker_stage_equals_a_row_by_row_reference(
    ds: Dataset, engine: Engine, ranker: Ranker
) -> None:
    """The served ranking (batched candidates, fused feature matrix, scorer, ordering) gives
    each seed the scores and the order that a plain reference gives it alone: its candidates,
    every column computed on its own and stacked, LightGBM's predict on all the trees."""
    from recset.pipeline import Request
    from recset.ranking import RankerStage, ranking_candidates
    from recset.ranking._feature_base import FeatureBatch

    rng = np.random.default_rng(5)
    seeds = rng.integers(0, ds.n_items, 9).astype(np.int32)
    seeds[4] = -1  # an unknown seed: the cold-start fill, ranked all the same
    users = rng.integers(0, len(ranker.users), 9).astype(np.int32)
    users[[2, 6]] = -1  # anonymous
    stage = RankerStage(ranker, engine.mixer.available)
    top = engine.mixer.top(seeds, stage.width(10))
    out = stage.run(Request.of(seeds, users, 10), top)
    feats = ranker.features
    rows = 0
    for i in range(len(seeds)):
        one = type(top)(
            top.item[i : i + 1], top.score[i : i + 1],
            top.source_score[i : i + 1], top.source_rank[i : i + 1], top.sources,
        )  # fmt: skip
        s, u = seeds[i : i + 1], users[i : i + 1]
        mixed = ranking_candidates(one, feats, s, u, engine.mixer.available)
        batch = FeatureBatch(s, u, mixed, n_items=feats.n_items, n_users=feats.n_users)
        X = np.column_stack([np.asarray(c.transform(batch)) for c in feats.columns])
        X = X.astype(np.float32)[batch.valid]
        want = ranker.booster.predict(X, num_threads=1)
        cand = mixed.item.ravel()[batch.valid]
        got_item, got_score = out.item[i][out.item[i] >= 0], out.score[i][out.item[i] >= 0]
        assert sorted(got_item.tolist()) == sorted(cand.tolist())  # the same candidates
        ref = dict(zip(cand.tolist(), want.tolist(), strict=True))
        got_ref = np.array([ref[c] for c in got_item.tolist()])
        assert np.abs(got_score - got_ref).max() < 1e-6  # each item's score
        assert np.all(np.diff(got_ref) <= 1e-6)  # best first by the reference scores
        assert np.ptp(want) > 0  # the trees really split
        rows += len(cand)
    assert rows > 9 * 20
