"""Accuracy and scoring cost of the ranker against the number of trees it keeps.

Splits a dataset as ``recset backtest`` does, builds the engine and trains the ranker on the
training part only (its own fit / label / validation windows inside it), then, for each tree
cap: the ranker's validation NDCG@10 (the window cut from training, which chooses the cap:
``[ranker] trees_tolerance``), the test window's Hit@10 of ``mix+ranker`` (reported, never used
to choose) with its 95% interval, the paired difference from the best validation round (the
``trees_tolerance = 0`` model) with its 95% interval (queries of one basket resampled together,
as ``recset backtest`` does), and the time to score 500 rows (LightGBM's predict and, with
``recset[fast]``, the lleaves-compiled model, one thread). The cut points that each
``--tolerances`` value keeps are always among those evaluated.

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
    ap.add_argument(
        "--no-timing", action="store_true", help="Skip the scoring times (and the compiling)."
    )
    args = ap.parse_args()

    import lightgbm as lgb

    from recset.data import load_dataset
    from recset.engine import Engine
    from recset.eval.backtest import (
        bootstrap_ci,
        evaluate,
        paired_difference,
        prepare,
        ranked_system,
        recommendations,
    )
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
    kept: dict[int, list[float]] = {}
    for tol in args.tolerances:
        keep = _kept_trees(curve, best, rc.model_copy(update={"trees_tolerance": tol}))
        kept.setdefault(keep, []).append(tol)
        print(
            f"  trees_tolerance {tol:<6} keeps {keep} trees (valid NDCG@10 {curve[keep - 1]:.4f})"
        )
    seeds, users = np.arange(64, dtype=np.int32), np.zeros(64, np.int32)
    top = engine.mixer.top(seeds, rc.candidates)
    mixed = ranking_candidates(top, model.features, seeds, users, engine.mixer.available)
    X = model.features.transform(seeds, users, mixed)
    X = X[mixed.item.ravel() >= 0][:500]
    head = ("trees", "valid NDCG@10", "test Hit@10", "95% CI", "diff vs best", "95% CI")
    head += ("lightgbm ms", "lleaves ms")
    widths = (6, 14, 12, 16, 13, 17, 12, 11)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True)))
    hits_of: dict[int, np.ndarray] = {}
    caps = sorted({min(c, best) for c in args.caps} | set(kept), key=lambda c: (c != best, c))
    for cap in caps:
        booster = lgb.Booster(model_str=model.booster.model_to_string(num_iteration=cap))
        capped = dataclasses.replace(model, booster=booster, scorers=None)
        system = ranked_system(engine.with_ranker(capped))
        hits_of[cap] = evaluate(system, sp, queries, *recommendations(system, queries))[1]
        lo, hi = bootstrap_ci(hits_of[cap], queries.basket)
        diff = paired_difference(hits_of[best], hits_of[cap], queries.basket)
        ci, dci = f"{lo:.4f}-{hi:.4f}", f"{diff['low']:+.4f}..{diff['high']:+.4f}"
        t_lgb, t_fast = f"{'-':>12}", f"{'-':>11}"
        if not args.no_timing:
            t_lgb = f"{_time(BoosterScorer(booster).predict, X):12.3f}"
            with tempfile.TemporaryDirectory() as d:
                booster.save_model(str(Path(d) / "model.txt"))
                fast = compile_model(Path(d) / "model.txt", cache=False)
            if fast is not None:
                t_fast = f"{_time(fast.predict, X):11.3f}"
        tol = f" (tolerance {', '.join(map(str, kept[cap]))})" if cap in kept else ""
        print(
            f"{cap:>6} {curve[cap - 1]:>14.4f} {hits_of[cap].mean():>12.4f} "
            f"{ci:>16} {diff['diff']:>+13.4f} {dci:>17} {t_lgb} {t_fast}{tol}",
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
