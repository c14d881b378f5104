"""Type-transition diversification on top of the LightGBM ranker: Hit@10 and type diversity.

Splits a dataset by time (the last 20% of orders are the test), builds the engine and trains
the ranker and the type-transition model on the training part, and prints item Hit@10,
product-type Hit@10 and distinct types in the top 10 for the ranker alone and for each
diversification setting, with every basket item as a seed and with only the first-added
item as the seed.

    .venv/bin/python bench/diversify_ranked.py --data .demo/data
"""

from __future__ import annotations

import argparse
import copy

from recset.data import basket_queries, load_dataset, time_split
from recset.engine import Engine
from recset.eval.backtest import evaluate, ranked_system, recommendations
from recset.personalization import TypeTransitionConfig, train_type_transition
from recset.ranking import RankerConfig, train_ranker
from recset.recall import embed_items

SETTINGS = (
    ("cap", 3, False),
    ("cap", 4, False),
    ("cap", 3, True),
    ("rounds", 3, True),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    sp = time_split(ds)
    engine = Engine.build(sp.train)
    emb = embed_items(sp.train)
    ranker = train_ranker(sp.train, None, RankerConfig(), mixer=engine.mixer, embeddings=emb)
    ranked = engine.with_ranker(ranker)
    tt = train_type_transition(sp.train, TypeTransitionConfig(device="cpu"))
    print("| queries | system | item hit@10 | type hit@10 | types in top-10 |")
    print("|---|---|---:|---:|---:|")
    for label, first in (("every item a seed", False), ("first item the seed", True)):
        queries = basket_queries(sp.test, first_item_only=first)
        variants = [("ranker", ranked)]
        for strategy, cap, demote in SETTINGS:
            model = copy.copy(tt)
            model.config = tt.config.model_copy(
                update={"strategy": strategy, "max_per_type": cap, "demote_reverse": demote}
            )
            name = f"{strategy} {cap}" + (" + demotion" if demote else "")
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
