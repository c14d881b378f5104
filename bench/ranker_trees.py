"""Accuracy and scoring cost of the ranker against the number of trees it keeps.

Splits a dataset as ``recset backtest`` does, builds the engine and trains the ranker on the
training part only (its own fit / label / validation windows inside it), then, for each tree
cap: the ranker's validation NDCG@10 (the window cut from training, which chooses the cap:
``[ranker] trees_tolerance``), the test window's Hit@10 of ``mix+ranker`` (reported, never used
to choose), and the time to score 500 rows (LightGBM's predict and, with ``recset[fast]``,
the lleaves-compiled model, one thread).

    python bench/ranker_trees.py --data /work/rd/instacart --split leave_last
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/work/rd/instacart"))
    ap.add_argument("--split", choices=["time", "leave_last"], default="leave_last")
    ap.add_argument("--caps", type=int, nargs="+", default=[10, 20, 40, 80, 160, 300])
    ap.add_argument("--tolerances", type=float, nargs="+", default=[0.0, 0.001, 0.002, 0.005])
    args = ap.parse_args()

    import lightgbm as lgb

    from recset.data import load_dataset
    from recset.engine import Engine
    from recset.eval.backtest import evaluate_system, prepare, ranked_system
    from recset.ranking import RankerConfig, ranking_candidates, train_ranker
    from recset.ranking._compiled import BoosterScorer, compile_model
    from recset.ranking._ranker import _kept_trees

    ds = load_dataset(args.data)
    prep = prepare(ds, split=args.split)
    sp, queries = prep.split, prep.queries
    engine = Engine.build(sp.train)
    rc = RankerConfig(label_split=args.split)
    t0 = time.perf_counter()
    model = train_ranker(sp.train, None, rc, mixer=engine.mixer)
    curve = model.valid_curve
    print(
        f"{ds!r}: ranker trained in {time.perf_counter() - t0:.0f} s, {len(curve)} rounds, "
        f"best validation round {model.metrics['best_iteration']}, {len(queries)} test queries"
    )
    best = int(model.metrics["best_iteration"])
    for tol in args.tolerances:
        keep = _kept_trees(curve, best, rc.model_copy(update={"trees_tolerance": tol}))
        print(
            f"  trees_tolerance {tol:<6} keeps {keep} trees (valid NDCG@10 {curve[keep - 1]:.4f})"
        )
    seeds, users = np.arange(64, dtype=np.int32), np.zeros(64, np.int32)
    top = engine.mixer.top(seeds, rc.candidates)
    mixed = ranking_candidates(top, model.features, seeds, users, engine.mixer.available)
    X = model.features.transform(seeds, users, mixed)
    X = X[mixed.item.ravel() >= 0][:500]
    head = ("trees", "valid NDCG@10", "test Hit@10", "lightgbm ms", "lleaves ms")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (6, 14, 12, 12, 11), strict=True)))
    for cap in sorted({min(c, best) for c in args.caps}):
        booster = lgb.Booster(model_str=model.booster.model_to_string(num_iteration=cap))
        capped = dataclasses.replace(model, booster=booster, scorers=None)
        hit = evaluate_system(ranked_system(engine.with_ranker(capped)), sp, queries)["item"]
        plain = BoosterScorer(booster)
        t_lgb = _time(plain.predict, X)
        with tempfile.TemporaryDirectory() as d:
            booster.save_model(str(Path(d) / "model.txt"))
            fast = compile_model(Path(d) / "model.txt", cache=False)
        t_fast = f"{_time(fast.predict, X):11.3f}" if fast is not None else f"{'-':>11}"
        print(
            f"{cap:>6} {curve[cap - 1]:>14.4f} {hit['hit@10']:>12.4f} {t_lgb:>12.3f} {t_fast}",
            flush=True,
        )


def _time(fn, X, n: int = 200) -> float:  # noqa: ANN001
    """Median milliseconds of ``fn(X)``."""
    out = []
    for _ in range(n):
        a = time.perf_counter()
        fn(X)
        out.append(time.perf_counter() - a)
    return float(np.median(out) * 1e3)


if __name__ == "__main__":
    main()
