"""How much can any personalized re-ranking add on top of the ranker? (synthetic data)

The synthetic generator plants each user's brand and colour (``truth.json``). This script
trains the engine's ranker on a time split (as ``recset backtest`` does), takes its
candidates and scores for every test query, and then learns a re-ranking of that list from
extra per-candidate signals with a small LightGBM lambdarank model, cross-fitted over two
halves of the test users (fit on one half, measured on the other, and back). Compared:

- ``ranker``: the ranker's own order;
- ``ranker (re-learned)``: the same cross-fitted model given only the ranker's score, the
  control for what re-learning alone changes;
- ``+ neural``: the personalized distance ``||(P theta_seed + v - theta_c) * u||^2`` and the
  neutral one (``u = 1, v = 0``) of a ``train_neural`` model fitted on the training part;
- ``+ oracle``: whether the candidate has the user's *true* planted brand and colour.

The oracle row bounds what any personalization that estimates those preferences from the
history can add to this ranker's list. The cross-fitting uses the test window, so these rows
are an analysis of head-room, not systems to report as backtest results.

Run: ``.venv/bin/python bench/personalization_ceiling.py --data .demo/data``
(``make demo`` writes ``.demo/data``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

from recset.data import basket_queries, load_dataset, time_split
from recset.engine import Engine
from recset.personalization import NeuralConfig, train_neural
from recset.ranking import RankerConfig, ranking_candidates, train_ranker
from recset.recall import embed_items


def _hits(items: NDArray[np.int32], queries, n_items: int) -> NDArray[np.bool_]:  # noqa: ANN001
    tg = queries.targets
    width = n_items + 1
    tk = np.sort(tg.query_of_entry().astype(np.int64) * width + tg.item)
    key = np.arange(len(items))[:, None].astype(np.int64) * width + np.maximum(items, 0)
    pos = np.minimum(np.searchsorted(tk, key), len(tk) - 1)
    return (tk[pos] == key) & (items >= 0)


def _hit_at(score: NDArray[np.float64], hit: NDArray[np.bool_], k: int) -> float:
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(hit, order, 1).any(axis=1).mean())


def _percentile(values: NDArray[np.float64], valid: NDArray[np.bool_]) -> NDArray[np.float64]:
    ranks = rankdata(np.where(valid, values, -np.inf), axis=1)
    return (ranks - (~valid).sum(1, keepdims=True)) / np.maximum(valid.sum(1, keepdims=True), 1)


def _cross_fitted(
    columns: list[NDArray[np.float64]],
    hit: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    fold: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Scores of a lambdarank model fitted on one fold of queries and applied to the other."""
    import lightgbm as lgb

    X = np.stack(columns, axis=-1)
    out = np.full(hit.shape, -np.inf)
    for train in (fold, ~fold):
        rows = np.flatnonzero(train & hit.any(axis=1))
        mask = valid[rows]
        params = {
            "objective": "lambdarank",
            "num_leaves": 7,
            "min_child_samples": 50,
            "learning_rate": 0.05,
            "deterministic": True,
            "num_threads": 2,
            "verbosity": -1,
            "seed": 0,
        }
        data = lgb.Dataset(X[rows][mask], hit[rows][mask].astype(float), group=mask.sum(1))
        model = lgb.train(params, data, num_boost_round=150)
        test = np.flatnonzero(~train)
        block = out[test]
        block[valid[test]] = model.predict(X[test][valid[test]])
        out[test] = block
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(".demo/data"))
    ap.add_argument("--test-share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    truth_file = args.data / "truth.json"
    if not truth_file.is_file():
        raise SystemExit(f"{truth_file}: missing; this bench needs a `recset generate` dataset")
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    ds = load_dataset(args.data)
    sp = time_split(ds, test_share=args.test_share)
    q = basket_queries(sp.test)
    t0 = time.perf_counter()
    engine = Engine.build(sp.train)
    emb = embed_items(sp.train)
    rc = RankerConfig(label_split="time")
    ranker = train_ranker(sp.train, None, rc, mixer=engine.mixer, embeddings=emb)
    top = engine.mixer.top(q.seed, rc.candidates)
    mixed = ranking_candidates(top, ranker.features, q.seed, q.user, engine.mixer.available)
    items = mixed.item
    valid = items >= 0
    X = ranker.features.transform(q.seed, q.user, mixed)
    flat = np.full(valid.size, -np.inf)
    flat[valid.ravel()] = ranker.score(X[valid.ravel()])
    score = flat.reshape(items.shape)
    t_ranker = time.perf_counter() - t0

    t0 = time.perf_counter()
    neural = train_neural(sp.train, NeuralConfig(blend_weight=0.0, seed=args.seed))
    u, v = neural._user_state(q.user)
    d_personal = np.nan_to_num(neural._distance(q.seed, items, u, v), nan=1e6)
    d_neutral = np.nan_to_num(neural._distance(q.seed, items, np.ones_like(u)), nan=1e6)
    t_neural = time.perf_counter() - t0

    prefs = truth["user_preferences"]
    user_ids = ds.users.values
    true_brand = np.array([prefs[x]["brand"] for x in user_ids], dtype=object)
    true_color = np.array([prefs[x]["color"] for x in user_ids], dtype=object)
    item_brand = np.asarray(ds.brands.values, dtype=object)[np.maximum(ds.catalog.brand, 0)]
    item_color = ds.catalog.aspect_values("color")
    c = np.maximum(items, 0)
    brand_match = (item_brand[c] == true_brand[q.user][:, None]).astype(float)
    color_match = (item_color[c] == true_color[q.user][:, None]).astype(float)

    hit = _hits(items, q, ds.n_items)
    fold = (np.random.default_rng(args.seed).random(ds.n_users) < 0.5)[q.user]
    base = [score, _percentile(score, valid)]
    rows = [
        ("ranker", score),
        ("ranker (re-learned)", _cross_fitted(base, hit, valid, fold)),
        (
            "+ neural distances",
            _cross_fitted(
                base + [-d_personal, -d_neutral, _percentile(-d_personal, valid)], hit, valid, fold
            ),
        ),
        (
            "+ oracle brand + colour",
            _cross_fitted(base + [brand_match, color_match], hit, valid, fold),
        ),
    ]
    print(
        f"{ds.name}: {len(q):,} test queries, {items.shape[1]} ranker candidates each "
        f"(targets in the list: {hit.any(axis=1).mean():.4f}); ranker {t_ranker:.0f} s, "
        f"train_neural {t_neural:.0f} s"
    )
    head = f"{'re-ranking of the ranker list':<32} {'Hit@1':>7} {'Hit@3':>7} {'Hit@10':>7}"
    print(f"{head}  vs ranker")
    ref = _hit_at(score, hit, 10)
    for name, s in rows:
        h = [_hit_at(s, hit, k) for k in (1, 3, 10)]
        print(f"{name:<32} {h[0]:>7.4f} {h[1]:>7.4f} {h[2]:>7.4f}  {h[2] / ref - 1:+.1%}")


if __name__ == "__main__":
    main()
