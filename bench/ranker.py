"""Benchmark of the ranking stage: features + LightGBM scoring of 500 candidates for one seed.

Trains a ranker on a generated catalog, then times, per call, the features of one seed's 500
candidates plus ``Ranker.score`` (in process, one thread), and ``Engine.recommend`` with the
ranker attached.

    .venv/bin/python bench/ranker.py --items 20000 --calls 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--candidates", type=int, default=500)
    ap.add_argument("--calls", type=int, default=2_000)
    args = ap.parse_args()

    from recset.config import config_from_dict
    from recset.data import Dataset
    from recset.data.synthetic import SyntheticConfig, generate
    from recset.engine import Engine
    from recset.ranking import ranking_candidates, train_ranker

    syn = generate(SyntheticConfig(n_items=args.items, seed=0))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    cfg = config_from_dict(
        {
            "build": {"candidates_per_seed": args.candidates},
            # a long fallback list, so that every seed really has `candidates` candidates
            "sources": {"popular": {"max_candidates": 2 * args.candidates}},
            "ranker": {"candidates": args.candidates, "max_queries": 5000},
        }
    )
    t0 = time.perf_counter()
    engine = Engine.build(ds, cfg)
    t1 = time.perf_counter()
    ranker = train_ranker(ds, cfg, mixer=engine.mixer)  # features refit on all of ds
    t2 = time.perf_counter()
    print(
        f"{ds!r}: engine build {t1 - t0:.1f} s, ranker training {t2 - t1:.1f} s "
        f"({ranker.metrics['best_iteration']} trees)"
    )
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, ds.n_items, args.calls).astype(np.int32)
    users = rng.integers(0, ds.n_users, args.calls).astype(np.int32)
    feat_t, score_t, n_cands = [], [], []
    for s, u in zip(seeds, users, strict=True):
        sa, ua = np.array([s], np.int32), np.array([u], np.int32)
        top = engine.mixer.top(sa, args.candidates)
        mixed = ranking_candidates(top, ranker.features, sa, ua, engine.mixer.available)
        a = time.perf_counter()
        X = ranker.features.transform(sa, ua, mixed)
        valid = mixed.item.ravel() >= 0
        b = time.perf_counter()
        ranker.score(X[valid])
        c = time.perf_counter()
        feat_t.append(b - a)
        score_t.append(c - b)
        n_cands.append(int((mixed.item >= 0).sum()))
    total = np.array(feat_t) + np.array(score_t)
    print(
        f"scoring one seed's candidates (mean {np.mean(n_cands):.0f} rows incl. padding-free "
        f"{args.candidates} + user history), {args.calls} calls:"
    )
    for label, arr in (("features", feat_t), ("LightGBM predict", score_t), ("total", total)):
        a = np.asarray(arr) * 1e3
        print(f"  {label:<18} p50 {np.percentile(a, 50):.3f} ms  p99 {np.percentile(a, 99):.3f} ms")
    ranked = engine.with_ranker(ranker)
    lat = []
    for s, u in zip(seeds[:500], users[:500], strict=True):
        a = time.perf_counter()
        ranked.recommend(ds.items.id_of(int(s)), user=ds.users.id_of(int(u)), k=10)
        lat.append(time.perf_counter() - a)
    lat_ms = np.asarray(lat) * 1e3
    print(
        f"Engine.recommend(k=10) with the ranker ({args.candidates} candidates): "
        f"p50 {np.percentile(lat_ms, 50):.3f} ms  p99 {np.percentile(lat_ms, 99):.3f} ms"
    )


if __name__ == "__main__":
    main()
