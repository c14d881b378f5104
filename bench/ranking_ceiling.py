"""Learned ceilings of the ranker and the discovery model on a split's test window (issue 13).

Two questions for each mode (``complete``: the ranker's candidates, any target a hit;
``discover``: the discovery candidates, the user's purchases removed, a target new to the
user a hit):

1. the **candidate ceiling**: the share of the test queries whose (new) target is among the
   candidates at all, over the denominators of the backtest's ``hit@10`` (queries with a
   target) and ``explore_hit@10`` (queries with a target the user never bought in training);
2. the **cross-fitted learned ceiling**: a LightGBM model with the ranker's own parameters
   (the discovery model's for ``discover``), trained on the test window itself, on half
   the test *users* (early-stopped on an inner split of those users' queries), scored on
   the other half, then the halves swapped: every query is ranked by a model that never saw
   its user, but that knew the test window's own label distribution. Its Hit@10 /
   explore_hit@10 says how far today's candidates *and features* can get;
3. the same cross-fit given only a strong baseline's signals (``complete``: the user's
   purchase count of the candidate and the seed's co-purchase score, as
   ``user_repeat+cooc``; ``discover``: the candidate's popularity and the seed's
   association-rule confidence), the control for how much of the ceiling is re-fitting on
   the window rather than the features.

Everything is built as ``recset backtest`` builds it: ``Engine.build`` on the training part,
the served feature space as ``train_ranker`` builds it (the backtest's ranker config, with
``discover``, and the same item embeddings), the same queries (``prepare`` with the same
``max_queries`` and seed). The rows use the test window's labels: they are head-room
analysis, not systems.

    python bench/ranking_ceiling.py --data /work/rd/instacart --split leave_last \\
        --baseline-hit 0.9355 --baseline-explore 0.1392
    python bench/ranking_ceiling.py --data /work/rd/cj --max-queries 30000 \\
        --baseline-hit 0.7367 --baseline-explore 0.1686
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from recset.data import load_dataset
from recset.engine import Engine
from recset.eval._compare import default_config
from recset.eval._result import bootstrap_ci, paired_difference
from recset.eval.backtest import _explore_mask, prepare
from recset.ranking._ranker import (
    _boost,
    _stack,
    discover_features,
    discover_params,
    fit_features,
    labelled_queries,
    ranker_params,
)
from recset.recall import embed_items

CHUNK = 5000
"""Queries labelled at once (bounds the unfiltered feature matrix)."""
CONTROLS = {
    "complete": ("user_history__score", "co_purchase__score"),
    "discover": ("cand_pop", "seed_confidence", "co_purchase__score"),
}
"""The control's columns: a strong baseline's signals (those the feature space has)."""


def _labelled(engine: Engine, feats: Any, queries: Any, rc: Any, mode: str) -> Any:
    """``labelled_queries`` of every query, in chunks: (X, y, group sizes, users) of the
    queries with a positive among their candidates, in query order."""
    discover = rc.discover_candidates if mode == "discover" else None
    n_sar = rc.discover_sar if mode == "discover" and rc.personal_features else 0
    parts = []
    for lo in range(0, len(queries), CHUNK):
        q = queries.take(np.arange(lo, min(lo + CHUNK, len(queries))))
        parts.append(
            labelled_queries(engine.mixer, feats, q, rc.candidates, discover=discover, n_sar=n_sar)
        )
    return _stack(parts)


def _top_hits(score: NDArray[np.float64], y: NDArray[np.float32], group: NDArray[np.int64], k: int):  # noqa: ANN202
    """Per group: 1.0 when a positive is among its ``k`` best-scored rows (ties keep the
    candidates' order, as the served stage's stable sort does)."""
    gid = np.repeat(np.arange(len(group)), group)
    order = np.lexsort((-score, gid))  # by group, then score descending, stable
    start = np.concatenate([[0], np.cumsum(group)[:-1]])
    pos = np.empty(len(gid), np.int64)
    pos[order] = np.arange(len(gid)) - start[gid[order]]
    hit = (pos < k) & (y > 0)
    return (np.bincount(gid[hit], minlength=len(group)) > 0).astype(np.float64)


def _cross_fit(
    X: NDArray[np.float32],
    y: NDArray[np.float32],
    group: NDArray[np.int64],
    users: NDArray[np.int32],
    params: dict[str, Any],
    rc: Any,
    names: list[str],
    seed: int,
) -> tuple[NDArray[np.float64], list[int]]:
    """Scores of every row by a model trained on the other half of the users (early
    stopping on an inner ``rc.valid_share`` of the training half's users) and the trees
    each half's model kept."""
    n_users = int(users.max(initial=0)) + 1
    rng = np.random.default_rng(seed)
    half = rng.random(n_users) < 0.5
    inner = rng.random(n_users) < rc.valid_share
    row_user = np.repeat(users, group)
    score = np.full(len(y), np.nan)
    trees = []
    for side in (True, False):
        fit_q = half[users] == side
        parts = []
        for sel_q in (fit_q & ~inner[users], fit_q & inner[users]):
            rows = np.repeat(sel_q, group)
            parts.append((X[rows], y[rows], group[sel_q]))
        booster, metrics, _ = _boost("ceiling", params, rc, names, parts[0], parts[1], False)
        trees.append(int(metrics["trees"]))
        del parts
        rows = half[row_user] != side
        score[rows] = booster.predict(X[rows])
    return score, trees


def _per_query(
    hits: NDArray[np.float64], users: NDArray[np.int32], den_users: NDArray[np.int32]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(per-query hit, cluster = user) over every denominator query: the labelled queries'
    hits, then a 0 for each denominator query without a positive among its candidates."""
    n = int(max(den_users.max(initial=0), users.max(initial=0))) + 1
    rest = np.bincount(den_users, minlength=n) - np.bincount(users, minlength=n)
    if (rest < 0).any():
        raise ValueError("a user has more labelled queries than queries in the denominator")
    return (
        np.concatenate([hits, np.zeros(int(rest.sum()))]),
        np.concatenate([users, np.repeat(np.arange(n), rest)]).astype(np.int64),
    )


def _baselines(args: argparse.Namespace) -> tuple[float | None, float | None, str]:
    """(best baseline Hit@10, best hiding baseline explore_hit@10, where they come from)."""
    if args.metrics is None:
        return args.baseline_hit, args.baseline_explore, "command line"
    systems = json.loads(Path(args.metrics).read_text(encoding="utf-8"))["systems"]
    base = {n: m for n, m in systems.items() if m.get("kind") == "baseline"}
    if not base:
        raise SystemExit(f"{args.metrics}: no baseline system in 'systems'")
    hit = max((m["item"]["hit@10"], n) for n, m in base.items() if not n.endswith("/new"))
    hiding = [
        (m["item"].get("explore_hit@10", 0.0), n) for n, m in base.items() if n.endswith("/new")
    ]
    exp = max(hiding) if hiding else (None, None)
    return hit[0], exp[0], f"{args.metrics} ({hit[1]}, {exp[1]})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", choices=("time", "leave_last"), default="time")
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="the backtest's seed (query sample)")
    ap.add_argument("--fold-seed", type=int, default=0, help="the users' halves")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--modes", default="complete,discover")
    ap.add_argument("--baseline-hit", type=float, default=None)
    ap.add_argument("--baseline-explore", type=float, default=None)
    ap.add_argument("--metrics", type=Path, default=None, help="a backtest's metrics.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    prep = prepare(ds, split=args.split, max_queries=args.max_queries, seed=args.seed)
    sp, queries = prep.split, prep.queries
    cfg = default_config().config
    # as run_backtest: the label window cut like the test window, the discovery model on
    rc = cfg.ranker.model_copy(update={"label_split": args.split, "discover": True})
    engine = Engine.build(sp.train, cfg)
    emb = embed_items(sp.train)
    feats = fit_features(
        sp.train,
        engine.mixer,
        embeddings=emb,
        user_candidates=rc.user_candidates,
        extra_features=discover_features(rc),
        personal_features=rc.personal_features,
    )
    del emb
    names = feats.names
    explore = _explore_mask(sp.train, queries)
    q_of = queries.targets.query_of_entry()
    has_new = np.bincount(q_of[explore], minlength=len(queries)) > 0
    print(
        f"{ds.name}: {len(queries):,} test queries ({prep.info.get('kind', args.split)} split), "
        f"{int(has_new.sum()):,} with a target new to the user; {len(names)} features; "
        f"build {time.perf_counter() - t0:.0f} s"
    )
    base_hit, base_explore, source = _baselines(args)
    params = ranker_params(rc)
    rows = []
    for mode in args.modes.split(","):
        t1 = time.perf_counter()
        den_users = queries.user if mode == "complete" else queries.user[has_new]
        X, y, group, users = _labelled(engine, feats, queries, rc, mode)
        control = [names.index(c) for c in CONTROLS[mode] if c in names]
        p = params if mode == "complete" else discover_params(params, rc, names)
        score, trees = _cross_fit(X, y, group, users, p, rc, names, args.fold_seed)
        learned = _top_hits(score, y, group, 10)
        Xc = np.ascontiguousarray(X[:, control])
        c_names = [names[i] for i in control]
        del X
        gc.collect()
        c_score, c_trees = _cross_fit(Xc, y, group, users, p, rc, c_names, args.fold_seed)
        ctrl = _top_hits(c_score, y, group, 10)
        del Xc
        h_learned, clusters = _per_query(learned, users, den_users)
        h_ctrl, _ = _per_query(ctrl, users, den_users)
        h_cand, _ = _per_query(np.ones(len(group)), users, den_users)
        ci = {
            name: bootstrap_ci(h, clusters, n_boot=args.n_boot, seed=0)
            for name, h in (("learned", h_learned), ("control", h_ctrl))
        }
        diff = paired_difference(h_ctrl, h_learned, clusters, n_boot=args.n_boot, seed=0)
        rows.append(
            {
                "mode": mode,
                "queries": len(den_users),
                "labelled": len(group),
                "rows": int(group.sum()),
                "candidate": float(h_cand.mean()),
                "learned": float(h_learned.mean()),
                "learned_ci": ci["learned"],
                "trees": trees,
                "control": float(h_ctrl.mean()),
                "control_ci": ci["control"],
                "control_cols": c_names,
                "control_trees": c_trees,
                "diff": diff,
                "seconds": time.perf_counter() - t1,
            }
        )
        del y, group, users, score, c_score
        gc.collect()
        print(f"{mode}: {rows[-1]['seconds']:.0f} s", flush=True)
    metric = {"complete": "Hit@10", "discover": "explore_hit@10"}
    print()
    print(
        "| mode | metric | queries (denominator) | with a positive candidate | candidate ceiling | "
        "learned ceiling (95% CI) | trees | control: baseline signals only (95% CI) | "
        "learned - control (95% CI) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["diff"]
        print(
            f"| {r['mode']} | {metric[r['mode']]} | {r['queries']:,} | {r['labelled']:,} "
            f"({r['rows']:,} rows) | {r['candidate']:.4f} | {r['learned']:.4f} "
            f"({r['learned_ci'][0]:.4f}-{r['learned_ci'][1]:.4f}) | "
            f"{r['trees'][0]}, {r['trees'][1]} | {r['control']:.4f} "
            f"({r['control_ci'][0]:.4f}-{r['control_ci'][1]:.4f}) | "
            f"{d['diff']:+.4f} ({d['low']:+.4f}..{d['high']:+.4f}) |"
        )
    print()
    print("control columns: " + "; ".join(f"{r['mode']}: {r['control_cols']}" for r in rows))
    print(f"baselines from {source}")
    for r in rows:
        if r["mode"] == "complete" and base_hit is not None:
            target = 1 - 0.7 * (1 - base_hit)
            print(
                f"complete target (30% of the misses of Hit@10 {base_hit:.4f} cut): Hit@10 >= "
                f"{target:.4f}; candidate ceiling {r['candidate']:.4f}, learned ceiling "
                f"{r['learned']:.4f} ({'within' if r['learned'] >= target else 'beyond'} it)"
            )
        if r["mode"] == "discover" and base_explore is not None:
            target = 1.5 * base_explore
            print(
                f"discover target (1.5x explore_hit@10 {base_explore:.4f}): >= {target:.4f}; "
                f"candidate ceiling {r['candidate']:.4f}, learned ceiling {r['learned']:.4f} "
                f"({'within' if r['learned'] >= target else 'beyond'} it)"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"seconds: {time.perf_counter() - t0:.0f}; peak RSS {peak:.2f} GiB (shared machine)")


if __name__ == "__main__":
    main()
