"""View-based signals on real logs (the Taobao head): pair counts and seeds answered.

.venv/bin/python bench/taobao_views.py --data /work/rd/taobao
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    from recset.data import load_dataset
    from recset.engine import Engine
    from recset.signals import Signals

    ds = load_dataset(args.data)
    sig = Signals(ds)
    for name in ("co_view", "purchase_after_view", "co_purchase", "co_purchase_only"):
        m = getattr(sig, name)
        answered = int((m.getnnz(axis=1) > 0).sum())
        print(f"{name:<22} pairs {m.nnz:>10,}  items with a pair {answered:>7,}")
    engine = Engine.build(ds)
    seeds = np.arange(ds.n_items, dtype=np.int32)
    mixed = engine.mixer.candidates(seeds, 20)
    for s, name in enumerate(mixed.sources):
        answered = (mixed.source_rank[:, :, s] >= 0).any(axis=1)
        print(f"seeds with a {name:<26} candidate: {answered.mean():.3f}")


if __name__ == "__main__":
    main()
