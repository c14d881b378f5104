"""Peak memory of the discovery model's user-grouped cross-validation (``discover_rounds =
"cv"``) on synthetic label rows of a given size, the fold loop against LightGBM ``cv``.

Only the memory is measured (a few boosting rounds: the binned rows and the boosters'
buffers are allocated before the first round); the rows are random, so the curves mean
nothing. Run each mode in its own process and read its peak RSS:

    /usr/bin/time -v python bench/cv_memory.py --rows 9500000 --mode loop
    /usr/bin/time -v python bench/cv_memory.py --rows 2000000 --mode lgb_cv
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from recset.ranking._ranker import RankerConfig, _boost_cv, user_folds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=9_500_000)
    ap.add_argument("--features", type=int, default=48)
    ap.add_argument("--group", type=int, default=250, help="candidate rows per label query")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mode", choices=("loop", "lgb_cv"), default="loop")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n_q = args.rows // args.group
    g = np.full(n_q, args.group, np.int64)
    users = rng.integers(0, max(n_q // 4, 5), n_q).astype(np.int32)
    X = rng.random((n_q * args.group, args.features), dtype=np.float32)
    y = (rng.random(len(X)) < 0.02).astype(np.float32)
    names = [f"f{i}" for i in range(args.features)]
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": 31,
        "learning_rate": 0.05,
        "min_child_samples": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": 0,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 2,
        "verbosity": -1,
    }
    rc = RankerConfig(n_estimators=args.rounds, early_stopping_rounds=args.rounds)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{len(X):,} rows x {args.features} features; peak RSS with the raw rows {base:.2f} GiB")
    if args.mode == "loop":
        _boost_cv("cv", params, rc, names, (X, y, g, users), False)
    else:  # what `_boost_cv` did before: LightGBM cv over the same folds
        import lightgbm as lgb

        folds = user_folds(g, users, rc.discover_folds, rc.seed)
        full = lgb.Dataset(X, y, group=g, feature_name=names, free_raw_data=False)
        res = lgb.cv(params, full, num_boost_round=args.rounds, folds=folds)
        lgb.train(params, full, num_boost_round=len(res["valid ndcg@10-mean"]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"mode {args.mode}: {time.perf_counter() - t0:.0f} s, peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
