"""Benchmark of the type-transition model on a generated catalog with planted complement types.

Prints: training time; how well the predicted complementary types match the planted ones;
for co-purchase candidates (top-50 ``Signals.co_purchase`` neighbours per seed) the distinct
types in the top 10 and the share of top-10 items of a planted complementary type, before
and after :meth:`TypeTransition.diversify`; Hit@10 on the last 20% of baskets (seed: the
basket's first item; fitted on the first 80%) before and after; the time to diversify
10k rows x 100 candidates.

    PYTHONPATH=. .venv/bin/python bench/type_transition.py --items 20000 --threads 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _type_stats(tt, truth_comp, seeds, items, cols):  # noqa: ANN001, ANN202
    """List statistics: mean distinct types; for anchor seeds, the share of items and the
    number of distinct types that are planted complements; share of the seed's own type."""
    picked = np.where(cols >= 0, np.take_along_axis(items, np.maximum(cols, 0), axis=1), -1)
    types = np.where(picked >= 0, tt.type_of(picked), -1)
    distinct = np.mean([len(set(r[r >= 0].tolist())) for r in types])
    seed_t = tt.type_of(seeds)
    ok = truth_comp[np.maximum(seed_t, 0)].any(axis=1) & (seed_t >= 0)
    hits = truth_comp[seed_t[ok][:, None], np.maximum(types[ok], 0)] & (types[ok] >= 0)
    planted_distinct = np.mean(
        [len(set(r[h].tolist())) for r, h in zip(types[ok], hits, strict=True)]
    )
    same = (types == seed_t[:, None]) & (types >= 0)
    return (
        distinct,
        hits.sum() / max((picked[ok] >= 0).sum(), 1),
        planted_distinct,
        same.sum() / (picked >= 0).sum(),
        ok,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()

    import torch

    from recset.data import Dataset
    from recset.data.synthetic import SyntheticConfig, generate
    from recset.personalization._type_transition import (
        TypeTransitionConfig,
        train_type_transition,
    )
    from recset.signals import Signals, topk_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    syn = generate(SyntheticConfig(n_items=args.items, seed=args.seed))
    ds = Dataset.from_frames(syn.catalog, syn.events)
    signals = Signals(ds)
    t0 = time.perf_counter()
    _ = signals.co_purchase_only_substitution, signals.co_purchase_directed
    t1 = time.perf_counter()
    cfg = TypeTransitionConfig(device="cpu")
    tt = train_type_transition(ds, cfg, signals=signals)
    t2 = time.perf_counter()
    print(f"{ds!r}; torch threads {torch.get_num_threads()}")
    print(
        f"training: {t2 - t1:.1f} s ({tt.stats_['pairs']} type pairs, {cfg.epochs} epochs; "
        f"+{t1 - t0:.1f} s for the co-purchase signals)"
    )

    # predicted complementary types against the planted ones
    names = tt.type_names_
    idx = {n: i for i, n in enumerate(names)}
    truth = syn.truth["complementary_types"]
    truth_comp = np.zeros((tt.n_types, tt.n_types), dtype=bool)
    for a, comps in truth.items():
        for c in comps:
            truth_comp[idx[a], idx[c]] = True
    anchors = np.array([idx[a] for a, c in truth.items() if c])
    types, _ = tt.complement_types(anchors)
    n_truth = truth_comp[anchors].sum(axis=1)
    top_hits = sum(
        truth_comp[a, t[:n][t[:n] >= 0]].sum()
        for a, t, n in zip(anchors, types, n_truth, strict=True)
    )
    listed = types >= 0
    list_hits = truth_comp[anchors[:, None], np.maximum(types, 0)] & listed
    reverse = sum(
        int(a in tt.complement_types(np.array([idx[c]]))[0][0])
        for a_name, comps in truth.items()
        for a in [idx[a_name]]
        for c in comps
    )
    print(
        f"planted types: precision@|truth| {top_hits / n_truth.sum():.3f} over "
        f"{len(anchors)} anchor types; precision of the returned lists "
        f"{list_hits.sum() / listed.sum():.3f} ({listed.sum()} types listed, recall "
        f"{list_hits.sum() / n_truth.sum():.3f}); complement -> its anchor predicted "
        f"{reverse} of {int(n_truth.sum())} times"
    )

    # co-purchase candidates, before / after
    cand, score = topk_rows(signals.co_purchase, args.candidates)
    seeds = np.flatnonzero((cand >= 0).sum(axis=1) >= args.k).astype(np.int32)
    cand, score = cand[seeds], score[seeds]
    before = np.argsort(-score, axis=1, kind="stable")[:, : args.k]
    t3 = time.perf_counter()
    after = tt.diversify(seeds, cand, score, args.k)
    t4 = time.perf_counter()
    b = _type_stats(tt, truth_comp, seeds, cand, before)
    a = _type_stats(tt, truth_comp, seeds, cand, after)
    print(
        f"co-purchase top-{args.candidates} candidates, {len(seeds)} seeds with >= {args.k}: "
        f"diversify {t4 - t3:.2f} s"
    )
    all_cols = np.broadcast_to(np.arange(cand.shape[1]), cand.shape)
    avail = _type_stats(tt, truth_comp, seeds, cand, all_cols)[2]
    print(f"  distinct types in top-{args.k}:            before {b[0]:.2f}  after {a[0]:.2f}")
    print(f"  planted-complement share (anchor seeds):  before {b[1]:.3f} after {a[1]:.3f}")
    print(
        f"  distinct planted types (anchor seeds):    before {b[2]:.2f}  after {a[2]:.2f}  "
        f"(in all {args.candidates} candidates: {avail:.2f}; {int(b[4].sum())} anchor seeds)"
    )
    print(f"  seed's own type share:                    before {b[3]:.3f} after {a[3]:.3f}")

    # held-out Hit@k: fit on the first 80% of baskets, seeds = first item of later baskets
    split = ds.order_time_quantile(0.8)
    train, test = ds.split_time(split)
    tr_signals = Signals(train)
    tt_train = train_type_transition(train, cfg, signals=tr_signals)
    cand, score = topk_rows(tr_signals.co_purchase, args.candidates)
    baskets = test.baskets
    sizes = baskets.sizes()
    g = np.flatnonzero(sizes >= 2)
    first = baskets.item[baskets.indptr[g]]
    cand, score = cand[first], score[first]
    before = np.argsort(-score, axis=1, kind="stable")[:, : args.k]
    after = tt_train.diversify(first, cand, score, args.k)
    res = {}
    for name, cols in (("before", before), ("after", after)):
        picked = np.where(cols >= 0, np.take_along_axis(cand, np.maximum(cols, 0), axis=1), -1)
        hit = [np.isin(picked[i], baskets.items_of(int(gi))[1:]).any() for i, gi in enumerate(g)]
        res[name] = float(np.mean(hit))
    print(
        f"held-out Hit@{args.k} ({len(g)} later baskets, seed = first item): "
        f"before {res['before']:.3f}  after {res['after']:.3f}"
    )

    # serving speed on random rows
    rng = np.random.default_rng(0)
    s = rng.integers(0, ds.n_items, 10_000)
    it = rng.integers(-1, ds.n_items, (10_000, 100))
    sc = rng.random((10_000, 100)).astype(np.float32)
    tt.diversify(s[:10], it[:10], sc[:10], args.k)
    t5 = time.perf_counter()
    tt.diversify(s, it, sc, args.k)
    print(f"diversify 10k rows x 100 candidates, k={args.k}: {time.perf_counter() - t5:.3f} s")


if __name__ == "__main__":
    main()
