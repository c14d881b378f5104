"""Compare pair-similarity measures of the default mix on a validation window.

The window is carved out of the training part only (the outer split's train is split again),
so the choice never looks at the backtest's test window.

    .venv/bin/python bench/validate_similarity.py DATASET_DIR [--leave-last]
"""

from __future__ import annotations

import argparse

import numpy as np

from recset.config import config_from_dict
from recset.data import basket_queries, leave_last_split, load_dataset, time_split
from recset.engine import Engine
from recset.eval.backtest import engine_system, evaluate_system

VARIANTS = {
    "ochiai": "ochiai",
    "confidence": "confidence",
    "asymmetric_cosine(0.8)": "asymmetric_cosine",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--leave-last", action="store_true", help="per-user last-basket splits")
    ap.add_argument("--max-queries", type=int, default=30_000)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    split = leave_last_split if args.leave_last else time_split
    inner = split(split(ds).train)
    q = basket_queries(inner.test)
    if len(q) > args.max_queries:
        q = q.take(np.sort(np.random.default_rng(0).choice(len(q), args.max_queries, False)))
    print(f"{ds.name}: validation queries {len(q):,}")
    for label, sim in VARIANTS.items():
        pair = {"similarity": sim, "alpha": 0.8}
        cfg = config_from_dict(
            {"sources": {"co_purchase": pair, "co_purchase_only": pair, "co_view": pair}}
        )
        m = evaluate_system(engine_system(Engine.build(inner.train, cfg)), inner, q)["item"]
        print(
            f"  {label:<24} hit@1 {m['hit@1']:.4f}  hit@10 {m['hit@10']:.4f}  "
            f"explore_hit@10 {m.get('explore_hit@10', float('nan')):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
