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
   explore_hit@10 says how far today's candidates *and features* can get. The same
   cross-fit with each model learning from half its half's users says how much that figure
   still depends on the amount of label data (the served models learn from more queries
   than a quarter of a test window holds);
3. the same cross-fit given only a strong baseline's signals (``complete``: the user's
   purchase count of the candidate and the seed's co-purchase score, as
   ``user_repeat+cooc``; ``discover``: the candidate's popularity and the seed's
   association-rule confidence), the control for how much of the ceiling is re-fitting on
   the window rather than the features; and the candidates simply ordered by those signals
   (the first decides, the next breaks ties), no model at all.

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

from recset.config import load_config
from recset.data import load_dataset
from recset.engine import Engine
from recset.eval._compare import default_config
from recset.eval._result import bootstrap_ci, paired_difference
from recset.eval.backtest import _explore_mask, prepare
from recset.ranking._ranker import (
    _boost,
    _stack,
    discover_params,
    fit_features,
    labelled_queries,
    ranker_features,
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
    width = rc.discover_mix if mode == "discover" else rc.candidates
    n_sar = rc.discover_sar if mode == "discover" and rc.personal_features else 0
    parts = []
    for lo in range(0, len(queries), CHUNK):
        q = queries.take(np.arange(lo, min(lo + CHUNK, len(queries))))
        parts.append(
            labelled_queries(engine.mixer, feats, q, width, discover=discover, n_sar=n_sar)
        )
    return _stack(parts)


def _top_hits(
    keys: list[NDArray[np.float64]], y: NDArray[np.float32], group: NDArray[np.int64], k: int
) -> NDArray[np.float64]:
    """Per group (query): 1.0 when a positive is among its ``k`` best rows by ``keys``
    (higher first; the first key decides, ties go to the next, then to the candidates'
    order, as the served stage's stable sort; missing values last)."""
    gid = np.repeat(np.arange(len(group)), group)
    neg = [-np.nan_to_num(np.asarray(c, np.float64), nan=-np.inf) for c in keys]
    order = np.lexsort((*neg[::-1], gid))  # by query, then the keys; stable
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
    *,
    folds: int = 2,
    share: float = 1.0,
) -> tuple[NDArray[np.float64], list[int]]:
    """Scores of every row by a model trained on the users of the other ``folds - 1``
    folds (2: the other half; early stopping on an inner ``rc.valid_share`` of those
    users) and the trees each fold's model kept. With ``share`` < 1 each model learns from
    that share of its users only (the same folds: how much the ceiling still depends on
    the amount of label data)."""
    n_users = int(users.max(initial=0)) + 1
    rng = np.random.default_rng(seed)
    fold = np.minimum((rng.random(n_users) * folds).astype(np.int64), folds - 1)
    inner = rng.random(n_users) < rc.valid_share
    kept = np.random.default_rng(seed + 1).random(n_users) < share
    row_user = np.repeat(users, group)
    score = np.full(len(y), np.nan)
    trees = []
    for f in range(folds):
        fit_q = (fold[users] != f) & kept[users]
        parts = []
        for sel_q in (fit_q & ~inner[users], fit_q & inner[users]):
            rows = np.repeat(sel_q, group)
            parts.append((X[rows], y[rows], group[sel_q]))
        booster, metrics, _ = _boost("ceiling", params, rc, names, parts[0], parts[1], False)
        trees.append(int(metrics["trees"]))
        del parts
        rows = fold[row_user] == f
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
    ap.add_argument("--fold-seed", type=int, default=0, help="deals the users to the folds")
    ap.add_argument("--folds", type=int, default=2, help="user folds of the cross-fit")
    ap.add_argument(
        "--half", action="store_true", help="also the cross-fit with half the fit users"
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--modes", default="complete,discover")
    ap.add_argument("--baseline-hit", type=float, default=None)
    ap.add_argument("--baseline-explore", type=float, default=None)
    ap.add_argument("--metrics", type=Path, default=None, help="a backtest's metrics.json")
    ap.add_argument(
        "--config", type=Path, default=None, help="the backtest's config TOML (default: none)"
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    prep = prepare(ds, split=args.split, max_queries=args.max_queries, seed=args.seed)
    sp, queries = prep.split, prep.queries
    cfg = load_config(args.config) if args.config else default_config().config
    # as run_backtest: the label window cut like the test window, the discovery model on
    rc = cfg.ranker.model_copy(update={"label_split": args.split, "discover": True})
    engine = Engine.build(sp.train, cfg)
    emb = embed_items(sp.train)
    feats = fit_features(
        sp.train,
        engine.mixer,
        embeddings=emb,
        user_candidates=rc.user_candidates,
        extra_features=ranker_features(rc, sp.train),
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
    folds = args.folds
    out = []
    for mode in args.modes.split(","):
        t1 = time.perf_counter()
        den_users = queries.user if mode == "complete" else queries.user[has_new]
        X, y, group, users = _labelled(engine, feats, queries, rc, mode)
        p = params if mode == "complete" else discover_params(params, rc, names)
        # the discovery model's own cap on trees, as fit_discovery applies it
        cap = rc.n_estimators if mode == "complete" else rc.discover_trees
        rc_m = rc.model_copy(update={"n_estimators": cap})
        cols = [names.index(c) for c in CONTROLS[mode] if c in names]
        c_names = [names[i] for i in cols]
        Xc = np.ascontiguousarray(X[:, cols])
        hits: dict[str, NDArray[np.float64]] = {"candidates": np.ones(len(group))}
        trees: dict[str, list[int]] = {}
        score, trees["learned"] = _cross_fit(
            X, y, group, users, p, rc_m, names, args.fold_seed, folds=folds
        )
        hits["learned"] = _top_hits([score], y, group, 10)
        if args.half:
            score, trees["half"] = _cross_fit(
                X, y, group, users, p, rc_m, names, args.fold_seed, folds=folds, share=0.5
            )
            hits["half"] = _top_hits([score], y, group, 10)
        del X, score
        gc.collect()
        score, trees["control"] = _cross_fit(
            Xc, y, group, users, p, rc_m, c_names, args.fold_seed, folds=folds
        )
        hits["control"] = _top_hits([score], y, group, 10)
        hits["signal"] = _top_hits(list(Xc.T), y, group, 10)
        del Xc, score
        per_q = {}
        for name, h in hits.items():
            per_q[name], clusters = _per_query(h, users, den_users)
        row: dict[str, Any] = {
            "mode": mode,
            "queries": len(den_users),
            "users": len(np.unique(den_users)),
            "labelled": len(group),
            "labelled_users": len(np.unique(users)),
            "rows": int(group.sum()),
            "control_cols": c_names,
            "trees": trees,
        }
        for name, h in per_q.items():
            row[name] = float(h.mean())
            row[name + "_ci"] = bootstrap_ci(h, clusters, n_boot=args.n_boot, seed=0)
        row["diff"] = paired_difference(
            per_q["control"], per_q["learned"], clusters, n_boot=args.n_boot, seed=0
        )
        row["seconds"] = time.perf_counter() - t1
        out.append(row)
        del y, group, users, hits, per_q
        gc.collect()
        print(f"{mode}: {row['seconds']:.0f} s; {json.dumps(row)}", flush=True)
    metric = {"complete": "Hit@10", "discover": "explore_hit@10"}
    print()
    print(
        "| mode | metric | queries (users) | with a positive candidate (users) | "
        "candidate ceiling | learned ceiling (95% CI) | trees | learned, half the fit users | "
        "control learned (95% CI) | control signal order | learned - control (95% CI) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def ci(r: dict[str, Any], name: str) -> str:
        lo, hi = r[name + "_ci"]
        return f"{r[name]:.4f} ({lo:.4f}-{hi:.4f})"

    for r in out:
        d = r["diff"]
        half = f"{r['half']:.4f}" if "half" in r else "-"
        print(
            f"| {r['mode']} | {metric[r['mode']]} | {r['queries']:,} ({r['users']:,}) | "
            f"{r['labelled']:,} ({r['labelled_users']:,}) | {r['candidates']:.4f} | "
            f"{ci(r, 'learned')} | {', '.join(map(str, r['trees']['learned']))} | {half} | "
            f"{ci(r, 'control')} | {r['signal']:.4f} | "
            f"{d['diff']:+.4f} ({d['low']:+.4f}..{d['high']:+.4f}) |"
        )
    print()
    print("control columns: " + "; ".join(f"{r['mode']}: {r['control_cols']}" for r in out))
    print(f"baselines from {source}")
    for r in out:
        if r["mode"] == "complete" and base_hit is not None:
            target = 1 - 0.7 * (1 - base_hit)
            print(
                f"complete target (30% of the misses of Hit@10 {base_hit:.4f} cut): Hit@10 >= "
                f"{target:.4f}; candidate ceiling {r['candidates']:.4f}, learned ceiling "
                f"{r['learned']:.4f} ({'within' if r['learned'] >= target else 'beyond'} it)"
            )
        if r["mode"] == "discover" and base_explore is not None:
            target = 1.5 * base_explore
            print(
                f"discover target (1.5x explore_hit@10 {base_explore:.4f}): >= {target:.4f}; "
                f"candidate ceiling {r['candidates']:.4f}, learned ceiling {r['learned']:.4f} "
                f"({'within' if r['learned'] >= target else 'beyond'} it)"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"seconds: {time.perf_counter() - t0:.0f}; peak RSS {peak:.2f} GiB (shared machine)")


if __name__ == "__main__":
    main()
