"""Train the neural stage on a generated catalog; print seconds per stage and peak memory.

PYTHONPATH=. python bench/neural.py --items 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np

from recset.data import Dataset
from recset.data.synthetic import SyntheticConfig, generate
from recset.personalization import NeuralConfig, train_neural
from recset.recall import TextEmbeddingConfig, embed_items
from recset.signals import Signals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="{}", help="NeuralConfig overrides as JSON")
    args = ap.parse_args()
    t = time.perf_counter()
    data = generate(SyntheticConfig(n_items=args.items, seed=args.seed))
    ds = Dataset.from_frames(data.catalog, data.events, name=f"synthetic-{args.items}")
    print(f"data: {ds} in {time.perf_counter() - t:.1f} s")
    cfg = NeuralConfig(**json.loads(args.config))
    t = time.perf_counter()
    signals = Signals(ds)
    _ = signals.co_purchase_only, signals.co_purchase
    print(f"signals: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    feats = embed_items(ds, TextEmbeddingConfig(embedding_size=cfg.text_embedding_size))
    print(f"text features: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    model = train_neural(ds, cfg, signals=signals, features=feats)
    total = time.perf_counter() - t
    fit = model.metadata_["fit"]
    print(f"graph stage: {fit['gnn_seconds']:.1f} s ({fit['n_edges']} edges, {fit['edge_signal']})")
    print(f"joint stage: {fit.get('joint_seconds', 0.0):.1f} s ({fit.get('n_triples', 0)} pairs)")
    if "affinity_seconds" in fit:
        print(
            f"affinity head: {fit['affinity_seconds']:.1f} s ({fit['affinity_rows']} rows, "
            f"best epoch {fit.get('affinity_best_epoch')})"
        )
    print(f"train_neural total: {total:.1f} s; blend weight {model.blend_weight_}")
    print(f"validation: {model.metadata_.get('validation')}")
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    b, n = 1000, 100
    seeds = rng.integers(0, ds.n_items, b).astype(np.int32)
    users = rng.integers(0, ds.n_users, b).astype(np.int32)
    items = rng.integers(0, ds.n_items, (b, n)).astype(np.int32)
    model.rerank(seeds, users, items, rng.normal(size=(b, n)))
    print(f"rerank {b} x {n}: {time.perf_counter() - t:.2f} s")
    # one request at a time, as a service re-ranks: (1, n) per call
    known = np.flatnonzero(np.diff(model.history_indptr_) > 0)
    calls = []
    for i in range(300):
        u = np.array([known[i % len(known)]], dtype=np.int32)
        t = time.perf_counter()
        model.rerank(seeds[i % b : i % b + 1], u, items[i % b : i % b + 1], rng.normal(size=(1, n)))
        calls.append(time.perf_counter() - t)
    ms = np.percentile(np.array(calls[20:]) * 1e3, [50, 99])
    print(f"rerank 1 x {n}, one call at a time (280 calls): p50 {ms[0]:.2f} ms, p99 {ms[1]:.2f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak:.0f} MB")


if __name__ == "__main__":
    main()
