"""Benchmark of the ranking stage: candidates, features and scoring of 500 candidates per seed.

Builds an engine and trains a ranker on a generated catalog once (kept under ``--work``;
delete it to rebuild), loads both as a server would (``Ranker.load``: the lleaves-compiled
model when ``recset[fast]`` is installed, else LightGBM's predict; ``--lightgbm`` forces the
latter), then times, per call, in process on one thread:

* ``candidates``: the mix's top 500 plus the user's history (``ranking_candidates``);
* ``features``: ``FeatureSpace.transform`` of those rows (the columns some tree splits on,
  as the stages compute them: ``Ranker.used_columns``);
* ``predict``: ``Ranker.score`` of the real rows;
* ``ranker stage``: the three together plus the final ordering (``RankerStage.run``), which
  is what a request pays on top of the precomputed path, timed in a loop of its own (timed
  right after the parts it would read their data from the CPU caches);

then ``Engine.recommend(k=10)`` with the ranker, and a batch of ``--batch`` seeds through
``Engine.recommend_batch`` (per seed).

With ``--discover`` the ranker is trained with ``[ranker] discover = true`` (the default
``discover_models = 3``: discover requests score with the mean of three models) and
discover mode is timed the same way afterwards: ``discovery_candidates`` (the ranker's
candidates, the user's co-bought and SAR items, minus the user's purchases), features,
``Ranker.score_new`` (every discovery model) beside each model alone, the
``DiscoverStage``, and ``Engine.for_mode("discover")``'s ``recommend`` / ``recommend_batch``.
``--data DIR`` trains on an ingested dataset instead of a generated catalog.

    python bench/ranker.py --items 20000 --calls 2000
    python bench/ranker.py --lightgbm          # the same, scored by LightGBM's predict
    python bench/ranker.py --data /work/rd/demo --discover --work /tmp/rb-demo --calls 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def prepare(
    work: Path, n_items: int, candidates: int, data: Path | None = None, discover: bool = False
) -> tuple[Path, Path]:
    """The engine store and the ranker directory (built and trained once: on ``data`` when
    given, else on a generated catalog of ``n_items``; with the discovery models when
    ``discover``)."""
    store, ranker_dir = work / "store", work / "ranker"
    if (ranker_dir / "model.txt").is_file():
        if discover and not (ranker_dir / "discover.txt").is_file():
            raise SystemExit(
                f"{ranker_dir} holds a ranker without discovery models: pass another --work "
                "(or delete it) to train one with --discover"
            )
        return store, ranker_dir
    from recset.config import config_from_dict
    from recset.data import Dataset, load_dataset
    from recset.data.synthetic import SyntheticConfig, generate
    from recset.engine import Engine
    from recset.ranking import train_ranker

    if data is not None:
        ds = load_dataset(data)
    else:
        syn = generate(SyntheticConfig(n_items=n_items, seed=0))
        ds = Dataset.from_frames(syn.catalog, syn.events)
    cfg = config_from_dict(
        {
            "build": {"candidates_per_seed": candidates},
            # a long fallback list, so that every seed really has `candidates` candidates
            "sources": {"popular": {"max_candidates": 2 * candidates}},
            "ranker": {"candidates": candidates, "max_queries": 5000, "discover": discover},
        }
    )
    t0 = time.perf_counter()
    engine = Engine.build(ds, cfg)
    t1 = time.perf_counter()
    ranker = train_ranker(ds, cfg, mixer=engine.mixer)  # features refit on all of ds
    t2 = time.perf_counter()
    disc = ranker.metrics.get("discover", {})
    trees = "+".join(str(m["trees"]) for m in disc.get("members", [disc] if disc else []))
    print(
        f"{ds!r}: engine build {t1 - t0:.1f} s, ranker training {t2 - t1:.1f} s "
        f"({ranker.metrics['best_iteration']} trees"
        + (f"; discovery models {trees} trees)" if trees else ")")
    )
    engine.save(store)
    tmp = Path(tempfile.mkdtemp(dir=work))
    ranker.save(tmp, compiled=False)
    tmp.rename(ranker_dir)
    return store, ranker_dir


def pct(label: str, seconds: list[float] | np.ndarray) -> str:
    a = np.asarray(seconds) * 1e3
    return f"  {label:<22} p50 {np.percentile(a, 50):7.3f} ms  p99 {np.percentile(a, 99):7.3f} ms"


def time_stage(engine, stage, seeds, users, candidates: int) -> list[float]:  # noqa: ANN001
    """Seconds of ``stage.run`` per call, one seed and one user each, on the mix's top
    ``candidates`` (fetched outside the timed part)."""
    from recset.pipeline import Request

    out = []
    for s, u in zip(seeds, users, strict=True):
        sa, ua = np.array([s], np.int32), np.array([u], np.int32)
        top = engine.mixer.top(sa, candidates)
        a = time.perf_counter()
        stage.run(Request(sa, ua, 10), top)
        out.append(time.perf_counter() - a)
    return out


def own_seeds(features: Any, calls: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``calls`` (seed, user) pairs drawn from the fitted purchases: a user who bought the
    seed (what a product page of an item in the user's history asks, and what the features
    reading the user's trips with the seed pay the most for)."""
    keys = features.ui_keys[rng.integers(0, len(features.ui_keys), calls)]
    return (keys % features.n_items).astype(np.int32), (keys // features.n_items).astype(np.int32)


def time_features(engine: Any, ranker: Any, seeds: np.ndarray, users: np.ndarray, n: int) -> None:
    """Each per-call feature's ``transform`` alone on the calls' candidate rows (the
    item-only features are one gather of the per-item table, timed as a whole)."""
    from recset.ranking import ranking_candidates
    from recset.ranking._feature_base import FeatureBatch

    space = ranker.features
    used = ranker.used_columns()
    per: dict[str, list[float]] = {
        name: [] for name in ("item table", *(c.name for _, c in space._per_call))
    }
    for s, u in zip(seeds, users, strict=True):
        sa, ua = np.array([s], np.int32), np.array([u], np.int32)
        mixed = ranking_candidates(engine.mixer.top(sa, n), space, sa, ua, engine.mixer.available)
        batch = FeatureBatch(sa, ua, mixed, n_items=space.n_items, n_users=space.n_users)
        a = time.perf_counter()
        np.take(space.item_table, batch.c, axis=0)
        per["item table"].append(time.perf_counter() - a)
        for j, col in space._per_call:
            if not used[j]:
                continue
            a = time.perf_counter()
            col.transform(batch)
            per[col.name].append(time.perf_counter() - a)
    print("each per-call feature alone, slowest first:")
    for name in sorted(per, key=lambda k: -np.percentile(per[k], 50) if per[k] else 0):
        if per[name]:
            print(pct(name, per[name]))
    skipped = [c.name for j, c in space._per_call if not used[j]]
    print(f"  not computed (no tree of the ranker splits on them): {skipped}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--candidates", type=int, default=500)
    ap.add_argument("--calls", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=32, help="Seeds per recommend_batch call.")
    ap.add_argument("--lightgbm", action="store_true", help="Score with LightGBM's predict.")
    ap.add_argument("--data", type=Path, default=None, help="An ingested dataset to train on.")
    ap.add_argument(
        "--discover", action="store_true", help="Train the discovery models; time discover mode."
    )
    ap.add_argument(
        "--own-seeds",
        action="store_true",
        help="Draw each call's seed from its user's purchases (else any item).",
    )
    ap.add_argument(
        "--per-feature", action="store_true", help="Also time each per-call feature alone."
    )
    ap.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "recset-ranker-bench"
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    from recset.engine import Engine
    from recset.ranking import Ranker, RankerStage, ranking_candidates

    store, ranker_dir = prepare(args.work, args.items, args.candidates, args.data, args.discover)
    engine = Engine.load(store, neural=False)
    t0 = time.perf_counter()
    ranker = Ranker.load(ranker_dir, compiled=not args.lightgbm)
    print(
        f"ranker loaded in {time.perf_counter() - t0:.2f} s: {ranker.booster.num_trees()} trees, "
        f"{len(ranker.feature_names)} features, scored by {ranker.scorer_kind}"
    )
    ranked = engine.with_ranker(ranker)
    stage = RankerStage(ranker, engine.mixer.available)
    n_users = len(ranker.users)
    rng = np.random.default_rng(0)
    seeds = rng.integers(0, len(engine.items), args.calls).astype(np.int32)
    users = rng.integers(0, n_users, args.calls).astype(np.int32)
    if args.own_seeds:
        seeds, users = own_seeds(ranker.features, args.calls, rng)
    times: dict[str, list[float]] = {k: [] for k in ("cand", "feat", "pred", "stage")}
    n_rows = []
    for s, u in zip(seeds, users, strict=True):
        sa, ua = np.array([s], np.int32), np.array([u], np.int32)
        top = engine.mixer.top(sa, args.candidates)
        a = time.perf_counter()
        mixed = ranking_candidates(top, ranker.features, sa, ua, engine.mixer.available)
        b = time.perf_counter()
        X = ranker.features.transform(sa, ua, mixed, columns=ranker.used_columns())
        valid = mixed.item.ravel() >= 0
        c = time.perf_counter()
        ranker.score(X[valid])
        d = time.perf_counter()
        for key, t in zip(("cand", "feat", "pred"), (b - a, c - b, d - c), strict=True):
            times[key].append(t)
        n_rows.append(int(valid.sum()))
    # the stage on its own loop: right after the parts it would find their data in the CPU
    # caches, which a request does not (it touches the seed's candidates' rows first)
    times["stage"] = time_stage(engine, stage, seeds, users, args.candidates)
    print(
        f"one seed, one known user, {args.calls} calls, {np.mean(n_rows):.0f} scored rows "
        f"on average ({args.candidates} candidates + the user's history):"
    )
    print(pct("candidates", times["cand"]))
    print(pct("features", times["feat"]))
    print(pct(f"predict ({ranker.scorer_kind})", times["pred"]))
    total = np.add.reduce([np.asarray(times[k]) for k in ("cand", "feat", "pred")])
    print(pct("sum of the three", total))
    target = np.asarray(times["feat"]) + np.asarray(times["pred"])
    print(pct("features + predict", target) + "   (target: p50 < 1 ms)")
    print(pct("RankerStage.run", times["stage"]))
    if args.per_feature:
        time_features(engine, ranker, seeds, users, args.candidates)
    lat = []
    item_ids, user_ids = engine.items, ranker.users
    for s, u in zip(seeds[:500], users[:500], strict=True):
        a = time.perf_counter()
        ranked.recommend(item_ids.id_of(int(s)), user=user_ids.id_of(int(u)), k=10)
        lat.append(time.perf_counter() - a)
    print(f"Engine.recommend(k=10) with the ranker ({args.candidates} candidates):")
    print(pct("per call", lat))
    lat = []
    for i in range(0, min(len(seeds), 50 * args.batch), args.batch):
        s_ids = [item_ids.id_of(int(s)) for s in seeds[i : i + args.batch]]
        u_ids = [user_ids.id_of(int(u)) for u in users[i : i + args.batch]]
        a = time.perf_counter()
        ranked.recommend_batch(s_ids, users=u_ids, k=10)
        lat.append((time.perf_counter() - a) / len(s_ids))
    print(f"Engine.recommend_batch of {args.batch} seeds (time per seed):")
    print(pct("per seed", lat))
    if args.discover:
        time_discover(engine, ranker, seeds, users, args.candidates, args.batch)


def time_discover(
    engine: Any,
    ranker: Any,
    seeds: np.ndarray,
    users: np.ndarray,
    candidates: int,
    batch: int,
) -> None:
    """Discover mode's figures, as ``main`` times complete mode (see the module docstring)."""
    from recset.ranking import DiscoverStage
    from recset.ranking._candidates import discovery_candidates

    rc = ranker.config
    members = ranker._discover_models()
    # each model alone: what one discovery model of its trees costs
    mean = ranker._scorers()[1]
    each = getattr(mean, "members", [mean])
    avail = engine.mixer.available
    stage = DiscoverStage(ranker, avail)
    times: dict[str, list[float]] = {k: [] for k in ("cand", "feat", "pred", "stage")}
    for b in range(len(each)):
        times[f"model{b}"] = []
    n_rows = []
    for s, u in zip(seeds, users, strict=True):
        sa, ua = np.array([s], np.int32), np.array([u], np.int32)
        top = engine.mixer.top(sa, candidates)
        a = time.perf_counter()
        mixed = discovery_candidates(
            top, ranker.features, sa, ua, avail, rc.discover_candidates, rc.discover_sar
        )
        b = time.perf_counter()
        X = ranker.features.transform(sa, ua, mixed, columns=ranker.used_columns("discover"))
        rows = X[mixed.item.ravel() >= 0]
        c = time.perf_counter()
        ranker.score_new(rows)
        d = time.perf_counter()
        for key, t in zip(("cand", "feat", "pred"), (b - a, c - b, d - c), strict=True):
            times[key].append(t)
        for m, member in enumerate(each):
            t0 = time.perf_counter()
            member.predict(rows)
            times[f"model{m}"].append(time.perf_counter() - t0)
        n_rows.append(len(rows))
    times["stage"] = time_stage(engine, stage, seeds, users, candidates)
    trees = "+".join(str(b.num_trees()) for b in members)
    print(
        f"discover mode: {len(members)} discovery models ({trees} trees), one seed, one known "
        f"user, {len(seeds)} calls, {np.mean(n_rows):.0f} scored rows on average:"
    )
    print(pct("candidates", times["cand"]))
    print(pct("features", times["feat"]))
    print(pct(f"predict, {len(members)} models", times["pred"]))
    for m, booster in enumerate(members):
        print(pct(f"  model {m + 1} ({booster.num_trees()} trees)", times[f"model{m}"]))
    target = np.asarray(times["feat"]) + np.asarray(times["pred"])
    print(pct("features + predict", target))
    print(pct("DiscoverStage.run", times["stage"]))
    disc = engine.with_ranker(ranker).for_mode("discover")
    item_ids, user_ids = engine.items, ranker.users
    lat = []
    for s, u in zip(seeds[:500], users[:500], strict=True):
        a = time.perf_counter()
        disc.recommend(item_ids.id_of(int(s)), user=user_ids.id_of(int(u)), k=10)
        lat.append(time.perf_counter() - a)
    print(f"Engine.for_mode('discover').recommend(k=10) ({candidates} candidates):")
    print(pct("per call", lat))
    lat = []
    for i in range(0, min(len(seeds), 50 * batch), batch):
        s_ids = [item_ids.id_of(int(s)) for s in seeds[i : i + batch]]
        u_ids = [user_ids.id_of(int(u)) for u in users[i : i + batch]]
        a = time.perf_counter()
        disc.recommend_batch(s_ids, users=u_ids, k=10)
        lat.append((time.perf_counter() - a) / len(s_ids))
    print(f"discover recommend_batch of {batch} seeds (time per seed):")
    print(pct("per seed", lat))


if __name__ == "__main__":
    main()
