"""The ranker without personal features, with and without the personalization stage.

The two ``recset backtest --neural`` systems ``mix+ranker-nopersonal`` and
``mix+ranker-nopersonal+personalization`` (blend weight chosen on a validation window cut
from the training part), and ``mix+ranker`` for reference, on the backtest's split and
queries, without the other neural systems. Prints the validation figures and item Hit@1 /
Hit@10 / explore_hit@10 on the test window.

    .venv/bin/python bench/nopersonal.py --data .demo/data
    .venv/bin/python bench/nopersonal.py --data /work/rd/instacart --split leave_last
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from recset.data import load_dataset
from recset.engine import Engine
from recset.eval.backtest import (
    _nopersonal_systems,
    evaluate_system,
    paired_difference,
    prepare,
    ranked_system,
    recommendations,
)
from recset.eval.metrics import hit_matrix
from recset.ranking import RankerConfig, train_ranker
from recset.recall import embed_items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--max-queries", type=int, default=None, help="sample (seed 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    prep = prepare(ds, split=args.split, max_queries=args.max_queries)
    sp, queries = prep.split, prep.queries
    t0 = time.perf_counter()
    engine = Engine.build(sp.train)
    emb = embed_items(sp.train)
    rc = RankerConfig(label_split=args.split)
    info: dict = {}
    systems = _nopersonal_systems(sp.train, engine, None, rc, emb, info)
    full = train_ranker(sp.train, None, rc, mixer=engine.mixer, embeddings=emb)
    systems.append(ranked_system(engine.with_ranker(full)))
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    print("validation:", json.dumps(info["nopersonal_validation"]))
    print(f"| system ({len(queries):,} queries) | Hit@1 | Hit@10 | explore_hit@10 |")
    print("|---|---:|---:|---:|")
    hits = []
    for system in systems:
        m = evaluate_system(system, sp, queries)["item"]
        print(
            f"| {system.name} | {m['hit@1']:.4f} | {m['hit@10']:.4f} | "
            f"{m.get('explore_hit@10', float('nan')):.4f} |",
            flush=True,
        )
        recs, _ = recommendations(system, queries)
        hits.append(hit_matrix(recs, queries.targets)[:, :10].any(axis=1).astype(np.float64))
    d = paired_difference(hits[0], hits[1], queries.basket, n_boot=1000)
    print(
        f"{systems[1].name} - {systems[0].name}: Hit@10 {d['a']:.4f} -> {d['b']:.4f}, "
        f"{d['diff']:+.4f} (paired 95% CI over baskets [{d['low']:+.4f}, {d['high']:+.4f}]), "
        f"relative {d['diff'] / d['a']:+.1%} [{d['low'] / d['a']:+.1%}, {d['high'] / d['a']:+.1%}]"
    )


if __name__ == "__main__":
    main()
