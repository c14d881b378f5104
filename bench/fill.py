"""Benchmark of filling short lists from the fallback (``Mixer._fill``) in batch.

Builds an engine on synthetic data and times ``Mixer.top`` (the recall stage) on a batch of
random seeds for several ``k`` (k = 100 is the ranker's candidate list), with the time spent
in ``_fill``, the rows it had to fill and the rows still short afterwards.

    .venv/bin/python bench/fill.py --items 20000 --seeds 20000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    args = ap.parse_args()

    from recset.data import Dataset
    from recset.data.synthetic import SyntheticConfig, generate
    from recset.engine import Engine
    from recset.recall import Mixer

    syn = generate(SyntheticConfig(n_items=args.items, seed=0))
    engine = Engine.build(Dataset.from_frames(syn.catalog, syn.events))
    seeds = np.random.default_rng(0).integers(0, args.items, args.seeds).astype(np.int32)
    fill = Mixer._fill
    spent = {"s": 0.0, "rows": 0}

    def timed_fill(self: Mixer, s: np.ndarray, out: object, k: int) -> None:
        spent["rows"] += int(((out.item >= 0).sum(axis=1) < k).sum())  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        fill(self, s, out, k)  # type: ignore[arg-type]
        spent["s"] += time.perf_counter() - t0

    Mixer._fill = timed_fill  # type: ignore[method-assign]
    print(f"fill benchmark: {args.items:,} items, {args.seeds:,} seeds, best of {args.repeat}")
    for k in (10, 20, 100):
        runs = []
        for _ in range(args.repeat):
            spent.update(s=0.0, rows=0)
            t0 = time.perf_counter()
            m = engine.mixer.top(seeds, k)
            runs.append((time.perf_counter() - t0, spent["s"], spent["rows"]))
        total, in_fill, rows = min(runs)
        short = int(((m.item >= 0).sum(axis=1) < k).sum())
        print(
            f"  k={k:<3} Mixer.top {total * 1e3:8.1f} ms, _fill {in_fill * 1e3:7.1f} ms "
            f"on {rows:,} short rows; still short after: {short:,}"
        )


if __name__ == "__main__":
    main()
