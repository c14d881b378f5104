"""Benchmark of the recall stage: fit + precompute per stage, similarity vs implicit, serving.

Prints seconds per stage with the process's resident and peak memory after each stage (the
build's own progress lines, ``recset.progress``, go to stderr), then compares the co-purchase
similarity step (``pair_topk``: blocked ``G^T G``, Ochiai, top-k, as ``co_purchase`` fits it)
with implicit's CosineRecommender fit on the same basket x item matrix (same process, best
of 3), then times ``Engine.recommend`` from a store. The load average is printed at the start
and the end: the machine may be shared. The save's own peak is printed too (the process's
VmHWM is reset before it on Linux); the last line is the whole run's peak.

    .venv/bin/python bench/recall.py --items 100000 --events 1000000
    .venv/bin/python bench/recall.py --items 1000000 --events 10000000 --max-memory 6GiB
    .venv/bin/python bench/recall.py --items 3000000 --events 30000000 --max-memory 12GiB \
        --no-compare --queries 2000

With ``--data DIR`` the dataset is generated into DIR once (in a child process) and read
from there by later runs, so the process's peak is the build's own, not the generator's.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from recset.progress import memory


def peak_mib() -> float:
    return memory()[1] / float(1 << 20)


def rss_mib() -> float:
    return memory()[0] / float(1 << 20)


def reset_peak() -> bool:
    """Reset the process's VmHWM to its current RSS (Linux ``/proc/self/clear_refs``), so a
    later peak is that of the steps after it; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


