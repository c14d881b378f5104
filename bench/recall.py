"""Benchmark of the recall stage: fit + precompute per stage, similarity vs implicit, serving.

Prints seconds per stage and the process's peak memory after each stage, then compares the
co-purchase similarity step with implicit's CosineRecommender fit on the same basket x item
matrix (side by side, same process), then times ``Engine.recommend`` from a store.

    .venv/bin/python bench/recall.py --items 100000 --events 1000000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def __call__(self, label: str):  # noqa: ANN204
        timer = self

        class _Ctx:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                timer.rows.append((label, time.perf_counter() - self.t0, peak_mib()))
                print(
                    f"  {label:<42} {timer.rows[-1][1]:8.2f} s   peak {peak_mib():8.0f} MiB",
                    flush=True,
                )

        return _Ctx()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=20_000, help="recommend() calls timed")
    args = ap.parse_args()

    from recset.config import config_from_dict
    from recset.data import load_dataset
    from recset.data.synthetic import SyntheticConfig, write_synthetic
    from recset.engine import Engine
    from recset.recall import Mixer, get_recall
    from recset.recall._cooccurrence import cooccurrence_counts, ochiai
    from recset.recall._lists import PrecomputedLists
    from recset.signals import Signals, topk_rows

    t = Timer()
    tmp = Path(tempfile.mkdtemp(prefix="recset-bench-"))
    print(f"recall benchmark: {args.items:,} items, ~{args.events:,} events ({tmp})")
    with t("generate + write dataset"):
        write_synthetic(
            SyntheticConfig(n_items=args.items, n_events=args.events, seed=args.seed), tmp / "data"
        )
    with t("load + validate dataset"):
        ds = load_dataset(tmp / "data")
    print(f"  {ds!r}")
    config = config_from_dict({})
    fit_start = time.perf_counter()
    signals = Signals(ds)
    specs = config.source_configs()
    fitted = {}
    for name in config.fit_order():
        kind, cfg = specs[name]
        with t(f"fit {name}"):
            fitted[name] = get_recall(kind)(cfg).fit(ds, signals, fitted=dict(fitted))
    seed_mix = config.mix_for_categories(
        ds.categories.ids(ds.catalog.category),
        np.array(
            [ds.catalog.category_path[c] if c >= 0 else None for c in ds.catalog.category],
            dtype=object,
        ),
    )
    mixer = Mixer.from_config(config, fitted, seed_mix, ds.catalog.available.copy())
    engine = Engine(config, ds.items, mixer)
    with t("precompute candidate lists (all items)"):
        mixer.precompute(config.build.candidates_per_seed)
    fit_total = time.perf_counter() - fit_start
    with t("save engine to store (SQLite + artifacts)"):
        engine.save(tmp / "store", dataset=ds)
    print(f"  => fit + precompute: {fit_total:.1f} s (target < 120 s)")

    # co-purchase similarity vs implicit's CosineRecommender on the same basket x item matrix
    import implicit
    from implicit.nearest_neighbours import CosineRecommender

    g, w = signals.group_matrix("basket")
    g = g[np.diff(g.indptr) >= 2].tocsr()
    k = config.build.candidates_per_seed
    ours, theirs = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        counts, occ = cooccurrence_counts(g, np.ones(g.shape[0], np.float32))
        topk_rows(ochiai(counts, occ), k, min_value=1e-12)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        CosineRecommender(K=k).fit(g, show_progress=False)
        theirs.append(time.perf_counter() - t0)
    print(
        f"co-purchase similarity on {g.shape[0]:,} baskets x {g.shape[1]:,} items "
        f"(nnz {g.nnz:,}), best of 3:"
    )
    print(f"  recset ochiai + top-{k}:                     {min(ours):8.2f} s")
    print(f"  implicit {implicit.__version__} CosineRecommender(K={k}).fit: {min(theirs):8.2f} s")
    print(f"  ratio recset / implicit: {min(ours) / min(theirs):.2f} (target <= 1.5)")

    # serving from the store
    loaded = Engine.load(tmp / "store")
    assert isinstance(loaded.mixer.lists, PrecomputedLists)
    rng = np.random.default_rng(1)
    seeds = ds.items.values[rng.integers(0, ds.n_items, size=args.queries)]
    for s in seeds[:200]:
        loaded.recommend(s, k=10)
    lat = np.empty(len(seeds))
    for i, s in enumerate(seeds):
        t0 = time.perf_counter()
        loaded.recommend(s, k=10)
        lat[i] = time.perf_counter() - t0
    print(
        f"recommend(k=10) from the loaded store, {len(seeds):,} calls: "
        f"p50 {np.percentile(lat, 50) * 1e3:.3f} ms, p99 {np.percentile(lat, 99) * 1e3:.3f} ms, "
        f"max {lat.max() * 1e3:.2f} ms (targets p50 < 1 ms, p99 < 5 ms)"
    )
    print(f"peak memory: {peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
