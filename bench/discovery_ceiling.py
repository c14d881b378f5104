"""Ceiling of discovery: how many test targets new to the user any candidate set can reach.

For every test query (seed, user, targets) with at least one target the user never bought in
training, it reports the share whose new targets hold one inside each candidate set, with the
user's purchases removed: the mix's top N for the seed, the N globally most popular items,
the user's items most co-bought with their history (``hist_copurchase``, 50 kept), and the
union of the mix and the history candidates. A discovery list of 10 can only hit what its
candidate set reaches, so these shares bound its ``explore_hit@10``.

    python bench/discovery_ceiling.py --data /work/rd/instacart --split leave_last
    python bench/discovery_ceiling.py --data /work/rd/cj --max-queries 30000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from numpy.typing import NDArray

from recset.data import basket_queries, leave_last_split, load_dataset, time_split
from recset.engine import Engine
from recset.ranking import fit_features
from recset.ranking._discover_features import history_candidates

SIZES = (10, 50, 100, 200, 500)


def _reach(recs: NDArray[np.int32], q_of: NDArray[np.int64], target: NDArray[np.int64]) -> float:
    """Share of queries (rows of recs) whose new targets (q_of, target) hold one in recs."""
    n = recs.shape[0]
    width = int(max(recs.max(initial=0), target.max(initial=0))) + 2
    keys = np.unique(
        np.arange(n, dtype=np.int64)[:, None] * width + np.where(recs >= 0, recs, width - 1)
    )
    hit = np.isin(q_of * width + target, keys)
    return float(np.bincount(q_of[hit], minlength=n).astype(bool).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--max-queries", type=int, default=30_000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    sp = leave_last_split(ds) if args.split == "leave_last" else time_split(ds)
    queries = basket_queries(sp.test)
    if len(queries) > args.max_queries:
        rng = np.random.default_rng(0)
        queries = queries.take(np.sort(rng.choice(len(queries), args.max_queries, replace=False)))
    engine = Engine.build(sp.train)
    feats = fit_features(sp.train, engine.mixer, embeddings=np.zeros((ds.n_items, 0), np.float32))
    # new targets: never bought by the query's user in training
    q_all = queries.targets.query_of_entry()
    t_all = queries.targets.item.astype(np.int64)
    new = ~feats.bought(queries.user[q_all], t_all[:, None])[:, 0]
    has_new = np.bincount(q_all[new], minlength=len(queries)) > 0
    sel = np.flatnonzero(has_new)
    remap = np.full(len(queries), -1, np.int64)
    remap[sel] = np.arange(len(sel))
    q_of, target = remap[q_all[new]], t_all[new]
    seeds, users = queries.seed[sel], queries.user[sel]
    print(
        f"{ds.name}: {len(queries):,} queries, {len(sel):,} ({len(sel) / len(queries):.1%}) "
        f"with a target new to the user"
    )

    def drop_bought(recs: NDArray[np.int32]) -> NDArray[np.int32]:
        return np.where(feats.bought(users, recs) | (recs < 0), -1, recs).astype(np.int32)

    hist, _ = history_candidates(feats.feature("hist_copurchase"), users, 50)  # type: ignore[arg-type]
    print(f"history candidates (50): {_reach(drop_bought(hist), q_of, target):.4f}")
    pop = engine.mixer.sources[engine.mixer.fallback]
    glob = pop.recall_many(np.full(len(sel), -1, np.int32), max(SIZES)).item  # type: ignore[attr-defined]
    print("| N | mix top N | popular top N | mix top N + history 50 |")
    print("|---:|---:|---:|---:|")
    for n in SIZES:
        mix = np.concatenate(
            [engine.mixer.top(seeds[i : i + 5000], n).item for i in range(0, len(sel), 5000)]
        )
        both = np.concatenate([mix, hist], axis=1)
        print(
            f"| {n} | {_reach(drop_bought(mix), q_of, target):.4f} | "
            f"{_reach(drop_bought(glob[:, :n]), q_of, target):.4f} | "
            f"{_reach(drop_bought(both), q_of, target):.4f} |"
        )
    print(f"seconds: {time.perf_counter() - t0:.0f} (shared machine)")


if __name__ == "__main__":
    main()
