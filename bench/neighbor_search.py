"""The neighbour search of ``complementary_of_similar``: Annoy against ``search = "exact"``.

Builds what the source's fit builds on an ingested dataset (the complement matrix, the text
embeddings of every item; donors = items with vectors and complements, queries = items with
vectors and fewer than ``min_complements`` complements), then times ``neighbor_table`` both
ways (best of ``--repeat``, wall clock, in process) and compares the tables: the share of
Annoy's neighbours that are among the exact ones, and of the exact ones Annoy finds (the
neighbour ``min_similarity`` cut applied to both, as the source applies it).

    python bench/neighbor_search.py --data /work/rd/cj_promo
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from recset.data import load_dataset
    from recset.recall import embed_items
    from recset.recall.complementary_of_similar import (
        ComplementaryOfSimilarConfig,
        ComplementaryOfSimilarRecall,
        neighbor_table,
    )
    from recset.signals import Signals

    cfg = ComplementaryOfSimilarConfig()
    ds = load_dataset(args.data)
    src = ComplementaryOfSimilarRecall(cfg)
    comp = src._complement_matrix(ds, Signals(ds))
    n_comp = np.diff(comp.indptr)
    vectors = embed_items(ds, cfg.embedding)
    has_vec = np.any(vectors != 0, axis=1)
    donors = has_vec & (n_comp > 0)
    queries = has_vec & (n_comp < cfg.min_complements)
    print(
        f"{ds.name}: {ds.n_items:,} items, {int(donors.sum()):,} indexed (with complements), "
        f"{int(queries.sum()):,} queries, dim {vectors.shape[1]}, k {cfg.n_similar}"
    )
    tables = {}
    for exact in (False, True):
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            nb, sim = neighbor_table(
                vectors,
                donors,
                queries,
                cfg.n_similar,
                n_trees=cfg.n_trees,
                search_k=cfg.search_k,
                seed=cfg.seed,
                exact=exact,
            )
            best = min(best, time.perf_counter() - t0)
        nb[sim < cfg.min_similarity] = -1
        tables[exact] = nb
        print(f"  {'exact' if exact else 'annoy'}: {best:.2f} s (best of {args.repeat})")
    a, e = tables[False], tables[True]
    rows = np.flatnonzero(queries)
    found = kept = n_a = n_e = 0
    for r in rows:
        sa, se = set(a[r][a[r] >= 0].tolist()), set(e[r][e[r] >= 0].tolist())
        found += len(sa & se)
        n_a += len(sa)
        n_e += len(se)
        kept += sa == se
    print(
        f"  Annoy's neighbours among the exact ones: {found / max(n_a, 1):.4f}; the exact "
        f"ones Annoy finds: {found / max(n_e, 1):.4f}; queries with the same set: "
        f"{kept / max(len(rows), 1):.4f}"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {peak:.2f} GiB")


if __name__ == "__main__":
    main()