class Timer:
    """Wall seconds, CPU seconds of the process (all threads: what the stage costs on a
    shared machine, where wall time depends on the other users) and memory per stage."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float]] = []

    def __call__(self, label: str):  # noqa: ANN204
        timer = self

        class _Ctx:
            def __enter__(self) -> None:
                self.t0 = time.perf_counter()
                self.c0 = time.process_time()

            def __exit__(self, *exc: object) -> None:
                wall = time.perf_counter() - self.t0
                cpu = time.process_time() - self.c0
                timer.rows.append((label, wall, cpu, peak_mib()))
                print(
                    f"  {label:<42} {wall:8.2f} s  cpu {cpu:8.2f} s   rss {rss_mib():8.0f} MiB"
                    f"   peak {peak_mib():8.0f} MiB",
                    flush=True,
                )

        return _Ctx()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=20_000, help="recommend() calls timed")
    ap.add_argument("--max-memory", default=None, help="build budget, e.g. 6GiB")
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset directory: generated there (in a child process) when it holds none",
    )
    ap.add_argument(
        "--no-compare", action="store_true", help="skip the similarity comparison with implicit"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("recset.progress").setLevel(logging.INFO)
    print("load average at start (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    from recset.config import config_from_dict
    from recset.data import load_dataset
    from recset.data.synthetic import SyntheticConfig, write_synthetic
    from recset.engine import Engine
    from recset.progress import parse_memory, release_free_memory
    from recset.recall import Mixer, get_recall
    from recset.recall._cooccurrence import pair_topk
    from recset.recall._lists import PrecomputedLists
    from recset.signals import Signals

    t = Timer()
    tmp = Path(tempfile.mkdtemp(prefix="recset-bench-"))
    print(f"recall benchmark: {args.items:,} items, ~{args.events:,} events ({tmp})")
    data = args.data if args.data is not None else tmp / "data"
    synthetic = SyntheticConfig(n_items=args.items, n_events=args.events, seed=args.seed)
    if args.data is None:
        with t("generate + write dataset"):
            write_synthetic(synthetic, data)
    elif not (data / "events.parquet").exists():
        with t("generate + write dataset (child process)"):
            _generate_in_child(synthetic, data)
    else:
        print(f"  dataset read from {data} (generated by an earlier run)")
    with t("load + validate dataset"):
        ds = load_dataset(data)
    print(f"  {ds!r}")
    budget = parse_memory(args.max_memory)
    config = config_from_dict({"build": {"max_memory": budget}})
    fit_start = time.perf_counter()
    fit_cpu = time.process_time()
    signals = Signals(ds, max_group_size=config.build.max_group_size, max_memory=budget)
    specs = config.source_configs()
    fitted = {}
    for name in config.fit_order():
        kind, cfg = specs[name]
        with t(f"fit {name}"):
            fitted[name] = get_recall(kind)(cfg).fit(ds, signals, fitted=dict(fitted))
            release_free_memory()  # as Mixer.fit does after each source
    seed_mix = config.mix_for_categories(
        ds.categories.ids(ds.catalog.category),
        np.array(
            [ds.catalog.category_path[c] if c >= 0 else None for c in ds.catalog.category],
            dtype=object,
        ),
    )
    del signals  # the fit's cached signal matrices go before the lists are computed
    mixer = Mixer.from_config(config, fitted, seed_mix, ds.catalog.available.copy())
    engine = Engine(config, ds.items, mixer)
    with t("precompute candidate lists (all items)"):
        mixer.precompute(config.build.candidates_per_seed)
    fit_total = time.perf_counter() - fit_start
    fit_cpu = time.process_time() - fit_cpu
    fit_peak = peak_mib()
    release_free_memory()
    save_rss = rss_mib()
    own_peak = reset_peak()  # the save's own peak, not the precompute's
    with t("save engine to store (SQLite + artifacts)"):
        engine.save(tmp / "store", dataset=ds)
    if own_peak:
        print(
            f"  save: peak {peak_mib():,.0f} MiB, {peak_mib() - save_rss:,.0f} MiB above the "
            f"RSS before it ({save_rss:,.0f} MiB); the list files "
            f"{_lists_mib(mixer.lists):,.0f} MiB"
        )
    print(
        f"  => fit + precompute: {fit_total:.1f} s (cpu {fit_cpu:.1f} s), "
        f"peak {fit_peak / 1024:.2f} GiB "
        f"(targets at 1M items: < 180 s, < 6 GiB)"
    )
    print("load average after the build: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    if not args.no_compare:
        _compare_with_implicit(ds, config.build.candidates_per_seed, pair_topk, Signals)
    _serve(tmp, ds, args.queries, PrecomputedLists)
    whole = max(fit_peak, peak_mib()) if own_peak else peak_mib()
    print(f"peak memory of the whole run (VmHWM, with the save and serving): {whole:.0f} MiB")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def _lists_mib(lists) -> float:  # noqa: ANN001
    names = ("item", "score", "ptr", "pos", "src", "src_score", "src_rank")
    return sum(getattr(lists, n).nbytes for n in names) / float(1 << 20)


def _generate_in_child(synthetic, data: Path) -> None:  # noqa: ANN001
    import multiprocessing

    from recset.data.synthetic import write_synthetic

    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=write_synthetic, args=(synthetic, data))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"generating the dataset into {data} failed (exit {child.exitcode})")


def _compare_with_implicit(ds, k, pair_topk, Signals) -> None:  # noqa: ANN001
    """co-purchase similarity vs implicit's CosineRecommender on the same basket x item matrix
    (implicit L2-normalises the item columns: the same Ochiai scores)."""
    import implicit
    from implicit.nearest_neighbours import CosineRecommender

    g, _ = Signals(ds).group_matrix("basket")
    g = g[np.diff(g.indptr) >= 2].tocsr()
    ones = np.ones(g.shape[0], np.float32)
    ours, theirs = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        pair_topk(g, ones, k)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        CosineRecommender(K=k).fit(g, show_progress=False)
        theirs.append(time.perf_counter() - t0)
    print(
        f"co-purchase similarity on {g.shape[0]:,} baskets x {g.shape[1]:,} items "
        f"(nnz {g.nnz:,}), best of 3:"
    )
    print(f"  recset pair_topk (blocked G^T G, Ochiai, top-{k}): {min(ours):8.2f} s")
    print(f"  implicit {implicit.__version__} CosineRecommender(K={k}).fit: {min(theirs):8.2f} s")
    print(f"  ratio recset / implicit: {min(ours) / min(theirs):.2f} (target <= 0.5)")


def _serve(tmp: Path, ds, n_queries: int, PrecomputedLists) -> None:  # noqa: ANN001, N803
    from recset.engine import Engine

    # serving from the store
    loaded = Engine.load(tmp / "store")
    assert isinstance(loaded.mixer.lists, PrecomputedLists)
    rng = np.random.default_rng(1)
    seeds = ds.items.values[rng.integers(0, ds.n_items, size=n_queries)]
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


if __name__ == "__main__":
    main()
