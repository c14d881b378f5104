"""Type-transition diversification on top of the LightGBM ranker: Hit@10 and type diversity.

Splits a dataset by time (the last 20% of orders are the test), builds the engine and trains
the ranker and the type-transition model on the training part, and prints item Hit@10,
product-type Hit@10 and distinct types in the top 10 for the ranker alone and for each
diversification setting, with every basket item as a seed and with only the first-added
item as the seed. ``min_types N`` is the strategy that changes a list only when its top 10
spans fewer than N types.

    .venv/bin/python bench/diversify_ranked.py --data .demo/data
    .venv/bin/python bench/diversify_ranked.py --data /work/rd/cj --seeds all \
        --max-queries 30000 --min-types 8,9,10 --no-cap
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

from recset.data import basket_queries, load_dataset, time_split
from recset.engine import Engine
from recset.eval.backtest import evaluate, ranked_system, recommendations
from recset.personalization import TypeTransitionConfig, train_type_transition
from recset.ranking import RankerConfig, train_ranker
from recset.recall import embed_items

SETTINGS = (
    ("cap 3", {"strategy": "cap", "max_per_type": 3}),
    ("cap 4", {"strategy": "cap", "max_per_type": 4}),
    ("cap 3 + demotion", {"strategy": "cap", "max_per_type": 3, "demote_reverse": True}),
    ("rounds 3", {"strategy": "rounds", "max_per_type": 3, "demote_reverse": True}),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--min-types", default="4,5,6", help="comma-separated N of min_types")
    ap.add_argument("--no-cap", action="store_true", help="skip the cap / rounds settings")
    ap.add_argument("--seeds", choices=("all", "first", "both"), default="both")
    ap.add_argument("--max-queries", type=int, default=None, help="sample (seed 0)")
    args = ap.parse_args()
    settings = [] if args.no_cap else list(SETTINGS)
    for n in (int(x) for x in args.min_types.split(",") if x):
        settings.append((f"min_types {n}", {"strategy": "min_types", "min_types": n}))
    ds = load_dataset(args.data)
    sp = time_split(ds)
    engine = Engine.build(sp.train)
    emb = embed_items(sp.train)
    ranker = train_ranker(sp.train, None, RankerConfig(), mixer=engine.mixer, embeddings=emb)
    ranked = engine.with_ranker(ranker)
    tt = train_type_transition(sp.train, TypeTransitionConfig(device="cpu"))
    print("| queries | system | item hit@10 | type hit@10 | types in top-10 |")
    print("|---|---|---:|---:|---:|")
    modes = (("every item a seed", False), ("first item the seed", True))
    if args.seeds != "both":
        modes = modes[:1] if args.seeds == "all" else modes[1:]
    for label, first in modes:
        queries = basket_queries(sp.test, first_item_only=first)
        if args.max_queries is not None and len(queries) > args.max_queries:
            rng = np.random.default_rng(0)
            queries = queries.take(np.sort(rng.choice(len(queries), args.max_queries, False)))
        variants = [("ranker", ranked)]
        for name, update in settings:
            model = copy.copy(tt)
            model.config = tt.config.model_copy(update=update)
            variants.append((name, ranked.with_stages(diversifier=model)))
        for name, eng in variants:
            system = ranked_system(eng, name)
            recs, own = recommendations(system, queries)
            m = evaluate(system, sp, queries, recs, own)[0]
            print(
                f"| {label} ({len(queries):,}) | {name} | {m['item']['hit@10']:.4f} | "
                f"{m['type']['hit@10']:.4f} | {m['type_diversity@10']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
